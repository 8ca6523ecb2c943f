"""vLLM's sleep mode as the model group's plan counts it: what a sleeping server keeps on
the GPU, the host memory level 1 takes, and how long a switch takes (which vendors have
it: host.vendors).

Every figure comes from sleep_calibration.json, measured on an H100 with vLLM 0.26.0
(scripts/sleep_truth.py measures it again); times are scaled by the bytes each step moves,
which is an assumption the file's one model cannot test.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CALIBRATION = Path(__file__).with_name("sleep_calibration.json")
LEVELS = (1, 2)

@functools.lru_cache(maxsize=1)
def calibration() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CALIBRATION.read_text())
    return data


def figure(section: str, name: str) -> float:
    return float(calibration()[section][name]["value"])


def provenance() -> str:
    m = calibration()["measured"]
    return (f"measured with vLLM {m['vllm']} on an {m['gpu']}, {m['model']} "
            f"{m['precision'].upper()}, {m['date']} ({m['weights']} weights)")


def asleep_gib() -> float:
    """What a sleeping server keeps on each of its GPUs."""
    return figure("memory", "asleep_gib")


def outside_budget_gib(cuda_reserved_gib: float) -> float:
    """What an awake server takes beyond vLLM's budget (utilization × the memory CUDA
    reports), from the same measurement: nvidia-smi's awake reading less the budget."""
    m = calibration()["measured"]
    budget = float(m["utilization"]) * (float(m["memory_mib"]) / 1024 - cuda_reserved_gib)
    return figure("memory", "awake_gib") - budget


@dataclass(frozen=True)
class Room:
    """One GPU shared by a group: the utilization each member gets, and what is left."""

    utilization: float  # --gpu-memory-utilization of every member
    awake_gib: float  # the awake member's footprint
    asleep_gib: float  # what the sleeping ones keep, together
    spare_gib: float  # the card's memory left over
    lowered_from: float | None = None  # the utilization asked for, when it was too high


def room(memory_gib: float, members: int, wanted: float, cuda_reserved_gib: float) -> Room:
    """The largest utilization (to 0.01, at most `wanted`) at which one awake member and
    `members - 1` sleeping ones fit `memory_gib`; utilization 0 when none does."""
    keep = (members - 1) * asleep_gib()
    outside = outside_budget_gib(cuda_reserved_gib)
    usable = memory_gib - cuda_reserved_gib
    most = math.floor((memory_gib - outside - keep) / usable * 100) / 100 if usable > 0 else 0
    utilization = max(0.0, min(wanted, most))
    awake = utilization * usable + outside
    return Room(utilization, awake, keep, memory_gib - awake - keep,
                wanted if utilization < wanted else None)


@dataclass(frozen=True)
class SwitchEstimate:
    """A switch from one member to another, by step (seconds)."""

    level: int
    sleep_s: float  # the awake member to sleep
    wake_s: float  # the other awake
    reload_s: float  # level 2: its weights read from disk again
    first_s: float  # its first answer

    @property
    def total_s(self) -> float:
        return self.sleep_s + self.wake_s + self.reload_s + self.first_s


def switch_estimate(level: int, from_weights_gib: float, to_weights_gib: float,
                    load_gib_per_s: float) -> SwitchEstimate:
    """How long a switch takes with nothing left to drain: at level 1 the sleeping
    member's weights go to CPU memory and the woken one's come back, each at the measured
    rate; at level 2 nothing is copied, but the woken member reads its weights from disk."""
    first = figure("level1", "first_chat_s")
    if level == 1:
        moved = figure("level1", "moved_gib")
        return SwitchEstimate(1, from_weights_gib * figure("level1", "sleep_s") / moved,
                              to_weights_gib * figure("level1", "wake_s") / moved, 0.0, first)
    return SwitchEstimate(2, figure("level2", "sleep_s"), figure("level2", "wake_s"),
                          to_weights_gib / load_gib_per_s, first)


def host_memory_gib(weights_gib: list[float], models: list[str] | None = None) -> float:
    """Host memory level 1 holds at worst: during a switch every member is asleep at once
    (the awake one sleeps before the other wakes, as the GPU has no room for both), and
    each sleeping member takes more host memory than its weights: the ratio measured for
    its model, else the bound for one not measured. On the H100 host of 125 GiB, two
    GLM-4.7-Flash members reached 125.8 GiB in their first switch and the kernel ended
    both (sleep_calibration.json's switch_runs)."""
    named: list[str | None] = list(models) if models is not None else [None] * len(weights_gib)
    return float(sum(weights * host_ratio(model)
                     for weights, model in zip(weights_gib, named, strict=True)))


def host_ratio(model: str | None) -> float:
    """GiB of host memory per GiB of weights a sleeping `model` takes at level 1."""
    measured = calibration()["level1"]["host_gib_per_weight_gib"]
    if model is not None and model == measured.get("model"):
        return float(measured["value"])
    return figure("level1", "host_gib_per_weight_gib_unmeasured")
