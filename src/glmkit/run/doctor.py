"""`invoke doctor`: everything a deployment needs, checked before it is tried.

Each check returns a line: ✓, ✗ (with the fix) or · (does not apply here). Checks
take their inputs as arguments where they can, so tests need no Docker.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from glmkit.host.hardware import (
    CUDA13_MIN_DRIVER,
    Hardware,
    gpu_runtime_registered,
    needs_cuda12_images,
    parse_nvidia_smi,
)
from glmkit.host.settings import Settings
from glmkit.host.vendors import VENDORS, VendorProfile
from glmkit.knowledge.catalog import ModelSpec
from glmkit.paths import existing_ancestor
from glmkit.process import run

Status = Literal["ok", "fail", "warn", "skip"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def docker_info() -> dict[str, Any] | None:
    """`docker info` of this machine's engine; None when it is not reachable."""
    from glmkit.errors import EnvironmentProblem
    from glmkit.run.engine import client

    try:
        info: dict[str, Any] = client().info()
    except EnvironmentProblem:
        return None
    return info


def check_docker(info: dict[str, Any] | None) -> Check:
    if info is None:
        return Check("Docker engine", "fail", "not reachable",
                     "install Docker Engine and start it (`sudo systemctl start docker`), or "
                     "set DOCKER_HOST")
    return Check("Docker engine", "ok", f"{info.get('ServerVersion', '?')}, "
                 f"{info.get('NCPU', '?')} CPUs, runtimes: "
                 f"{', '.join(sorted(info.get('Runtimes') or {}))}")


def check_compose() -> Check:
    if shutil.which("docker") is None:
        return Check("Compose v2", "fail", "no docker CLI", "install Docker with the compose "
                     "plugin (docker-compose-plugin)")
    done = run(["docker", "compose", "version", "--short"], check=False)
    if done.returncode != 0:
        return Check("Compose v2", "fail", "`docker compose` is missing",
                     "install the docker-compose-plugin package (Compose v1 is not enough)")
    return Check("Compose v2", "ok", done.stdout.strip())


def check_nvidia_runtime(runtimes: list[str] | None, wanted: bool) -> Check:
    if runtimes is None:
        return Check("NVIDIA container runtime", "skip" if not wanted else "fail",
                     "Docker not reachable", "")
    if gpu_runtime_registered(VENDORS["cuda"], runtimes):
        return Check("NVIDIA container runtime", "ok", "registered with Docker")
    return Check("NVIDIA container runtime", "fail" if wanted else "skip",
                 "not registered with Docker",
                 "install the NVIDIA Container Toolkit, then `sudo nvidia-ctk runtime "
                 "configure --runtime=docker` and restart Docker" if wanted else "")


def check_amd_devices(wanted: bool, root: Path = Path("/")) -> list[Check]:
    checks = []
    for dev in ("dev/kfd", "dev/dri"):
        path = root / dev
        if not path.exists():
            checks.append(Check(f"/{dev}", "fail" if wanted else "skip", "missing",
                                "install the amdgpu/ROCm kernel driver" if wanted else ""))
        elif not os.access(path, os.R_OK | (os.W_OK if dev == "dev/kfd" else 0)):
            checks.append(Check(f"/{dev}", "fail" if wanted else "warn",
                                "present but not accessible to this user",
                                "add yourself to the video and render groups, or run as root"))
        else:
            checks.append(Check(f"/{dev}", "ok", "present and accessible"))
    return checks


def check_groups(group_ids: Mapping[str, int], amd: bool) -> Check:
    found = ", ".join(f"{name}={gid}" for name, gid in sorted(group_ids.items()))
    missing = [g for g in ("video", "render") if g not in group_ids]
    if missing and amd:
        return Check("video/render groups", "warn", f"host has {found or 'neither'}; missing "
                     f"{', '.join(missing)}", "ROCm containers get the device groups by the "
                     "host's numeric ids; create the group or check the driver install")
    return Check("video/render groups", "ok" if found else "skip",
                 f"{found} (passed to containers by number)" if found else "none on this host")


def check_gpus(hw: Hardware, smi_output: str | None) -> Check:
    if hw.gpus:
        return Check("GPUs", "ok", hw.describe())
    if smi_output is not None and not parse_nvidia_smi(smi_output):
        return Check("GPUs", "warn", "nvidia-smi runs but lists no GPU",
                     "check the driver (`nvidia-smi`)")
    return Check("GPUs", "skip", "none found: the cpu vendor runs here")


