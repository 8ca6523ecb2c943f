"""The results store: one folder per benchmark run, append-only.

    results/<run-id>/meta.json              what ran: model, vendor, image+digest, flags,
                                            workload, batches, git commit, hardware, date
    results/<run-id>/points/batch-0016.json vLLM's own result JSON for one point
    results/<run-id>/failures/batch-…json   a point that did not finish, and why
    results/<run-id>/telemetry/batch-…json  GPU samples taken during the point
    results/<run-id>/metrics/batch-…json    the server's /metrics sampled during the
                                            point, and their peaks, means and rates

A point file is never overwritten; an interrupted sweep keeps its points and
`invoke bench --resume <run-id>` runs only the missing ones.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from glmkit.errors import UsageError
from glmkit.files import write_json_once
from glmkit.resolver import flag_value
from glmkit.workloads import WORKLOADS, Point, Workload, sweep_points

META = "meta.json"
# 1: meta.json before it had a version; 2: adds "version" and writes hardware as
# {vendor, description, gpus: [{index, name, memory_mib}], cpu_count}.
META_VERSION = 2
REFERENCE_DIR = Path(__file__).parent / "reference"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def plain_name(text: str, what: str) -> str:
    """A label or run id: one path component under results/, never `..` or a path."""
    if not _PLAIN_NAME.fullmatch(text) or ".." in text:
        raise UsageError(f"{what} {text!r} must be a plain name: letters, digits, '.', '_' "
                         "and '-', at most 100 characters, starting with a letter or digit.")
    return text


def point_name(batch: int) -> str:
    return f"batch-{batch:04d}.json"


@dataclass(frozen=True)
class GpuInfo:
    name: str
    memory_mib: int | None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _workload(raw: Any) -> Workload | None:
    """The run's workload; fields an older glmkit did not write come from its name."""
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping) or not (raw.get("name") or raw.get("input_len")):
        return None
    known = {f.name for f in fields(Workload)}
    name = str(raw.get("name") or "custom")
    base = WORKLOADS.get(name)
    values: dict[str, Any] = dict(base.__dict__) if base else {"description": name}
    values.update({k: v for k, v in raw.items() if k in known}, name=name)
    try:
        return Workload(**values)
    except TypeError:
        return None


@dataclass(frozen=True)
class RunMeta:
    """meta.json of any version, or a reference run's header, read into one shape."""

    version: int
    label: str
    model: str
    vendor: str
    image: str
    serve_args: tuple[str, ...]
    max_model_len: int | None
    workload: Workload | None
    mode: str
    points: tuple[Point, ...]
    hardware: str  # what it ran on, in words
    gpus: tuple[GpuInfo, ...]
    reference: bool
    raw: Mapping[str, Any]

    @property
    def batches(self) -> list[int]:
        return [p.batch for p in self.points]

    @property
    def tensor_parallel(self) -> int:
        """The last --tensor-parallel-size, in either `--flag N` or `--flag=N` form."""
        return _int(flag_value(self.serve_args, "--tensor-parallel-size")) or 1


def read_meta(raw: Mapping[str, Any], fallback_label: str) -> RunMeta:
    hw = raw.get("hardware")
    gpus: tuple[GpuInfo, ...] = ()
    description = str(hw or "")
    if isinstance(hw, Mapping):
        description = str(hw.get("description") or "")
        gpus = tuple(GpuInfo(str(g.get("name") or "?"), _int(g.get("memory_mib")))
                     for g in hw.get("gpus") or [] if isinstance(g, Mapping))
    mode = "concurrency" if raw.get("mode") == "concurrency" else "prompts"
    points: list[Point] = []
    for item in raw.get("points") or []:
        try:
            points.append(Point(**item))
        except TypeError:
            points = []
            break
    if not points:
        batches = [b for b in (_int(x) for x in raw.get("batches") or []) if b]
        points = sweep_points(batches, mode)  # type: ignore[arg-type]
    return RunMeta(
        version=_int(raw.get("version")) or 1, label=str(raw.get("label") or fallback_label),
        model=str(raw.get("model") or "?"), vendor=str(raw.get("vendor") or "?"),
        image=str(raw.get("image") or ""),
        serve_args=tuple(str(a) for a in raw.get("serve_args") or ()),
        max_model_len=_int(raw.get("max_model_len")), workload=_workload(raw.get("workload")),
        mode=mode, points=tuple(points), hardware=description, gpus=gpus,
        reference=bool(raw.get("reference")), raw=dict(raw))


@dataclass(frozen=True)
class Run:
    """A run folder: its metadata, and the append-only point, failure and telemetry files."""

    path: Path
    meta: RunMeta

    @property
    def run_id(self) -> str:
        return self.path.name

    def points(self) -> dict[int, dict[str, Any]]:
        found = {}
        for file in sorted((self.path / "points").glob("batch-*.json")):
            found[int(file.stem.split("-")[1])] = json.loads(file.read_text())
        return found

    def missing(self) -> list[int]:
        done = self.points()
        return [b for b in self.meta.batches if b not in done]

    def save_point(self, batch: int, result: dict[str, Any]) -> Path:
        path = self.path / "points" / point_name(batch)
        write_json_once(path, result)
        return path

    def save_failure(self, batch: int, failure: dict[str, Any]) -> None:
        # A retried point may fail again: keep every failure, numbered.
        base = self.path / "failures" / point_name(batch)
        path, n = base, 1
        while path.exists():
            path = base.with_name(f"{base.stem}.{n}.json")
            n += 1
        write_json_once(path, {"time": time.time(), **failure})

    def save_telemetry(self, batch: int, telemetry: dict[str, Any]) -> None:
        self._save_samples("telemetry", batch, telemetry)

    def save_metrics(self, batch: int, metrics: dict[str, Any]) -> None:
        self._save_samples("metrics", batch, metrics)

    def _save_samples(self, kind: str, batch: int, data: dict[str, Any]) -> None:
        path = self.path / kind / point_name(batch)
        if not path.exists():  # a point run again keeps its first samples
            write_json_once(path, data)

    def metrics(self) -> dict[int, dict[str, Any]]:
        """The server's metrics per batch (samples and summary), where they were taken."""
        found = {}
        for file in sorted((self.path / "metrics").glob("batch-*.json")):
            found[int(file.stem.split("-")[1])] = json.loads(file.read_text())
        return found


