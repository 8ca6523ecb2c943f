"""Reports over benchmark runs (`results.Series`): tables, ratios, CSV and plots.

Rows are keyed by run id, since labels repeat; a label shared by several runs is shown
with its run id.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any

from rich.table import Table

from glmkit.errors import UsageError
from glmkit.measure.point import SUMMARY_FIELDS
from glmkit.measure.results import Series, number_of
from glmkit.text import printable


def tpot_bound(s: Series, batch: int, result: dict[str, Any]) -> float | None:
    """The plan's memory-bandwidth bound on TPOT for a GPU run's point (see `sizing`)."""
    from glmkit.host.vendors import VENDORS
    from glmkit.knowledge.catalog import CATALOG
    from glmkit.knowledge.sizing import ARCH, arch_key, decode_tpot, gpu_from_hardware

    meta = s.meta
    model = CATALOG.get(meta.model)
    gpu = meta.hardware.gpus[0] if meta.hardware.gpus else None
    vendor = VENDORS.get(meta.vendor)  # type: ignore[call-overload]  # data: any text
    if gpu is None or not gpu.memory_mib or model is None or meta.workload is None or \
            vendor is None or not vendor.has_gpus:
        return None
    arch = ARCH.get(arch_key(model))
    if arch is None:
        return None
    given = result.get("max_concurrency")
    in_flight = given if isinstance(given, int) and 0 < given <= 1 << 20 else batch
    # The average sequence holds the prompt and half the output while decoding.
    context = meta.workload.input_len + meta.workload.output_len // 2
    card = gpu_from_hardware(gpu.name, gpu.memory_mib)
    return decode_tpot(model, arch, card, meta.tensor_parallel, model.precision, in_flight,
                       context).tpot_ms


def run_names(series: list[Series]) -> dict[str, str]:
    """What a table calls each run: its label, or label and id where labels repeat."""
    counts = Counter(s.label for s in series)
    return {s.run_id: s.label if counts[s.label] == 1 or s.label == s.run_id else
            f"{s.label} ({s.run_id})" for s in series}


def add_run_column(table: Table, names: dict[str, str]) -> None:
    """The run column, never cut short: ref:h200-glm47flash-dummy-tunedmoe-c16 and its
    twin without `tunedmoe` read alike as ref:h200-…; the number columns wrap instead."""
    table.add_column("run", no_wrap=True,
                     min_width=max((len(n) for n in names.values()), default=3))


# A terminal table shows the newest this many points (report.csv has every one), and the
# metrics plot this many curves: past them a table takes minutes to draw and says nothing
# more (issue #35: a report over ten runs of 1,000 points stays within 30 s).
MAX_TABLE_ROWS = 500
MAX_PLOT_CURVES = 20


def _newest(rows: list[Any], table: Table, what: str = "points") -> list[Any]:
    """The last MAX_TABLE_ROWS rows (the newest runs come last); the table's caption
    says how many were left out."""
    if len(rows) <= MAX_TABLE_ROWS:
        return rows
    table.caption = (f"the newest {MAX_TABLE_ROWS} of {len(rows):,} {what}; report.csv "
                     "has every one")
    return rows[-MAX_TABLE_ROWS:]


def results_table(series: list[Series]) -> Table:
    table = Table(title="vllm bench serve (times in ms)")
    names = run_names(series)
    add_run_column(table, names)
    table.add_column("batch", justify="right")
    for _, name, _ in SUMMARY_FIELDS:
        table.add_column(name, justify="right")
    # Each point, then each batch still missing, run by run (None: missing).
    rows: list[tuple[Series, int, dict[str, Any] | None]] = [
        row for s in series for row in [*((s, b, r) for b, r in sorted(s.points.items())),
                                        *((s, b, None) for b in s.missing)]]
    rows = _newest(rows, table)
    bounds = {(s.run_id, b): tpot_bound(s, b, r) for s, b, r in rows if r is not None}
    with_bound = any(v is not None for v in bounds.values())
    if with_bound:
        table.add_column("TPOT bound", justify="right")
        table.add_column("bound/TPOT", justify="right")
    for s, batch, result in rows:
        if result is None:
            table.add_row(names[s.run_id], str(batch), "[yellow]missing[/yellow]",
                          *[""] * (len(table.columns) - 3))
            continue
        cells = [fmt.format(result[key]) if isinstance(result.get(key), int | float)
                 else "-" for key, _, fmt in SUMMARY_FIELDS]
        if with_bound:
            bound, measured = bounds[(s.run_id, batch)], result.get("mean_tpot_ms")
            cells += [f"{bound:.2f}" if bound else "-",
                      f"{bound / measured:.2f}" if bound and measured else "-"]
        style = "red" if number_of(result, "failed") > 0 else None
        table.add_row(names[s.run_id], str(batch), *cells, style=style)
    return table


# The server's side of a point (see `metrics`): column, summary key, format.
METRIC_COLUMNS = [("KV peak %", "kv_cache_usage_peak", "{:.1f}"),
                  ("KV mean %", "kv_cache_usage_mean", "{:.1f}"),
                  ("finished", "requests_finished", "{:.0f}"),
                  ("running peak", "running_peak", "{:.0f}"),
                  ("waiting peak", "waiting_peak", "{:.0f}"),
                  ("preempted", "preemptions", "{:.0f}"),
                  ("prefix hit %", "prefix_hit_pct", "{:.1f}"),
                  ("spec accept %", "spec_acceptance_pct", "{:.1f}"),
                  ("accept len", "spec_mean_acceptance_length", "{:.2f}"),
                  ("gen tok/s", "generation_tok_s", "{:.1f}")]


def metrics_table(series: list[Series]) -> Table | None:
    """Peaks, means and rates of the server's metrics per point; None when none were taken."""
    rows = [(s, batch, summary if isinstance(summary, dict) else {}) for s in series
            for batch, data in sorted(s.metrics.items())
            for summary in [data.get("summary")]]
    if not rows:
        return None
    names = run_names(series)
    table = Table(title="server metrics during each point (vLLM /metrics)")
    rows = _newest(rows, table)
    shown = [c for c in METRIC_COLUMNS if any(c[1] in summary for _, _, summary in rows)]
    add_run_column(table, names)
    table.add_column("batch", justify="right")
    for name, _, _ in shown:
        table.add_column(name, justify="right")
    for s, batch, summary in rows:
        table.add_row(names[s.run_id], str(batch), *[
            fmt.format(summary[key]) if isinstance(summary.get(key), int | float) else "-"
            for _, key, fmt in shown])
    return table


