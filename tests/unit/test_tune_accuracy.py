"""`invoke tune` never recommends a candidate that answers worse (#34): the rule as a
pure function, and the whole loop with serving, benchmarking and the eval faked.

On the tiny model on CPU no tune candidate (max-num-seqs, max-num-batched-tokens, prefix
caching) changes the arithmetic: batching and caching do not change greedy answers, and
the GPU-only FP8 KV cache candidate is where accuracy could drop. So the rule is shown
here, with a candidate whose accuracy really is lower, rather than end to end."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glmkit.measure.tune import Row, passes_accuracy


def row(name: str, accuracy: Any = None, n: Any = None, goodput: float = 1.0) -> Row:
    return Row(name, "r", goodput, 1.0, 1.0, 1.0, accuracy=accuracy, accuracy_n=n)


def test_a_candidate_significantly_below_the_default_is_not_recommended() -> None:
    default = row("recipe default", 0.96, 200)
    assert passes_accuracy(row("FP8 KV cache", 0.95, 200), default)  # within noise
    assert not passes_accuracy(row("FP8 KV cache", 0.80, 200), default)
    assert passes_accuracy(row("better", 1.0, 200), default)


def test_without_the_defaults_score_there_is_nothing_to_hold_to() -> None:
    assert passes_accuracy(row("x", 0.1, 50), row("recipe default"))
    assert passes_accuracy(row("x", 0.1, 50), None)
    # The default measured, the candidate not: not proven, not recommended.
    assert not passes_accuracy(row("x"), row("recipe default", 0.9, 50))


@pytest.mark.parametrize("hostile", [float("nan"), 1.5, -0.1, "0.9", True, 10 ** 400])
def test_a_hostile_state_file_value_reads_as_not_measured(hostile: Any) -> None:
    value = float("inf") if hostile == 10 ** 400 else hostile
    assert passes_accuracy(row("x", value, 50), row("recipe default"))
    assert not passes_accuracy(row("x", value, 50), row("recipe default", 0.9, 50))
    assert passes_accuracy(row("x", 0.9, 50), row("recipe default", value, 50))


@given(st.integers(1, 500), st.integers(0, 500))
def test_a_candidate_as_good_as_the_default_always_passes(n: int, right: int) -> None:
    right = min(right, n)
    assert passes_accuracy(row("x", right / n, n), row("recipe default", right / n, n))


def test_the_tune_does_not_pick_a_faster_candidate_that_answers_worse(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from glmkit.host.hardware import Hardware
    from glmkit.host.settings import Settings
    from glmkit.measure import tune

    served: list[str] = []
    monkeypatch.setattr(tune.deploy, "up", lambda plan, *_, **__: served.append("x"))
    monkeypatch.setattr(tune.deploy, "down", lambda *_: [])
    monkeypatch.setattr(tune, "run_bench", lambda *_a, **_k: SimpleNamespace(
        series=SimpleNamespace(run_id=f"r{len(served)}", points={
            4: {"request_throughput": float(len(served)), "output_throughput": 1.0}})))
    # The second (faster) candidate gets 30 of 50 right where the default got 48.
    scores = iter([(48 / 50, 50), (30 / 50, 50), (47 / 50, 50)])
    asked: list[tuple[Any, ...]] = []

    def accuracy(*args: Any) -> tuple[float, int]:
        asked.append(args[:3])
        return next(scores)

    monkeypatch.setattr(tune, "_accuracy", accuracy)
    report = tune.run_tune(tune.TuneRequest(settings=Settings(vendor="cpu", project="t"),
                                            batch="4", max_candidates=3, eval_limit=50),
                           Hardware(vendor="cpu"), {}, tmp_path, Console(quiet=True))
    names = [r.candidate for r in report.rows]
    assert [r.accuracy for r in report.rows] == [0.96, 0.6, 0.94]
    assert report.less_accurate == (names[1],)
    assert report.winner == names[2]  # the fastest of those that answer as well
    assert [a[1] for a in asked] == [50, 50, 50]  # the same sample size for each


def test_eval_limit_zero_measures_no_accuracy(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.errors import UsageError
    from glmkit.host.settings import Settings
    from glmkit.measure.tune import parse_request

    request = parse_request(Settings(), workload=None, batch=None, slo=None, budget=None,
                            candidates=None, resume=None, eval_limit="0")
    assert request.eval_limit == 0
    assert parse_request(Settings(), workload=None, batch=None, slo=None, budget=None,
                         candidates=None, resume=None).eval_limit == 50
    with pytest.raises(UsageError, match="--eval-limit"):
        parse_request(Settings(), workload=None, batch=None, slo=None, budget=None,
                      candidates=None, resume=None, eval_limit="-1")
