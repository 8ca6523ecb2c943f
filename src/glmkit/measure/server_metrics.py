"""vLLM's own view of a benchmark point: its Prometheus `/metrics`, sampled while the
point runs, parsed with prometheus_client.

Why a run is slow shows here, not in the client's numbers: a KV cache that fills up,
requests waiting instead of running, preemptions, prefix-cache hits, and how many of
the speculative (MTP) draft tokens the model accepted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from glmkit.measure.gpu_telemetry import PeriodicSampler

# vLLM metric family → the key glmkit stores. Gauges are read as they are; counters
# (`_total` samples) are differenced over the point. Summed over label sets (engines).
GAUGES = {"vllm:kv_cache_usage_perc": "kv_cache_usage", "vllm:num_requests_running": "running",
          "vllm:num_requests_waiting": "waiting"}
COUNTERS = {"vllm:num_preemptions": "preemptions", "vllm:prefix_cache_queries": "prefix_queries",
            "vllm:prefix_cache_hits": "prefix_hits", "vllm:spec_decode_num_drafts": "drafts",
            "vllm:spec_decode_num_draft_tokens": "draft_tokens",
            "vllm:spec_decode_num_accepted_tokens": "accepted_tokens",
            "vllm:generation_tokens": "generation_tokens",
            "vllm:request_success": "requests_finished"}


def parse_metrics(text: str) -> dict[str, float]:
    """The watched values of one `/metrics` page."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in GAUGES:
            wanted, key = family.name, GAUGES[family.name]
        elif family.name in COUNTERS:
            wanted, key = f"{family.name}_total", COUNTERS[family.name]
        else:
            continue
        for sample in family.samples:
            if sample.name == wanted:
                values[key] = values.get(key, 0.0) + float(sample.value)
    return values


def _delta(samples: list[dict[str, float]], key: str) -> float | None:
    seen = [s[key] for s in samples if key in s]
    return seen[-1] - seen[0] if len(seen) >= 2 else None


def summarize(samples: list[dict[str, float]]) -> dict[str, float]:
    """Peaks and means of the gauges; counters as what happened during the point."""
    summary: dict[str, float] = {}
    for key in GAUGES.values():
        seen = [s[key] for s in samples if key in s]
        if seen:
            scale = 100.0 if key == "kv_cache_usage" else 1.0
            summary[f"{key}_peak"] = round(max(seen) * scale, 2)
            summary[f"{key}_mean"] = round(mean(seen) * scale, 2)
    preemptions = _delta(samples, "preemptions")
    if preemptions is not None:
        summary["preemptions"] = preemptions
    # Exact, where the running gauge is a sample: a short point can finish between two.
    finished = _delta(samples, "requests_finished")
    if finished is not None:
        summary["requests_finished"] = finished
    queries, hits = _delta(samples, "prefix_queries"), _delta(samples, "prefix_hits")
    if queries and hits is not None:
        summary["prefix_hit_pct"] = round(100 * hits / queries, 2)
    drafted, accepted = _delta(samples, "draft_tokens"), _delta(samples, "accepted_tokens")
    drafts = _delta(samples, "drafts")
    if drafted and accepted is not None:
        summary["spec_acceptance_pct"] = round(100 * accepted / drafted, 2)
        if drafts:
            summary["spec_mean_acceptance_length"] = round(1 + accepted / drafts, 3)
    if (rate := _busy_rate(samples, "generation_tokens")) is not None:
        summary["generation_tok_s"] = rate
    return summary


def _busy_rate(samples: list[dict[str, float]], key: str) -> float | None:
    """A counter's rate while it moved: from the sample before its first increase to the
    sample of its last (the client's start-up and tail do not dilute it)."""
    seen = [(s["t"], s[key]) for s in samples if key in s]
    moved = [i for i in range(1, len(seen)) if seen[i][1] > seen[i - 1][1]]
    if not moved:
        return None
    start, end = seen[moved[0] - 1], seen[moved[-1]]
    return round((end[1] - start[1]) / (end[0] - start[0]), 1) if end[0] > start[0] else None


@dataclass
class MetricsSampler(PeriodicSampler):
    """The server's /metrics, read every 0.25 s: short points (CPU, small batches) last
    about a second."""

    base_url: str = ""
    api_key: str | None = field(default=None, repr=False)
    interval: float = 0.25

    def sample_once(self) -> None:
        import requests

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            text = requests.get(f"{self.base_url}/metrics", headers=headers, timeout=5).text
        except requests.RequestException:
            return
        if values := parse_metrics(text):
            self.samples.append({"t": time.time(), **values})

    def summary(self) -> dict[str, float]:
        return summarize(self.samples)


def summary_of(data: Mapping[str, Any] | None) -> dict[str, float]:
    return dict((data or {}).get("summary") or {})
