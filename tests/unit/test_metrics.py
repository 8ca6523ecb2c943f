"""The server's metrics of a benchmark point, from a `/metrics` page vLLM 0.32 served
(captured from the CPU image after a short benchmark; tests/unit/data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from glmkit.measure.server_metrics import parse_metrics, summarize

PAGE = (Path(__file__).parent / "data" / "vllm-0.32-metrics.txt").read_text()


def test_the_watched_families_are_read_from_a_real_page() -> None:
    values = parse_metrics(PAGE)
    assert {"kv_cache_usage", "running", "waiting", "preemptions", "prefix_queries",
            "prefix_hits", "generation_tokens"} <= set(values)
    assert values["generation_tokens"] > 0 and values["running"] == 0


def test_summary_of_a_point() -> None:
    samples = [
        {"t": 0.0, "kv_cache_usage": 0.0, "running": 0, "waiting": 0, "preemptions": 2,
         "prefix_queries": 100, "prefix_hits": 10, "drafts": 50, "draft_tokens": 50,
         "accepted_tokens": 20, "generation_tokens": 1000},
        {"t": 1.0, "kv_cache_usage": 0.5, "running": 8, "waiting": 4, "preemptions": 2,
         "prefix_queries": 100, "prefix_hits": 10, "drafts": 50, "draft_tokens": 50,
         "accepted_tokens": 20, "generation_tokens": 1000, "requests_finished": 3},
        {"t": 2.0, "kv_cache_usage": 0.9, "running": 12, "waiting": 0, "preemptions": 3,
         "prefix_queries": 300, "prefix_hits": 60, "drafts": 150, "draft_tokens": 150,
         "accepted_tokens": 80, "generation_tokens": 1400},
        {"t": 5.0, "kv_cache_usage": 0.0, "running": 0, "waiting": 0, "preemptions": 3,
         "prefix_queries": 300, "prefix_hits": 60, "drafts": 150, "draft_tokens": 150,
         "accepted_tokens": 80, "generation_tokens": 1400, "requests_finished": 15},
    ]
    summary = summarize(samples)
    assert summary["kv_cache_usage_peak"] == 90.0
    assert summary["kv_cache_usage_mean"] == 35.0
    assert summary["running_peak"] == 12 and summary["waiting_peak"] == 4
    assert summary["preemptions"] == 1
    assert summary["requests_finished"] == 12
    assert summary["prefix_hit_pct"] == 25.0  # 50 hits of 200 queries during the point
    assert summary["spec_acceptance_pct"] == 60.0  # 60 of 100 draft tokens
    assert summary["spec_mean_acceptance_length"] == 1.6
    assert summary["generation_tok_s"] == 400.0  # 400 tokens in the one busy second


def test_no_samples_no_summary() -> None:
    assert summarize([]) == {}
    assert parse_metrics("# nothing here\n") == {}


def test_report_shows_and_plots_the_server_metrics(tmp_path: Path) -> None:
    from rich.console import Console

    from glmkit.measure.report import metrics_table, write_metrics_plot
    from glmkit.measure.results import Series, read_meta

    samples = [{"t": 10.0 + i, "kv_cache_usage": i / 10, "running": i, "waiting": 0}
               for i in range(4)]
    with_metrics = Series("a", read_meta({"label": "a"}, "a"), {8: {"completed": 8}},
                          metrics={8: {"samples": samples, "summary": summarize(samples)}})
    without = Series("b", read_meta({"label": "b"}, "b"), {8: {"completed": 8}})
    assert metrics_table([without]) is None and write_metrics_plot([without], tmp_path) is None
    console = Console(width=200, record=True)
    console.print(metrics_table([with_metrics, without]))
    text = console.export_text()
    assert "KV peak %" in text and "30.0" in text and "spec accept" not in text
    png = write_metrics_plot([with_metrics], tmp_path / "m.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"


def test_the_plot_starts_at_the_first_request_with_one_colour_per_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    from glmkit.measure.report import from_first_request, write_metrics_plot
    from glmkit.measure.results import Series, read_meta

    # 10 s of the client starting (idle), then the point.
    idle = [{"t": float(i), "kv_cache_usage": 0.0, "running": 0, "waiting": 0,
             "requests_finished": 5} for i in range(10)]
    busy = [{"t": 10.0 + i, "kv_cache_usage": 0.5, "running": 2, "waiting": 1,
             "requests_finished": 5 + i} for i in range(3)]
    assert from_first_request(idle + busy)[0]["t"] == 9.0  # the sample before the first
    assert from_first_request(idle) == idle
    plotted: list[tuple[list[float], str]] = []
    ylims: list[tuple[float, float]] = []
    plot, set_ylim = matplotlib.axes.Axes.plot, matplotlib.axes.Axes.set_ylim

    def spy_plot(self: Any, xs: list[float], ys: list[float], *a: Any, **kw: Any) -> Any:
        plotted.append((list(xs), kw.get("color", "")))
        return plot(self, xs, ys, *a, **kw)

    def spy_ylim(self: Any, *a: Any, **kw: Any) -> Any:
        ylims.append(a)
        return set_ylim(self, *a, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy_plot)
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylim", spy_ylim)
    runs = [Series("a", read_meta({"label": "a"}, "a"), {b: {"completed": 8} for b in (1, 8)},
                   metrics={b: {"samples": idle + busy} for b in (1, 8)})]
    assert write_metrics_plot(runs, tmp_path / "m.png") is not None
    assert all(xs[0] == 0.0 and xs[-1] == 3.0 for xs, _ in plotted)
    colours = [c for _, c in plotted]
    assert colours == ["C0"] * 3 + ["C1"] * 3  # KV, running, waiting of each point
    assert (0, 100) in ylims  # KV usage on a 0-100 % axis
