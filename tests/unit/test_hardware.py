from __future__ import annotations

from pathlib import Path

from glmkit.host.hardware import amd_gpus, parse_nvidia_smi

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


def test_amd_gpus_are_named_so_sizing_uses_their_bandwidth(tmp_path: Path) -> None:
    from glmkit.knowledge.sizing import gpu_from_hardware

    cards = [("product_name", "AMD Instinct MI300X"), ("device", "0x75a3"),
             ("device", "0x1234")]
    for n, (file, text) in enumerate(cards):
        device = tmp_path / f"renderD{128 + n}" / "device"
        device.mkdir(parents=True)
        (device / "vendor").write_text("0x1002\n")
        (device / "mem_info_vram_total").write_text("206141652992\n")
        (device / file).write_text(text + "\n")
    names = [g.name for g in amd_gpus(tmp_path)]
    assert names == ["AMD Instinct MI300X", "AMD Instinct MI355X", "AMD GPU 0x1234"]
    mi300x = gpu_from_hardware(names[0], 196592)
    h100 = gpu_from_hardware("NVIDIA H100 80GB HBM3", 81559)
    assert mi300x.bandwidth_tb_s == 5.3 and mi300x.bandwidth_tb_s != h100.bandwidth_tb_s
    assert gpu_from_hardware(names[1], 294912).bandwidth_tb_s == 8.0


def test_hardware_from_a_file_pins_what_tasks_see(tmp_path: Path) -> None:
    import json

    import pytest

    from glmkit.errors import UsageError
    from glmkit.host.hardware import detect

    described = tmp_path / "hw.json"
    described.write_text(json.dumps({"vendor": "amd", "gpus": [
        {"index": i, "name": "AMD Instinct MI300X", "memory_mib": 196592} for i in range(8)]}))
    hw = detect({"GLMKIT_HARDWARE": str(described)})
    assert hw.vendor == "rocm" and hw.gpu_count == 8
    described.write_text("{}")
    with pytest.raises(UsageError, match="not a hardware description"):
        detect({"GLMKIT_HARDWARE": str(described)})