def create_run(results_dir: Path, meta: dict[str, Any], name: str) -> Run:
    plain_name(name, "Label")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"version": META_VERSION, **meta}
    for n in range(1000):
        path = results_dir / (f"{stamp}-{name}" if n == 0 else f"{stamp}-{name}-{n}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        write_json_once(path / META, meta)
        return Run(path, read_meta(meta, path.name))
    raise UsageError(f"Could not create a new run folder under {results_dir}.")


def _read_run(path: Path) -> Run:
    try:
        raw = json.loads((path / META).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"{path / META} cannot be read ({err.__class__.__name__}); fix or "
                         "remove that run.") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path / META} is not a JSON object; fix or remove that run.")
    return Run(path, read_meta(raw, path.name))


def open_run(results_dir: Path, ref: str) -> Run:
    """A run by id, by a unique id prefix, or by its folder under `results_dir`."""
    if Path(ref).is_dir() and Path(ref).resolve().parent == results_dir.resolve():
        ref = Path(ref).name
    plain_name(ref, "Run id")
    candidates = sorted(p for p in results_dir.glob(f"{ref}*") if (p / META).is_file())
    if not candidates:
        raise UsageError(f"No benchmark run {ref!r} under {results_dir} (`invoke report` lists "
                         "them).")
    exact = [p for p in candidates if p.name == ref]
    if len(candidates) > 1 and not exact:
        names = ", ".join(p.name for p in candidates[:5])
        raise UsageError(f"{ref!r} matches several runs ({names}); give more of the id.")
    return _read_run((exact or candidates)[0])


def list_runs(results_dir: Path) -> list[Run]:
    return [_read_run(p.parent) for p in sorted(results_dir.glob(f"*/{META}"))]


# --- reading runs for reports ----------------------------------------------------------

# `vllm bench serve` text output → its JSON keys.
TEXT_KEYS = {
    "Successful requests": "completed",
    "Failed requests": "failed",
    "Benchmark duration (s)": "duration",
    "Total input tokens": "total_input_tokens",
    "Total generated tokens": "total_output_tokens",
    "Request throughput (req/s)": "request_throughput",
    "Output token throughput (tok/s)": "output_throughput",
    "Total Token throughput (tok/s)": "total_token_throughput",
    "Maximum request concurrency": "max_concurrency",
    "Mean TTFT (ms)": "mean_ttft_ms", "Median TTFT (ms)": "median_ttft_ms",
    "P99 TTFT (ms)": "p99_ttft_ms",
    "Mean TPOT (ms)": "mean_tpot_ms", "Median TPOT (ms)": "median_tpot_ms",
    "P99 TPOT (ms)": "p99_tpot_ms",
    "Mean ITL (ms)": "mean_itl_ms", "Median ITL (ms)": "median_itl_ms",
    "P99 ITL (ms)": "p99_itl_ms",
}


def parse_bench_text(text: str) -> dict[str, float]:
    """The 'Serving Benchmark Result' block that `vllm bench serve` prints."""
    result: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(.+?):\s+([-\d.]+)\s*$", line.strip())
        if match and match.group(1) in TEXT_KEYS:
            result[TEXT_KEYS[match.group(1)]] = float(match.group(2))
    result.setdefault("failed", 0.0)
    return result


@dataclass(frozen=True)
class Series:
    """One run as a report reads it: its id, metadata and a result per batch."""

    run_id: str
    meta: RunMeta
    points: dict[int, dict[str, Any]]
    missing: tuple[int, ...] = ()
    metrics: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.meta.label


def reference_names() -> list[str]:
    return [p.stem for p in sorted(REFERENCE_DIR.glob("*.txt"))]


def load_reference(name: str) -> Series:
    """A published figure shipped as text: `# key: value` header lines, then the result."""
    path = REFERENCE_DIR / f"{name}.txt"
    if not path.is_file():
        shipped = ", ".join(f"ref:{n}" for n in reference_names())
        raise UsageError(f"No reference run {name!r}. Shipped: {shipped}.")
    text = path.read_text()
    header: dict[str, Any] = dict(re.findall(r"^# (\w+): (.+)$", text, re.M))
    batch = int(header.pop("batch"))
    meta = read_meta({**header, "reference": True, "label": f"ref:{name}",
                      "batches": [batch]}, f"ref:{name}")
    return Series(f"ref:{name}", meta, {batch: parse_bench_text(text)})


def _series(run: Run) -> Series:
    return Series(run.run_id, run.meta, run.points(), tuple(run.missing()), run.metrics())


def load_all(results_dir: Path, refs: list[str]) -> list[Series]:
    """The named runs (ids, folders, `ref:NAME`), or every run under `results_dir`."""
    if refs:
        return [load_reference(ref.removeprefix("ref:")) if ref.startswith("ref:") else
                _series(open_run(results_dir, ref)) for ref in refs]
    runs = list_runs(results_dir)
    if not runs:
        raise UsageError(f"No benchmark runs under {results_dir}: `invoke bench` first.")
    return [_series(run) for run in runs]
