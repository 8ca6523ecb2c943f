"""What accelerators this host has, read from the vendors' own tools and device files.

Parsing is kept apart from running the tools so tests can feed captured outputs.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmkit.errors import UsageError
from glmkit.host.vendors import VENDORS, VendorName, VendorProfile, resolve_vendor


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


def _gpu(item: Any) -> Gpu:
    if not isinstance(item, dict):
        raise ValueError("each GPU must be an object {index, name, memory_mib}")
    index, name, memory = item.get("index"), item.get("name"), item.get("memory_mib")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"GPU index {index!r} is not a whole number from 0")
    if not isinstance(memory, int) or isinstance(memory, bool) or memory < 1:
        raise ValueError(f"GPU memory_mib {memory!r} is not a whole number from 1")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"GPU name {name!r} is not a name")
    return Gpu(index, name.strip(), memory)


def from_file(path: Path) -> Hardware:
    """Hardware described in JSON ({"vendor", "gpus": [{"index", "name", "memory_mib"}],
    "driver_version"}): to plan for another machine, or to pin what tests see."""
    where = f"GLMKIT_HARDWARE={path}"
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_HARDWARE_FILE + 1)
    except OSError as err:
        raise UsageError(f"{where}: cannot read it ({err.strerror}). Point it at a JSON "
                         "file, or unset it to detect this machine.") from None
    try:
        if len(raw) > MAX_HARDWARE_FILE:
            raise ValueError(f"larger than {MAX_HARDWARE_FILE} bytes")
        data = json.loads(raw.decode())
        if not isinstance(data, dict) or not isinstance(data.get("vendor"), str):
            raise ValueError('expected an object with "vendor" and "gpus"')
        if not isinstance(data.get("gpus", []), list):
            raise ValueError('"gpus" must be a list')
        gpus = tuple(_gpu(g) for g in data.get("gpus", []))
        if len({g.index for g in gpus}) != len(gpus):
            raise ValueError("two GPUs share an index")
        driver = data.get("driver_version", "")
        if not isinstance(driver, str):
            raise ValueError('"driver_version" must be a string such as "575.57.08"')
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError included
        raise UsageError(f"{where} is not a hardware description ({err}); expected e.g. "
                         '{"vendor": "cuda", "gpus": [{"index": 0, "name": "NVIDIA H100", '
                         '"memory_mib": 81559}]}.') from None
    try:
        vendor = resolve_vendor(data["vendor"]).name
    except UsageError as err:
        raise UsageError(f"{where}: {err}") from None
    return Hardware(vendor=vendor, gpus=gpus, group_ids=host_group_ids(), source=str(path),
                    driver_version=driver)


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
