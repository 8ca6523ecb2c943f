"""Serve plan: catalog facts + vendor profile + detected hardware + user settings.

`build_plan` is the one place where these meet. It validates everything a user can get
wrong before any file is written or container started, and returns a frozen
`ServePlan` from which `compose` renders the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from glmkit import __version__
from glmkit.catalog import DEFAULT_MAX_MODEL_LEN, ModelSpec, resolve_model
from glmkit.errors import UsageError
from glmkit.hardware import Hardware
from glmkit.hub import offline_env
from glmkit.images import DEFAULT_IMAGES, ImageProfile, flag_supported, image_profile
from glmkit.paths import existing_ancestor, hf_cache, kit_home
from glmkit.settings import Settings
from glmkit.vendors import VendorProfile, resolve_vendor

CONTAINER_PORT = 8000
CONTAINER_HF_HOME = "/root/.cache/huggingface"
CONTAINER_VLLM_CACHE = "/root/.cache/vllm"  # torch.compile cache; not under HF_HOME
CONTAINER_MEDIA = "/media"
LABEL = "io.glmkit"
# Secrets reach containers from the environment of the `docker compose` process, by
# name only: their values are never written into the compose file.
SECRET_ENV = ("HF_TOKEN", "VLLM_API_KEY")
# Options glmkit owns; letting extra args override them would undo its safety choices.
RESERVED_ARGS = ("--host", "--port", "--allowed-local-media-path", "--served-model-name")
# Secrets on the command line would land in the compose file and `docker inspect`.
SECRET_ARGS = ("--api-key", "--hf-token")
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool
    kind: Literal["bind", "volume"]


@dataclass(frozen=True, kw_only=True)
class ServePlan:
    project: str
    model: ModelSpec
    vendor: VendorProfile
    image: ImageProfile
    served_model_name: str
    serve_args: tuple[str, ...]  # everything after `vllm serve`
    environment: dict[str, str]
    secret_env: tuple[str, ...]
    devices: tuple[str, ...]
    group_add: tuple[str, ...]
    cap_add: tuple[str, ...]
    security_opt: tuple[str, ...]
    ipc_host: bool
    shm_size: str | None
    privileged: bool
    gpu_ids: tuple[str, ...] | None  # None: all GPUs
    tensor_parallel: int
    data_parallel: int
    max_model_len: int
    host: str
    port: int
    mounts: tuple[Mount, ...]
    labels: dict[str, str]
    start_period_s: int
    health_timeout_s: int
    model_dir: Path | None  # host folder of a local model
    notes: tuple[str, ...]

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def _gpu_ids(text: str) -> tuple[str, ...]:
    ids = tuple(part.strip() for part in text.split(",") if part.strip())
    if not ids or not all(i.isdigit() for i in ids):
        raise UsageError(f"--gpus {text!r}: give GPU indexes separated by commas, e.g. 0,1,2,3.")
    if len(set(ids)) != len(ids):
        raise UsageError(f"--gpus {text!r} names a GPU twice.")
    return ids


def _check_ranges(s: Settings) -> None:
    if not _PROJECT_NAME.match(s.project):
        raise UsageError(f"Project name {s.project!r}: use lowercase letters, digits, - and _.")
    if not 1 <= s.port <= 65535:
        raise UsageError(f"--port {s.port} is out of range (1-65535).")
    if s.port < 1024:
        raise UsageError(f"--port {s.port} is a privileged port; use one from 1024 up "
                         "(the default is 8000).")
    for option, text in (("--host", s.host), ("--image", s.image or ""),
                         ("--model", s.model), ("--media-dir", s.media_dir or ""),
                         ("--hf-cache", s.hf_cache or "")):
        if any(ch in text for ch in "\n\r\0"):
            raise UsageError(f"{option} contains a line break or NUL character.")
    if s.host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::") and \
            not re.fullmatch(r"[0-9a-fA-F.:]+", s.host):
        raise UsageError(f"--host {s.host!r} is not an IP address to publish on.")
    if not 0 < s.gpu_memory_utilization <= 1:
        raise UsageError(f"--gpu-memory-utilization {s.gpu_memory_utilization} must be in "
                         "(0, 1]; vLLM's default is 0.9.")
    for name, value in (("--tp", s.tp), ("--dp", s.dp), ("--max-model-len", s.max_model_len),
                        ("--max-num-batched-tokens", s.max_num_batched_tokens),
                        ("--mtp-tokens", s.mtp_tokens), ("--health-timeout", s.health_timeout)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}.")
    for arg in s.extra_args:
        flag = arg.split("=", 1)[0]
        if flag in RESERVED_ARGS:
            raise UsageError(f"Extra vLLM argument {flag} is set by glmkit; use the glmkit "
                             "option instead (--host, --port, --media-dir).")
        if flag in SECRET_ARGS:
            raise UsageError(f"Extra vLLM argument {flag} would write a secret into the compose "
                             "file; set VLLM_API_KEY / HF_TOKEN in the environment instead.")


def _parallelism(s: Settings, model: ModelSpec, vendor: VendorProfile, hw: Hardware,
                 notes: list[str]) -> tuple[int, int, tuple[str, ...] | None, int | None]:
    """TP, DP, chosen GPU ids and, where the GPUs are known, the max-model-len that fits."""
    dp = s.dp
    if not vendor.has_gpus:
        if s.gpus is not None:
            raise UsageError("--gpus does not apply to the cpu vendor.")
        return s.tp or 1, dp, None, None
    ids = _gpu_ids(s.gpus) if s.gpus is not None else None
    here = hw.vendor == vendor.name and hw.gpu_count > 0
    available = len(ids) if ids is not None else (hw.gpu_count if here else None)
    tp = s.tp or model.default_tp
    fitted_len: int | None = None
    if here and model.in_catalog and model.local_dir is None and available:
        tp, fitted_len = _fit_to_gpus(s, model, hw, available // max(dp, 1), notes)
    needed = tp * dp
    if ids is not None and needed > len(ids):
        raise UsageError(f"Tensor parallel {tp} × data parallel {dp} needs {needed} GPUs, but "
                         f"--gpus {s.gpus} names {len(ids)}. Lower --tp/--dp or name more GPUs.")
    if ids is None and here and needed > hw.gpu_count:
        raise UsageError(f"Tensor parallel {tp} × data parallel {dp} needs {needed} GPUs; "
                         f"this machine has {hw.gpu_count}. Pass --tp/--dp to fit.")
    if not here:
        notes.append(f"no {vendor.name} GPUs detected here: rendered for {needed} GPU(s), "
                     "not checked against this machine")
    return tp, dp, ids, fitted_len


def _fit_to_gpus(s: Settings, model: ModelSpec, hw: Hardware, gpus: int,
                 notes: list[str]) -> tuple[int, int | None]:
    """Fill TP from the sizing plan; refuse what cannot fit before anything is pulled."""
    from glmkit.sizing import ARCH, fit, gpu_from_hardware

    arch = ARCH.get(model.short_name.removesuffix("-FP8"))
    if arch is None or gpus < 1:
        return s.tp or model.default_tp, None
    gpu = gpu_from_hardware(hw.gpus[0].name, hw.gpus[0].memory_mib)
    result = fit(model, arch, gpu, gpus, model.precision, s.gpu_memory_utilization, s.tp)
    offload = any(a.startswith("--cpu-offload-gb") for a in s.extra_args)
    if not result.fits and not offload:
        raise UsageError(
            f"{model.id} does not fit on {gpus} × {gpu.name} {gpu.memory_gb:.0f} GB at TP "
            f"{result.tp}: {result.weights_per_gpu_gb:.0f} GB of weights per GPU. Use the FP8 "
            f"model, more GPUs, or offload: `invoke up ... -- --cpu-offload-gb "
            f"{result.cpu_offload_gb}` (see `invoke plan`).")
    if s.tp is None:
        notes.append(f"plan: TP {result.tp} on {gpu.name} ({result.weights_per_gpu_gb:.0f} GB "
                     f"weights per GPU, {result.kv_budget_per_gpu_gb:.0f} GB for KV cache)")
    return result.tp, result.max_model_len or None


def _owner_uid(path: Path) -> int | None:
    path = existing_ancestor(path)  # a missing cache is created by `up` as the invoking user
    try:
        return path.stat().st_uid if path.exists() else None
    except OSError:
        return None


def _group_add(vendor: VendorProfile, hw: Hardware) -> tuple[str, ...]:
    return tuple(str(hw.group_ids[g]) if g in hw.group_ids else g for g in vendor.groups)


def build_plan(s: Settings, hw: Hardware, env: Mapping[str, str]) -> ServePlan:
    _check_ranges(s)
    notes: list[str] = []
    if s.vendor:
        vendor = resolve_vendor(s.vendor)
    else:
        vendor = resolve_vendor(hw.vendor)
        notes.append(f"vendor {vendor.name}: detected {hw.describe()}")
    model = resolve_model(s.model)
    image = image_profile(s.image or model.images.get(vendor.name) or DEFAULT_IMAGES[vendor.name],
                          vendor.name, s.vllm_version)
    tp, dp, gpu_ids, fitted_len = _parallelism(s, model, vendor, hw, notes)

    max_len = s.max_model_len or min(DEFAULT_MAX_MODEL_LEN, model.max_context,
                                     fitted_len or model.max_context)
    if max_len > model.max_context:
        raise UsageError(f"--max-model-len {max_len} is above {model.id}'s context limit of "
                         f"{model.max_context} tokens.")

    offline = {} if model.local_dir else offline_env(hf_cache(env, s.hf_cache), model.id, env)
    mounts = [
        # Complete weights (`invoke download`) are mounted read-only: the server only reads.
        Mount(str(hf_cache(env, s.hf_cache)), CONTAINER_HF_HOME, read_only=bool(offline),
              kind="bind"),
        Mount(f"glmkit-vllm-cache-{vendor.name}", CONTAINER_VLLM_CACHE, read_only=False,
              kind="volume"),
    ]
    model_dir: Path | None = None
    if model.local_dir:
        model_dir = Path(model.local_dir)
        if not model_dir.is_absolute():
            model_dir = kit_home(env) / model_dir
        model_ref = f"/models/{model_dir.name}"
        mounts.append(Mount(str(model_dir), model_ref, read_only=True, kind="bind"))
    else:
        model_ref = model.id
    served_name = model.id if model.in_catalog else model_ref.rsplit("/", 1)[-1]

    args: list[str] = [model_ref, "--served-model-name", served_name,
                       "--host", "0.0.0.0", "--port", str(CONTAINER_PORT)]
    args += model.catalog_args()
    if vendor.has_gpus or tp > 1:
        args += ["--tensor-parallel-size", str(tp)]
    if dp > 1:
        args += ["--data-parallel-size", str(dp)]
    args += ["--max-model-len", str(max_len)]
    if vendor.has_gpus:
        args += ["--gpu-memory-utilization", str(s.gpu_memory_utilization)]
    else:
        args += ["--dtype", "bfloat16"]  # the CPU backend's fast path
    if s.max_num_batched_tokens:
        args += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
    if s.bench_mode:
        args.append("--no-enable-prefix-caching")
    if s.mtp:
        if not model.has_mtp:
            raise UsageError(f"--mtp: {model.id} has no MTP layers (the GLM-4.5/4.6/4.7 "
                             "text models do).")
        args += ["--speculative-config.method", "mtp",
                 "--speculative-config.num_speculative_tokens", str(s.mtp_tokens)]
    if s.media_dir:
        if not model.vision:
            raise UsageError(f"--media-dir is for vision models; {model.id} is text-only.")
        media = Path(s.media_dir).expanduser().resolve()
        if not media.is_dir():
            raise UsageError(f"--media-dir {s.media_dir!r} is not a folder.")
        mounts.append(Mount(str(media), CONTAINER_MEDIA, read_only=True, kind="bind"))
        args += ["--allowed-local-media-path", CONTAINER_MEDIA]
    if s.enforce_eager:
        args.append("--enforce-eager")
    # The seed's AMD command quiets request logs; only versions that know the flag get it.
    if vendor.name == "rocm" and flag_supported("--disable-log-requests", image.vllm_version):
        args.append("--disable-log-requests")
    args += list(s.extra_args)

    environment = {"HF_HOME": CONTAINER_HF_HOME, **vendor.env}
    # Weights complete in the cache (`invoke download`): start without the network.
    environment.update(offline)
    if vendor.visibility_env and gpu_ids is not None:
        environment[vendor.visibility_env] = ",".join(gpu_ids)

    devices = vendor.devices + (vendor.privileged_devices if s.privileged else ())
    cap_add = vendor.cap_add + (vendor.privileged_cap_add if s.privileged else ())
    cache = mounts[0]
    if not cache.read_only and _owner_uid(Path(cache.source)) not in (None, 0):
        # The server runs as root with every capability dropped; to write weights into a
        # cache a normal user owns, root needs DAC_OVERRIDE back. Not needed once
        # `invoke download` has filled it (then it is mounted read-only).
        cap_add += ("DAC_OVERRIDE",)
        notes.append("the HF cache belongs to a normal user: the container keeps "
                     "CAP_DAC_OVERRIDE to write downloads there (`invoke download` first "
                     "to run without it)")
    if s.privileged:
        notes.append("--privileged: the container gets every device and capability of the "
                     "host (the seed's full docker run options)")
    if s.host not in ("127.0.0.1", "localhost", "::1"):
        notes.append(f"the API listens on {s.host}:{s.port}, reachable from other machines")

    # Loading hundreds of GB of weights takes a while; size the wait to the model.
    start_period = int(300 + 5 * model.total_params_b)
    return ServePlan(
        project=s.project, model=model, vendor=vendor, image=image,
        served_model_name=served_name, serve_args=tuple(args), environment=environment,
        secret_env=SECRET_ENV, devices=devices, group_add=_group_add(vendor, hw),
        cap_add=cap_add, security_opt=vendor.security_opt, ipc_host=vendor.ipc_host,
        shm_size=None if vendor.ipc_host else vendor.shm_size, privileged=s.privileged,
        gpu_ids=gpu_ids, tensor_parallel=tp, data_parallel=dp, max_model_len=max_len,
        host=s.host, port=s.port, mounts=tuple(mounts),
        labels={f"{LABEL}.managed": "true", f"{LABEL}.version": __version__,
                f"{LABEL}.project": s.project, f"{LABEL}.model": model.id,
                f"{LABEL}.vendor": vendor.name, f"{LABEL}.port": str(s.port),
                f"{LABEL}.image": image.ref, f"{LABEL}.served-model": served_name,
                f"{LABEL}.model-ref": model_ref, f"{LABEL}.max-model-len": str(max_len)},
        start_period_s=start_period,
        health_timeout_s=s.health_timeout or max(600, start_period + 600),
        model_dir=model_dir, notes=tuple(notes),
    )
