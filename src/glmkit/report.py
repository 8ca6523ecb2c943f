"""Reports over benchmark runs: tables, ratios, CSV and plots.

Runs are results folders, or the recipes' published figures shipped as reference
runs (`ref:glm45-fp8-prompt-heavy-16`), parsed from the recipe's own result text.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from glmkit.bench import SUMMARY_FIELDS
from glmkit.errors import UsageError
from glmkit.results import list_runs, open_run

REFERENCE_DIR = Path(__file__).parent / "reference"

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
    """One run as the report sees it: a label, its metadata and a result per batch."""

    label: str
    meta: dict[str, Any]
    points: dict[int, dict[str, Any]]
    missing: tuple[int, ...] = ()


def load_reference(name: str) -> Series:
    path = REFERENCE_DIR / f"{name}.txt"
    if not path.is_file():
        names = ", ".join(f"ref:{p.stem}" for p in sorted(REFERENCE_DIR.glob("*.txt")))
        raise UsageError(f"No reference run {name!r}. Shipped: {names}.")
    text = path.read_text()
    meta = dict(re.findall(r"^# (\w+): (.+)$", text, re.M))
    meta["reference"] = True
    return Series(label=f"ref:{name}", meta=meta, points={int(meta["batch"]):
                                                         parse_bench_text(text)})


def reference_names() -> list[str]:
    return [p.stem for p in sorted(REFERENCE_DIR.glob("*.txt"))]


def load_series(results_dir: Path, ref: str) -> Series:
    if ref.startswith("ref:"):
        return load_reference(ref.removeprefix("ref:"))
    run = open_run(results_dir, ref)
    return Series(label=run.label(), meta=run.meta, points=run.points(),
                  missing=tuple(run.missing()))


def load_all(results_dir: Path, refs: list[str]) -> list[Series]:
    if refs:
        return [load_series(results_dir, ref) for ref in refs]
    runs = list_runs(results_dir)
    if not runs:
        raise UsageError(f"No benchmark runs under {results_dir}: `invoke bench` first.")
    return [Series(r.label(), r.meta, r.points(), tuple(r.missing())) for r in runs]


def tpot_bound(s: Series, batch: int, result: dict[str, Any]) -> float | None:
    """The plan's memory-bandwidth bound on TPOT for a GPU run's point (see `sizing`)."""
    from glmkit.catalog import CATALOG
    from glmkit.sizing import ARCH, decode_tpot, gpu_from_hardware

    gpus = (s.meta.get("hardware") or {}).get("gpus") or []
    model = CATALOG.get(str(s.meta.get("model")))
    workload = s.meta.get("workload")
    if not gpus or model is None or not isinstance(workload, dict) or \
            s.meta.get("vendor") not in ("cuda", "rocm"):
        return None
    arch = ARCH.get(model.short_name.removesuffix("-FP8"))
    if arch is None:
        return None
    args = list(s.meta.get("serve_args") or [])
    tp = int(args[args.index("--tensor-parallel-size") + 1]) \
        if "--tensor-parallel-size" in args else 1
    in_flight = int(result.get("max_concurrency") or batch)
    # The average sequence holds the prompt and half the output while decoding.
    context = int(workload["input_len"]) + int(workload["output_len"]) // 2
    gpu = gpu_from_hardware(gpus[0]["name"], int(gpus[0]["memory_mib"]))
    return decode_tpot(model, arch, gpu, tp, model.precision, in_flight, context).tpot_ms


def results_table(series: list[Series]) -> Table:
    table = Table(title="vllm bench serve (times in ms)")
    table.add_column("run")
    table.add_column("batch", justify="right")
    for _, name, _ in SUMMARY_FIELDS:
        table.add_column(name, justify="right")
    bounds = {(s.label, b): tpot_bound(s, b, r) for s in series for b, r in s.points.items()}
    with_bound = any(v is not None for v in bounds.values())
    if with_bound:
        table.add_column("TPOT bound", justify="right")
        table.add_column("bound/TPOT", justify="right")
    for s in series:
        for batch, result in sorted(s.points.items()):
            cells = [fmt.format(result[key]) if isinstance(result.get(key), int | float)
                     else "-" for key, _, fmt in SUMMARY_FIELDS]
            if with_bound:
                bound, measured = bounds[(s.label, batch)], result.get("mean_tpot_ms")
                cells += [f"{bound:.2f}" if bound else "-",
                          f"{bound / measured:.2f}" if bound and measured else "-"]
            style = "red" if (result.get("failed") or 0) > 0 else None
            table.add_row(s.label, str(batch), *cells, style=style)
        for batch in s.missing:
            table.add_row(s.label, str(batch), "[yellow]missing[/yellow]",
                          *[""] * (len(table.columns) - 3))
    return table


COMPARE_KEYS = [("request_throughput", "req/s", True), ("output_throughput", "out tok/s", True),
                ("total_token_throughput", "total tok/s", True),
                ("mean_ttft_ms", "TTFT mean", False), ("mean_tpot_ms", "TPOT mean", False),
                ("p99_tpot_ms", "TPOT p99", False)]


def compare_rows(a: Series, b: Series) -> list[tuple[int, dict[str, float]]]:
    """B / A for each batch size both runs have."""
    rows = []
    for batch in sorted(set(a.points) & set(b.points)):
        ratios = {}
        for key, _, _ in COMPARE_KEYS:
            va, vb = a.points[batch].get(key), b.points[batch].get(key)
            if isinstance(va, int | float) and isinstance(vb, int | float) and va:
                ratios[key] = vb / va
        rows.append((batch, ratios))
    return rows


def compare_table(a: Series, b: Series) -> Table:
    rows = compare_rows(a, b)
    if not rows:
        raise UsageError(f"{a.label} and {b.label} share no batch size to compare.")
    table = Table(title=f"{b.label} / {a.label}  (>1 is better for throughput, <1 for latency)")
    table.add_column("batch", justify="right")
    for _, name, _ in COMPARE_KEYS:
        table.add_column(name, justify="right")
    for batch, ratios in rows:
        cells = []
        for key, _, higher_better in COMPARE_KEYS:
            if key not in ratios:
                cells.append("-")
                continue
            better = ratios[key] > 1 if higher_better else ratios[key] < 1
            colour = "green" if better else "red"
            cells.append(f"[{colour}]{ratios[key]:.3f}[/{colour}]")
        table.add_row(str(batch), *cells)
    return table


def write_csv(series: list[Series], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = [key for key, _, _ in SUMMARY_FIELDS]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "model", "vendor", "workload", "batch", *keys])
        for s in series:
            workload = s.meta.get("workload")
            workload_name = workload.get("name") if isinstance(workload, dict) else workload
            for batch, result in sorted(s.points.items()):
                writer.writerow([s.label, s.meta.get("model"), s.meta.get("vendor"),
                                 workload_name, batch, *[result.get(k, "") for k in keys]])
    return path


PLOTS = [("output_throughput", "output tokens/s"), ("mean_ttft_ms", "mean TTFT (ms)"),
         ("mean_tpot_ms", "mean TPOT (ms)")]


def write_plots(series: list[Series], path: Path) -> Path:
    """Throughput, TTFT and TPOT against batch size, one line per run."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTS), figsize=(6 * len(PLOTS), 4.5))
    for ax, (key, title) in zip(axes, PLOTS, strict=True):
        for s in series:
            xs = [b for b in sorted(s.points) if isinstance(s.points[b].get(key), int | float)]
            if not xs:
                continue
            ys = [s.points[b][key] for b in xs]
            ax.plot(xs, ys, marker="o" if len(xs) > 1 else "D", label=s.label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (prompts or concurrency)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