def from_first_request(samples: list[dict[str, float]]) -> list[dict[str, float]]:
    """The samples from the last one before the server saw the first request (a request
    running or waiting, or a counter moved): the client's start-up (~10 s of `vllm bench`
    loading) is not part of the point. All of them when no request shows."""
    def busy(x: dict[str, float]) -> bool:
        return x.get("running", 0) > 0 or x.get("waiting", 0) > 0 or any(
            x.get(k, 0) > samples[0].get(k, 0) for k in ("requests_finished",
                                                          "prefix_queries"))
    first = next((i for i, x in enumerate(samples) if busy(x)), None)
    return samples if first is None else samples[max(first - 1, 0):]


def plot_text(text: str) -> str:
    """A label as matplotlib shows it literally: a `$` would start mathtext (and bad
    mathtext raises), control characters are shown as '?', tabs and newlines as spaces."""
    return printable(" ".join(text.split())).replace("$", r"\$")


def samples_of(data: Any) -> list[dict[str, float]]:
    """A metrics file's samples that have a time, each with its numeric values only."""
    samples = data.get("samples") if isinstance(data, dict) else None
    return [{k: float(v) for k, v in x.items()
             if isinstance(v, int | float) and not isinstance(v, bool)}
            for x in (samples if isinstance(samples, list) else [])
            if isinstance(x, dict) and isinstance(x.get("t"), int | float)
            and not isinstance(x.get("t"), bool)]