def check_cuda_driver(hw: Hardware) -> Check:
    if not hw.driver_version:
        return Check("CUDA driver", "skip", "no NVIDIA driver found")
    if needs_cuda12_images(hw):
        return Check("CUDA driver", "warn", f"{hw.driver_version} is older than CUDA 13 needs "
                     f"({CUDA13_MIN_DRIVER}+): glmkit uses vLLM's -cu129 image tags",
                     f"upgrade the driver to {CUDA13_MIN_DRIVER}+ for the CUDA 13 images")
    return Check("CUDA driver", "ok", f"{hw.driver_version} (CUDA 13 images)")


def check_disk(path: Path, needed_gb: float | None) -> Check:
    free_gb = shutil.disk_usage(existing_ancestor(path)).free / 1e9
    if needed_gb is None:
        return Check("free disk", "ok", f"{free_gb:.0f} GB free at {path}")
    if free_gb < needed_gb:
        return Check("free disk", "fail", f"{free_gb:.0f} GB free at {path}, the model needs "
                     f"about {needed_gb:.0f} GB", "free space, or point HF_HOME / --hf-cache at a "
                     "larger disk")
    return Check("free disk", "ok", f"{free_gb:.0f} GB free at {path} (model: ~{needed_gb:.0f} "
                 "GB)")


def check_port(host: str, port: int, in_use: Callable[[str, int], bool]) -> Check:
    if in_use(host, port):
        return Check(f"port {port}", "fail", f"in use on {host}",
                     f"pass --port N, or stop what listens (`ss -ltnp 'sport = :{port}'`)")
    return Check(f"port {port}", "ok", f"free on {host}")


def check_image(ref: str, docker_ok: bool) -> Check:
    if not docker_ok:
        return Check(f"image {ref}", "skip", "Docker not reachable")
    from glmkit.run.image_build import image_present

    if image_present(ref):
        return Check(f"image {ref}", "ok", "present")
    return Check(f"image {ref}", "warn", "not present",
                 "`invoke build` or `invoke pull` (`invoke up` does it for you)")


def smi_output(vendor: VendorProfile) -> str | None:
    """What the vendor's GPU-listing tool prints; None: the vendor has none, or it is not
    installed."""
    if not vendor.smi or shutil.which(vendor.smi[0]) is None:
        return None
    done = run(list(vendor.smi), check=False, timeout=20)
    return done.stdout if done.returncode == 0 else ""



def render_lines(checks: list[Check]) -> list[str]:
    """Rich markup lines; a check's words (hosts, model ids, Hub errors) are escaped."""
    from rich.markup import escape

    marks = {"ok": "[green]✓[/green]", "fail": "[red]✗[/red]", "warn": "[yellow]![/yellow]",
             "skip": "[dim]·[/dim]"}
    lines = []
    for check in checks:
        lines.append(f"{marks[check.status]} {escape(check.name)}: {escape(check.detail)}")
        if check.fix and check.status in ("fail", "warn"):
            lines.append(f"    [cyan]fix:[/cyan] {escape(check.fix)}")
    return lines


def diagnose(settings: Settings, sources: Mapping[str, str], env: Mapping[str, str]
             ) -> list[Check]:
    """`invoke doctor` for resolved settings; a model is checked when one was named
    (flag, GLMKIT_MODEL or invoke.yaml), not the default, through the plan `up` would
    make of the same settings: synced recipes, the HF cache and the image `up` runs."""
    from glmkit.errors import GlmkitError
    from glmkit.host import hardware
    from glmkit.paths import hf_cache
    from glmkit.run.deploy import plan_on_host

    named = sources.get("model", "default") != "default"
    planned: list[Check] = []
    model = image = None
    if named:
        try:
            plan = plan_on_host(settings, hardware.detect(env), env).serving
        except GlmkitError as err:  # what `up` would refuse, said as a check
            planned.append(Check("plan", "fail", str(err).splitlines()[0],
                                 "`invoke plan` shows the options"))
        else:
            model, image = plan.model, plan.image.ref
            planned.append(Check("plan", "ok", f"{plan.model.id} on {plan.vendor.name}, "
                                 f"TP {plan.tensor_parallel}, image {image}"))
            planned += advisory_checks(plan.advisories)
    return planned + run_doctor(vendor=settings.vendor, model=model, host=settings.host,
                                port=settings.port, image=image,
                                hf_cache_dir=hf_cache(env, settings.hf_cache), env=env)


