"""Image profiles: which vLLM is inside each image, and the flags that version accepts.

Flags move between vLLM releases (RECIPES.md §6: `--disable-log-requests` from the
seed's v0.15.1 command makes v0.32 exit at start), so every image records its vLLM
version and the rendered command follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Source = Literal["pull", "build"]


@dataclass(frozen=True, kw_only=True)
class ImageProfile:
    ref: str
    vendor: str
    vllm_version: str
    source: Source
    # For built images: the folder under docker/ and its build arguments.
    build_dir: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    # vLLM's own published image for the same release, for `invoke pull`.
    official_ref: str | None = None


CUDA_TAG = "v0.15.1"
ROCM_TAG = "v0.15.1"  # the seed's AMD recipe
CPU_VLLM = "0.32.0"
# GLM-4.7's recipe installs transformers from source; 5.x carries its architectures.
GLM47_TRANSFORMERS = "transformers>=5.0"

IMAGES: dict[str, ImageProfile] = {
    p.ref: p
    for p in [
        ImageProfile(ref=f"vllm/vllm-openai:{CUDA_TAG}", vendor="cuda",
                     vllm_version=CUDA_TAG.lstrip("v"), source="pull"),
        ImageProfile(ref=f"vllm/vllm-openai-rocm:{ROCM_TAG}", vendor="rocm",
                     vllm_version=ROCM_TAG.lstrip("v"), source="pull"),
        ImageProfile(ref=f"glmkit/vllm-cpu:{CPU_VLLM}", vendor="cpu", vllm_version=CPU_VLLM,
                     source="build", build_dir="docker/cpu",
                     build_args={"VLLM_VERSION": CPU_VLLM},
                     official_ref=f"public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v{CPU_VLLM}"),
        ImageProfile(ref=f"glmkit/vllm-cuda:{CUDA_TAG}-glm47", vendor="cuda",
                     vllm_version=CUDA_TAG.lstrip("v"), source="build", build_dir="docker/gpu",
                     build_args={"BASE_IMAGE": f"vllm/vllm-openai:{CUDA_TAG}",
                                 "TRANSFORMERS_SPEC": GLM47_TRANSFORMERS}),
        ImageProfile(ref=f"glmkit/vllm-rocm:{ROCM_TAG}-glm47", vendor="rocm",
                     vllm_version=ROCM_TAG.lstrip("v"), source="build", build_dir="docker/gpu",
                     build_args={"BASE_IMAGE": f"vllm/vllm-openai-rocm:{ROCM_TAG}",
                                 "TRANSFORMERS_SPEC": GLM47_TRANSFORMERS}),
    ]
}

DEFAULT_IMAGES: dict[str, str] = {
    "cuda": f"vllm/vllm-openai:{CUDA_TAG}",
    "rocm": f"vllm/vllm-openai-rocm:{ROCM_TAG}",
    "cpu": f"glmkit/vllm-cpu:{CPU_VLLM}",
}

# An image glmkit does not know is taken to be a recent vLLM.
ASSUMED_VERSION = CPU_VLLM


def image_profile(ref: str, vendor: str, vllm_version: str | None = None) -> ImageProfile:
    """The profile for `ref`; an unknown image gets a pull profile and a version."""
    known = IMAGES.get(ref)
    if known and vllm_version is None:
        return known
    return ImageProfile(ref=ref, vendor=vendor, source="pull",
                        vllm_version=vllm_version or (known.vllm_version if known
                                                      else ASSUMED_VERSION))


def version_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.lstrip("v").split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


# Flags accepted only in a range of vLLM versions: (first version, first version without).
# --disable-log-requests: deprecated in 0.10 (request logging is off by default since),
# removed in 0.17; seen rejected by 0.32 here.
VERSIONED_FLAGS: dict[str, tuple[str | None, str | None]] = {
    "--disable-log-requests": (None, "0.17.0"),
}


def flag_supported(flag: str, vllm_version: str) -> bool:
    since, until = VERSIONED_FLAGS.get(flag, (None, None))
    version = version_tuple(vllm_version)
    if since and version < version_tuple(since):
        return False
    return not (until and version >= version_tuple(until))
