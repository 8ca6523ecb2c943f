"""What accelerators this host has, read from the vendors' own tools and device files.

Parsing is kept apart from running the tools so tests can feed captured outputs.
"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glmkit.errors import UsageError
from glmkit.files import Unreadable, read_json
from glmkit.host.vendors import VENDORS, VendorName, VendorProfile, resolve_vendor
from glmkit.text import one_line, validation_reason


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_mib: int


@dataclass(frozen=True)
class Hardware:
    vendor: VendorName
    gpus: tuple[Gpu, ...] = ()
    group_ids: dict[str, int] = field(default_factory=dict)
    source: str = ""
    driver_version: str = ""  # NVIDIA driver, e.g. "575.57.08"

    @property
    def profile(self) -> VendorProfile:
        return VENDORS[self.vendor]

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    def describe(self) -> str:
        if not self.gpus:
            return f"{os.cpu_count()} CPU cores, no GPU found ({self.source})"
        names = sorted({g.name for g in self.gpus})
        return f"{self.gpu_count} × {', '.join(names)} ({self.source})"


NVIDIA_QUERY = list(VENDORS["cuda"].smi)


def parse_nvidia_smi(text: str) -> tuple[Gpu, ...]:
    """Parse `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        memory = int(float(parts[2])) if parts[2].replace(".", "", 1).isdigit() else 0
        gpus.append(Gpu(index=int(parts[0]), name=parts[1], memory_mib=memory))
    return tuple(gpus)


def _run(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


# PCI device ids of the Instinct GPUs the recipes serve on, for drivers whose sysfs has no
# product_name (amdgpu's PCI id list).
AMD_DEVICE_NAMES = {"0x74a1": "AMD Instinct MI300X", "0x74a5": "AMD Instinct MI325X",
                    "0x75a3": "AMD Instinct MI355X", "0x740c": "AMD Instinct MI250X",
                    "0x740f": "AMD Instinct MI210"}


def _amd_name(device: Path) -> str:
    """The card's product name (sizing needs its bandwidth), else its PCI id's name."""
    try:
        name = (device / "product_name").read_text().strip()
        if name:
            return name
    except OSError:
        pass
    try:
        pci_id = (device / "device").read_text().strip().lower()
    except OSError:
        return "AMD GPU"
    return AMD_DEVICE_NAMES.get(pci_id, f"AMD GPU {pci_id}")


def amd_gpus(sysfs: Path = Path("/sys/class/drm")) -> tuple[Gpu, ...]:
    """AMD GPUs from sysfs render nodes (vendor 0x1002 with VRAM), no ROCm tools needed."""
    gpus = []
    for index, card in enumerate(sorted(sysfs.glob("renderD*"))):
        device = card / "device"
        try:
            if (device / "vendor").read_text().strip() != "0x1002":
                continue
            vram = int((device / "mem_info_vram_total").read_text().strip())
        except (OSError, ValueError):
            continue
        gpus.append(Gpu(index=index, name=_amd_name(device), memory_mib=vram // (1024 * 1024)))
    return tuple(gpus)


def host_group_ids(names: tuple[str, ...] = ("video", "render")) -> dict[str, int]:
    ids = {}
    for name in names:
        try:
            ids[name] = grp.getgrnam(name).gr_gid
        except KeyError:
            continue
    return ids


# CUDA 13 (vLLM's default images since CUDA 13 builds) needs driver 580 or newer.
CUDA13_MIN_DRIVER = 580


def needs_cuda12_images(hw: Hardware) -> bool:
    """An NVIDIA driver too old for CUDA 13: vLLM's -cu129 image tags run on it."""
    major = hw.driver_version.split(".", 1)[0]
    return hw.profile.cuda12_suffix is not None and major.isdigit() and \
        int(major) < CUDA13_MIN_DRIVER


def gpu_runtime_registered(vendor: VendorProfile, runtimes: Iterable[str]) -> bool:
    """Docker can hand out the vendor's GPUs: its runtime, or a CDI spec for them."""
    return (vendor.docker_runtime is not None and vendor.docker_runtime in runtimes) or \
        (vendor.cdi_spec is not None and Path(vendor.cdi_spec).exists())


MAX_HARDWARE_FILE = 1 << 20  # a description of 1000 GPUs is under 100 KB


# Printable: no control character (C0, DEL, C1) nor a bidirectional or zero-width format
# character, and at least one that is not a space. (`\S` alone also matched a control.)
_NAME_CHAR = r"[^\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]"
_GPU_NAME = rf"^{_NAME_CHAR}*[^\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e" \
    rf"\u2060-\u206f\ufeff]{_NAME_CHAR}*$"


class _GpuEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    index: Annotated[int, Field(strict=True, ge=0, le=4095)]
    # A GPU name is shown and matched against the taxonomy: printable, one short line.
    name: Annotated[str, Field(strict=True, min_length=1, max_length=128,
                               pattern=_GPU_NAME)]
    memory_mib: Annotated[int, Field(strict=True, ge=1, le=1 << 24)]  # up to 16 TiB


class _HardwareFile(BaseModel):
    """GLMKIT_HARDWARE's JSON, with the ranges a machine has."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    vendor: Annotated[str, Field(strict=True, max_length=32)]
    gpus: Annotated[list[_GpuEntry], Field(max_length=4096)] = []
    # ASCII digits only: "²" passes str.isdigit and then fails int()
    driver_version: Annotated[str, Field(strict=True, max_length=32,
                                         pattern=r"^([0-9]+(\.[0-9]+)*)?$")] = ""


def from_file(path: Path) -> Hardware:
    """Hardware described in JSON ({"vendor", "gpus": [{"index", "name", "memory_mib"}],
    "driver_version"}): to plan for another machine, or to pin what tests see."""
    where = f"GLMKIT_HARDWARE={one_line(str(path), 200)}"
    try:
        data = _HardwareFile.model_validate(read_json(path, MAX_HARDWARE_FILE,
                                                      links_within=path.parent))
        if len({g.index for g in data.gpus}) != len(data.gpus):
            raise ValueError("two GPUs share an index")
    except Unreadable as err:
        raise UsageError(f"{where}: {err}. Point it at a JSON file, or unset it to detect "
                         "this machine.") from None
    except ValueError as err:  # ValidationError included
        reason = validation_reason(err) if isinstance(err, ValidationError) else str(err)
        raise UsageError(f"{where} is not a hardware description ({reason}); expected e.g. "
                         '{"vendor": "cuda", "gpus": [{"index": 0, "name": "NVIDIA H100", '
                         '"memory_mib": 81559}]}.') from None
    try:
        vendor = resolve_vendor(data.vendor).name
    except UsageError as err:
        raise UsageError(f"{where}: {err}") from None
    gpus = tuple(Gpu(g.index, g.name.strip(), g.memory_mib) for g in data.gpus)
    return Hardware(vendor=vendor, gpus=gpus, group_ids=host_group_ids(), source=str(path),
                    driver_version=data.driver_version)


def detect(env: Mapping[str, str] | None = None) -> Hardware:
    """GLMKIT_HARDWARE's file if set; else NVIDIA GPUs if nvidia-smi sees any, else AMD
    GPUs if /dev/kfd exists, else CPU."""
    if env and env.get("GLMKIT_HARDWARE"):
        return from_file(Path(env["GLMKIT_HARDWARE"]))
    groups = host_group_ids()
    nvidia, amd, cpu = VENDORS["cuda"], VENDORS["rocm"], VENDORS["cpu"]
    smi = _run(list(nvidia.smi))
    if smi and (gpus := parse_nvidia_smi(smi)):
        tool = nvidia.smi[0]
        driver = (_run([tool, "--query-gpu=driver_version", "--format=csv,noheader"])
                  or "").strip().splitlines()
        return Hardware(vendor=nvidia.name, gpus=gpus, group_ids=groups, source=tool,
                        driver_version=driver[0].strip() if driver else "")
    if Path(amd.devices[0]).exists():
        return Hardware(vendor=amd.name, gpus=amd_gpus(), group_ids=groups,
                        source=f"{amd.devices[0]}, sysfs")
    return Hardware(vendor=cpu.name, group_ids=groups,
                    source=f"no {nvidia.smi[0]} GPUs, no {amd.devices[0]}")