def advisory_checks(lines: tuple[str, ...]) -> list[Check]:
    """What is known about serving the plan here that the recipe does not say (the plan's
    advisories and hardware note), one warning each: nothing to fix on this host, but
    worth knowing before `up`."""
    checks = []
    for line in lines:
        name, _, detail = line.partition(": ")
        checks.append(Check(name if name.startswith("advisory") else "hardware note", "warn",
                            detail if name.startswith("advisory") else line))
    return checks


def check_address(host: str, port: int) -> None:
    """The address `up` would publish on, checked as `up` checks it: refused, not probed."""
    from glmkit.endpoints import is_ip
    from glmkit.errors import UsageError

    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is out of range (1-65535).")
    if host != "localhost" and not is_ip(host):
        raise UsageError(f"--host {host!r} is not an IP address to publish on.")


def run_doctor(*, vendor: str | None, model: ModelSpec | None, host: str, port: int,
               hf_cache_dir: Path, env: Mapping[str, str], image: str | None = None
               ) -> list[Check]:
    """Every check, in the order a user would fix them; `model` and `image` as the plan
    of `up` has them."""
    from glmkit.errors import EnvironmentProblem
    from glmkit.host import hardware
    from glmkit.host.vendors import resolve_vendor
    from glmkit.run.engine import port_free

    check_address(host, port)
    hw = hardware.detect(env)
    wanted = resolve_vendor(vendor) if vendor else hw.profile
    info = docker_info()
    docker_ok = info is not None
    checks = [check_docker(info), check_compose()]
    runtimes = sorted(info.get("Runtimes") or {}) if info is not None else None
    checks.append(check_nvidia_runtime(runtimes, wanted.gpu_reservation))
    checks += check_amd_devices(bool(wanted.devices))
    checks.append(check_groups(hw.group_ids, bool(wanted.groups)))
    # A driver that runs but lists no GPU is worth a warning whatever the vendor asked.
    checks.append(check_gpus(hw, smi_output(VENDORS["cuda"])))
    if wanted.cuda12_suffix is not None:  # vLLM's CUDA images: the driver decides the tag
        checks.append(check_cuda_driver(hw))
    needed = None
    if model is not None and not model.local_dir:
        needed = model.total_params_b * (2 if model.precision == "bf16" else 1) * 1.02
    checks.append(check_disk(hf_cache_dir, needed))
    try:
        checks.append(check_port(host, port, lambda h, p: not port_free(h, p)))
    except EnvironmentProblem:  # not an address of this machine
        checks.append(Check(f"port {port}", "fail", f"cannot bind {host}: not an address "
                            "of this machine", "pass --host 127.0.0.1, "
                            "0.0.0.0 or one of this machine's addresses"))
    checks.append(check_token(model, env))
    if image is not None:
        checks.append(check_image(image, docker_ok))
    elif vendor:
        from glmkit.knowledge.images import official_image

        checks.append(check_image(official_image(wanted, cuda12=needs_cuda12_images(hw)).ref,
                                  docker_ok))
    return checks


def check_token(model: Any, env: Mapping[str, str]) -> Check:
    from glmkit.host.hub import hf_token

    token = hf_token(env)
    if model is None or model.local_dir:
        return Check("Hugging Face token", "ok" if token else "skip",
                     "present" if token else "none (only gated models need one)")
    from huggingface_hub import auth_check
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    from glmkit.host.hub import explain_hub_error

    try:
        auth_check(model.id, token=token)
    except (GatedRepoError, RepositoryNotFoundError) as err:
        return Check("Hugging Face token", "fail", str(explain_hub_error(err, model.id, token)))
    except Exception as err:  # network errors of the Hub's HTTP client
        cached = "present" if token else "none"
        return Check("Hugging Face token", "warn", f"{cached}; the Hub is not reachable to "
                     f"check it ({err.__class__.__name__})",
                     "fine for models already in the cache (`invoke download` them first)")
    return Check("Hugging Face token", "ok", f"can read {model.id}"
                 + ("" if token else " (no token needed)"))


def raise_for_failures(checks: list[Check]) -> None:
    from glmkit.errors import EnvironmentProblem

    if failed := [ch.name for ch in checks if ch.status == "fail"]:
        raise EnvironmentProblem(f"{len(failed)} problem(s): {', '.join(failed)}")