def write_metrics_plot(series: list[Series], path: Path) -> Path | None:
    """KV cache usage and requests running/waiting over each point's time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = run_names(series)
    curves = [(plot_text(f"{names[s.run_id]} b{batch}"), samples) for s in series
              for batch, data in sorted(s.metrics.items())
              for samples in [samples_of(data)] if samples]
    if not curves:
        return None
    title = "" if len(curves) <= MAX_PLOT_CURVES else \
        f" (the newest {MAX_PLOT_CURVES} of {len(curves):,} points)"
    curves = curves[-MAX_PLOT_CURVES:]
    fig, (kv, queue) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (label, samples) in enumerate(curves):
        samples = from_first_request(samples)
        t0 = samples[0]["t"]
        xs = [x["t"] - t0 for x in samples]
        color = f"C{i % 10}"  # one colour per point, the same in every panel
        kv.plot(xs, [100 * x.get("kv_cache_usage", 0) for x in samples], label=label,
                color=color)
        queue.plot(xs, [x.get("running", 0) for x in samples], label=f"{label} running",
                   color=color)
        queue.plot(xs, [x.get("waiting", 0) for x in samples], linestyle="--",
                   label=f"{label} waiting", color=color)
    kv.set_title(f"KV cache usage (%){title}")
    kv.set_ylim(0, 100)
    queue.set_title("requests running (solid) and waiting (dashed)")
    for ax in (kv, queue):
        ax.set_xlabel("seconds since the first request")
        ax.grid(True, alpha=0.3)
    kv.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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


def compare_table(series: list[Series]) -> Table:
    if len(series) != 2:
        raise UsageError("--compare needs exactly two runs: "
                         "`invoke report --compare --runs A --runs B`.")
    a, b = series
    rows = compare_rows(a, b)
    if not rows:
        raise UsageError(f"{a.label} and {b.label} share no batch size to compare.")
    names = run_names([a, b])
    table = Table(title=f"{names[b.run_id]} / {names[a.run_id]}  (>1 is better for "
                  "throughput, <1 for latency)")
    table.add_column("batch", justify="right")
    for _, name, _ in COMPARE_KEYS:
        table.add_column(name, justify="right")
    for batch, ratios in _newest(rows, table, "batch sizes"):
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


# A spreadsheet reads a cell starting with one of these as a formula (=HYPERLINK(…),
# @SUM(…), =cmd|…): OWASP's "CSV injection" list.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any, *, number: bool = False) -> Any:
    """The one escaping of a report.csv cell: a number column holds a number or nothing;
    a text cell that a spreadsheet would run as a formula starts with `'`."""
    if number:
        return value if isinstance(value, int | float) and not isinstance(value, bool) \
            else ""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(series: list[Series], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = [key for key, _, _ in SUMMARY_FIELDS]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run_id", "label", "model", "vendor", "workload", "batch", *keys])
        for s in series:
            workload = s.meta.workload.name if s.meta.workload else ""
            for batch, result in sorted(s.points.items()):
                writer.writerow([
                    *(csv_cell(v) for v in (s.run_id, s.label, s.meta.model, s.meta.vendor,
                                            workload)),
                    csv_cell(batch, number=True),
                    *(csv_cell(result.get(k), number=True) for k in keys)])
    return path


PLOTS = [("output_throughput", "output tokens/s"), ("mean_ttft_ms", "mean TTFT (ms)"),
         ("mean_tpot_ms", "mean TPOT (ms)")]


def write_plots(series: list[Series], path: Path) -> Path:
    """Throughput, TTFT and TPOT against batch size, one line per run."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTS), figsize=(6 * len(PLOTS), 4.5))
    names = run_names(series)
    for ax, (key, title) in zip(axes, PLOTS, strict=True):
        for s in series:
            xs = [b for b in sorted(s.points) if isinstance(s.points[b].get(key), int | float)]
            if not xs:
                continue
            ys = [s.points[b][key] for b in xs]
            ax.plot(xs, ys, marker="o" if len(xs) > 1 else "D",
                    label=plot_text(names[s.run_id]))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (prompts or concurrency)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
