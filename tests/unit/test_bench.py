from __future__ import annotations

from glmkit.measure.point import fit_lengths


def test_lengths_kept_when_they_fit() -> None:
    assert fit_lengths(8000, 1000, 65536) == (8000, 1000, False)


def test_lengths_scaled_to_the_served_context() -> None:
    in_len, out_len, fitted = fit_lengths(8000, 1000, 2048)
    assert fitted
    assert in_len + out_len <= 2048 - 64
    assert 7.5 < in_len / out_len < 8.5


def test_a_failed_point_is_a_bench_failure_not_an_interruption(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from glmkit.errors import BenchFailed, Interrupted
    from glmkit.measure.bench import BenchOutcome, SweepReport
    from glmkit.measure.point import PointOutcome
    from glmkit.measure.results import Series, create_run, read_meta

    run = create_run(tmp_path, read_meta({"batches": [1, 4], "model": "m"}, "sweep"))
    run.save_point(1, {"completed": 1, "failed": 0})
    outcomes = [PointOutcome(1, True, {"completed": 1}, "ok"),
                PointOutcome(4, False, None, "tokenizer missing")]
    series = Series(run.run_id, run.meta, run.points(), tuple(run.missing()))
    failed = BenchOutcome(series, SweepReport(run, outcomes, run.missing(), False), ())
    with pytest.raises(BenchFailed, match=r"points that failed: \[4\].*--resume"):
        failed.check()
    stopped = BenchOutcome(series, SweepReport(run, outcomes[:1], run.missing(), True), ())
    with pytest.raises(Interrupted, match=r"missing batches \[4\]"):
        stopped.check()
