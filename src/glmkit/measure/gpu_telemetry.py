"""GPU telemetry sampled on the host while a benchmark point runs.

nvidia-smi or rocm-smi, when present; nothing on a CPU-only host. Parsers take the
tools' text so tests can feed outputs captured on real machines.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

NVIDIA_TELEMETRY = ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used,power.draw",
                    "--format=csv,noheader,nounits"]
ROCM_TELEMETRY = ["rocm-smi", "--showuse", "--showmeminfo", "vram", "--showpower", "--json"]


def _number(text: str) -> float | None:
    try:
        return float(text.strip().split()[0])
    except (ValueError, IndexError):
        return None


def parse_nvidia(text: str) -> list[dict[str, float | None]]:
    samples = []
    for line in text.strip().splitlines():
        parts = line.split(",")
        if len(parts) != 4 or not parts[0].strip().isdigit():
            continue
        samples.append({"gpu": float(parts[0]), "util_pct": _number(parts[1]),
                        "mem_used_mib": _number(parts[2]), "power_w": _number(parts[3])})
    return samples


def parse_rocm(text: str) -> list[dict[str, float | None]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return []
    samples = []
    for card, values in data.items():
        if not card.startswith("card") or not isinstance(values, dict):
            continue
        def pick(*words: str, src: dict[str, Any] = values) -> float | None:
            for key, value in src.items():
                if all(w in key for w in words):
                    return _number(str(value))
            return None
        used = pick("VRAM", "Used")
        samples.append({"gpu": float(card.removeprefix("card") or 0),
                        "util_pct": pick("GPU use"),
                        "mem_used_mib": used / 2**20 if used is not None else None,
                        "power_w": pick("Power")})
    return samples


@dataclass
class PeriodicSampler:
    """Calls `sample_once` every `interval` seconds on a thread between start() and stop();
    stop() returns the samples and their summary, or None when nothing was sampled."""

    interval: float = 1.0
    samples: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def ready(self) -> bool:
        return True

    def sample_once(self) -> None:
        raise NotImplementedError

    def summary(self) -> dict[str, float]:
        raise NotImplementedError

    def start(self) -> PeriodicSampler:
        if not self.ready():
            return self

        def loop() -> None:
            while not self._stop.is_set():
                self.sample_once()
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any] | None:
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join(timeout=15)
        self.sample_once()  # the state after the last request, too
        if not self.samples:
            return None
        return {"samples": self.samples, "summary": self.summary()}


@dataclass
class Sampler(PeriodicSampler):
    """GPU utilisation, memory and power from nvidia-smi or rocm-smi."""

    @staticmethod
    def available() -> str | None:
        for tool in ("nvidia-smi", "rocm-smi"):
            if shutil.which(tool):
                return tool
        return None

    def ready(self) -> bool:
        return self.available() is not None

    def sample_once(self) -> None:
        tool = self.available()
        argv, parse = (NVIDIA_TELEMETRY, parse_nvidia) if tool == "nvidia-smi" else \
            (ROCM_TELEMETRY, parse_rocm)
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                                 check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            return
        now = time.time()
        self.samples.extend({"t": now, **s} for s in parse(out))

    def summary(self) -> dict[str, float]:
        return summarize(self.samples)


def summarize(samples: list[dict[str, Any]]) -> dict[str, float]:
    def values(key: str) -> list[float]:
        return [s[key] for s in samples if isinstance(s.get(key), int | float)]

    summary: dict[str, float] = {}
    if util := values("util_pct"):
        summary["mean_util_pct"] = round(mean(util), 1)
    if mem := values("mem_used_mib"):
        summary["max_mem_used_mib"] = max(mem)
    if power := values("power_w"):
        summary["mean_power_w"] = round(mean(power), 1)
    return summary
