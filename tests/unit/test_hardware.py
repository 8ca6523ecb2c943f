from __future__ import annotations

from pathlib import Path

from glmkit.hardware import amd_gpus, parse_nvidia_smi

DATA = Path(__file__).parent / "data"


def test_parse_nvidia_smi_captured_on_an_h100() -> None:
    # Output of `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`
    # captured on the accelerator machine.
    gpus = parse_nvidia_smi((DATA / "h100-nvidia-smi-query.txt").read_text())
    assert len(gpus) == 1
    assert gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert gpus[0].memory_mib == 81559


def test_parse_nvidia_smi_eight_gpus_and_noise() -> None:
    lines = [f"{i}, NVIDIA H200, 143771" for i in range(8)]
    text = "\n".join(["No devices were found?", *lines, ""])
    gpus = parse_nvidia_smi(text)
    assert [g.index for g in gpus] == list(range(8))
    assert {g.memory_mib for g in gpus} == {143771}


def test_parse_nvidia_smi_nothing() -> None:
    assert parse_nvidia_smi("") == ()


def test_amd_gpus_from_sysfs(tmp_path: Path) -> None:
    for n, (vendor, vram) in enumerate([("0x1002", 206141652992), ("0x8086", 0),
                                        ("0x1002", 206141652992)]):
        device = tmp_path / f"renderD{128 + n}" / "device"
        device.mkdir(parents=True)
        (device / "vendor").write_text(vendor + "\n")
        (device / "mem_info_vram_total").write_text(f"{vram}\n")
    gpus = amd_gpus(tmp_path)
    assert len(gpus) == 2
    assert gpus[0].memory_mib == 196592  # an MI300X's 192 GB
