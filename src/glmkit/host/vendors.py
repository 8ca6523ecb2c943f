"""Vendor profiles: what a container needs to reach each kind of accelerator.

Each profile is the least a working vLLM container needs. Broader access (privileged,
/dev/mem, CAP_SYS_ADMIN) is a separate opt-in block, used only with `--privileged`: the
full `docker run` options AMD's and vLLM's ROCm guides give for debugging driver access.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from glmkit.errors import UsageError

VendorName = Literal["cuda", "rocm", "cpu"]


@dataclass(frozen=True, kw_only=True)
class VendorProfile:
    name: VendorName
    aliases: tuple[str, ...]
    description: str
    devices: tuple[str, ...] = ()
    # Host group names; passed to the container by the host's numeric id when it has
    # them, since the group table inside the image differs from the host's.
    groups: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    ipc_host: bool = False
    shm_size: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    gpu_reservation: bool = False
    # The one variable that selects GPUs where no reservation does (ROCm). Setting
    # HIP_, ROCR_ and CUDA_VISIBLE_DEVICES together makes them mask each other.
    visibility_env: str | None = None
    has_gpus: bool = True
    # What `--privileged` adds: every device and capability, as AMD's full `docker run`.
    privileged_devices: tuple[str, ...] = ()
    privileged_cap_add: tuple[str, ...] = ()
    # What the rest of glmkit asks of a vendor instead of comparing its name:
    # the recipes' taxonomy brand (HardwareTarget.brand: NVIDIA, AMD, CPU);
    brand: str
    # the key of this vendor's image in a recipe's `docker_image: {nvidia: …, amd: …}`;
    # None: the recipes pin no image for it;
    recipe_image_key: str | None = None
    # whether a recipe's plain-string docker_image is this vendor's (the recipes write
    # NVIDIA's image so);
    takes_plain_image_pin: bool = False
    # vLLM's official image repository; None: glmkit builds the image (docker/cpu);
    image_repository: str | None = None
    # the tag suffix of vLLM's CUDA 12 builds, for drivers too old for CUDA 13; None:
    # the vendor has no such builds (and no CUDA driver to check);
    cuda12_suffix: str | None = None
    # the extended resource a Kubernetes pod asks for its GPUs by;
    k8s_gpu_resource: str | None = None
    # the recipes' reference node, assumed when no GPU is detected or named;
    reference_node: str | None = None
    # the Docker runtime (and its CDI spec) that hands out the GPUs, for `gpu_reservation`;
    docker_runtime: str | None = None
    cdi_spec: str | None = None
    # the vendor's tool that lists GPUs as CSV (index, name, memory in MiB);
    smi: tuple[str, ...] = ()
    # older images of this vendor log every request unless `--disable-log-requests`;
    quiet_requests_flag: bool = False
    # what a missing device of `devices` means, for the preflight check;
    driver: str = ""
    # vLLM's sleep mode (a model group): why the vendor has none (None: it has it), and
    # the taxonomy GPU ids it works on, by prefix (): every GPU.
    no_sleep_mode: str | None = None
    sleep_gpus: tuple[str, ...] = ()


VENDORS: dict[VendorName, VendorProfile] = {
    "cuda": VendorProfile(
        name="cuda",
        aliases=("nvidia", "cuda"),
        description="NVIDIA GPUs through the NVIDIA container runtime",
        ipc_host=True,
        gpu_reservation=True,
        brand="NVIDIA",
        recipe_image_key="nvidia",
        takes_plain_image_pin=True,
        image_repository="vllm/vllm-openai",
        cuda12_suffix="-cu129",
        k8s_gpu_resource="nvidia.com/gpu",
        reference_node="h200",
        docker_runtime="nvidia",
        cdi_spec="/etc/cdi/nvidia.yaml",
        smi=("nvidia-smi", "--query-gpu=index,name,memory.total",
             "--format=csv,noheader,nounits"),
        driver="NVIDIA driver",
    ),
    "rocm": VendorProfile(
        name="rocm",
        aliases=("amd", "rocm"),
        description="AMD Instinct GPUs (MI300X/MI325X/MI355X) through /dev/kfd and /dev/dri",
        devices=("/dev/kfd", "/dev/dri"),
        groups=("video", "render"),
        cap_add=("SYS_PTRACE",),
        security_opt=("seccomp=unconfined",),
        ipc_host=True,
        env={"SAFETENSORS_FAST_GPU": "1"},
        visibility_env="HIP_VISIBLE_DEVICES",
        privileged_devices=("/dev/mem",),
        privileged_cap_add=("SYS_ADMIN",),
        brand="AMD",
        recipe_image_key="amd",
        image_repository="vllm/vllm-openai-rocm",
        k8s_gpu_resource="amd.com/gpu",
        reference_node="mi300x",
        quiet_requests_flag=True,
        driver="AMD GPU driver (amdgpu/ROCm)",
        # vllm/platforms/interface.py: "only mi3xx has the sleep mode support now for ROCm".
        sleep_gpus=("mi3",),
    ),
    "cpu": VendorProfile(
        name="cpu",
        aliases=("cpu",),
        description="any x86-64 machine, with the CPU build of vLLM",
        # vLLM's CPU workers share tensors through /dev/shm; a private, larger shm
        # keeps that off the host's IPC namespace.
        shm_size="2gb",
        env={"VLLM_CPU_KVCACHE_SPACE": "1"},
        has_gpus=False,
        brand="CPU",
        no_sleep_mode="vLLM's CPU backend has no sleep mode (its config refuses "
                      "--enable-sleep-mode, and its worker ignores /sleep: "
                      "vllm/v1/worker/cpu_worker.py)",
    ),
}

_ALIASES = {alias: profile for profile in VENDORS.values() for alias in profile.aliases}


def resolve_vendor(name: str) -> VendorProfile:
    profile = _ALIASES.get(name.strip().lower())
    if profile is None:
        choices = ", ".join(sorted(_ALIASES))
        raise UsageError(f"Unknown vendor {name[:40]!r}. Choose one of: {choices}.")
    return profile
