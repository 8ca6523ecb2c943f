"""Taxonomy hardware profiles are read into HardwareProfile, and targets come from them."""

from __future__ import annotations

from glmkit.knowledge.recipes import load_book
from glmkit.knowledge.resolver import HardwareProfile, hardware_profile, target_for


def test_every_taxonomy_profile_reads_into_a_typed_profile() -> None:
    book = load_book({})
    for tid, data in book.hardware.items():
        profile = hardware_profile(book, tid)
        assert profile == HardwareProfile(tid, data["brand"], data["generation"],
                                          data["gpu_count"], data["vram_gb"])
    assert hardware_profile(book, "no-such-gpu") is None and hardware_profile(book, None) is None


def test_a_target_from_a_profile_keeps_its_per_gpu_memory() -> None:
    book = load_book({})
    h200 = hardware_profile(book, "h200")
    assert h200 is not None
    target = target_for(book, "NVIDIA H200", 4)
    assert (target.id, target.brand, target.generation) == ("h200", h200.brand, h200.generation)
    assert target.gpu_count == 4 and target.gpu_memory_gb == h200.vram_gb / h200.gpu_count
    assert target_for(book, "h200", None).gpu_count == h200.gpu_count
