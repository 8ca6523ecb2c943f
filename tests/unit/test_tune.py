"""`invoke tune`'s search space, SLO, winner file and resume, without serving (the real
tune runs in tests/e2e/test_tune_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from glmkit.errors import UsageError
from glmkit.host.settings import Settings
from glmkit.host.vendors import VENDORS
from glmkit.knowledge.catalog import CATALOG, resolve_model
from glmkit.measure.tune import (
    STATE,
    Row,
    TuneReport,
    TuneRequest,
    _open,
    _winner_file,
    _write_state,
    candidates_for,
)
from glmkit.measure.workloads import parse_slo


def test_slo_becomes_goodput_bounds() -> None:
    assert parse_slo("ttft-p99=2000,tpot-p99=50") == ("ttft:2000", "tpot:50")
    assert parse_slo("e2el=1500.5") == ("e2el:1500.5",)
    assert parse_slo(None) == ()
    for bad in ("ttft", "itl-p99=5", "tpot-p99=-1", "ttft-p99=fast"):
        with pytest.raises(UsageError, match="--slo"):
            parse_slo(bad)


def test_cpu_candidates_start_with_the_recipe_default() -> None:
    names = [c.name for c in candidates_for(resolve_model("glmkit/glm-tiny"), VENDORS["cpu"])]
    assert names[0] == "recipe default" and len(names) == 4
    base = Settings(extra_args=("--enforce-eager",))
    seqs = candidates_for(resolve_model("glmkit/glm-tiny"), VENDORS["cpu"])[1].apply(base)
    assert seqs.extra_args == ("--enforce-eager", "--max-num-seqs", "8")


def test_gpu_candidates_search_the_recipes_strategies_and_knobs() -> None:
    names = [c.name for c in candidates_for(CATALOG["zai-org/GLM-5.2"], VENDORS["cuda"])]
    assert names[0] == "recipe default"
    assert {"single_node_tep", "MTP", "max-num-seqs 512", "FP8 KV cache"} <= set(names)
    vision = [c.name for c in candidates_for(CATALOG["zai-org/GLM-4.5V"], VENDORS["cuda"])]
    assert "MTP" not in vision


def test_winner_file_holds_only_what_differs(tmp_path: Path) -> None:
    winner = Settings(vendor="cpu", extra_args=("--max-num-seqs", "8"), project="tune-x")
    path = _winner_file(tmp_path, winner)
    assert yaml.safe_load(path.read_text()) == {"glmkit": {
        "vendor": "cpu", "extra_args": ["--max-num-seqs", "8"]}}


def test_ratio_is_against_the_default_measured_in_the_same_tune(tmp_path: Path) -> None:
    rows = [Row("recipe default", "r0", 2.0, 100.0, 10.0, 1.0),
            Row("max-num-seqs 8", "r1", 3.0, 150.0, 9.0, 1.0),
            Row("prefix caching off", None, None, None, None, None, "exited")]
    report = TuneReport(tmp_path, rows, "max-num-seqs 8", None)
    assert report.ratio(rows[1]) == 1.5 and report.ratio(rows[2]) is None


def test_resume_reads_the_saved_request_and_rows(tmp_path: Path) -> None:
    request = TuneRequest(settings=Settings(vendor="cpu", extra_args=("--x",)),
                          workload="balanced", batch="4", slo=("ttft:2000",))
    folder = tmp_path / "tune" / "20260101-000000"
    folder.mkdir(parents=True)
    _write_state(folder, request, [Row("recipe default", "r0", 2.0, 1.0, 1.0, 1.0)])
    assert json.loads((folder / STATE).read_text())["slo"] == ["ttft:2000"]
    again_folder, again, rows = _open(TuneRequest(settings=Settings(),
                                                  resume="20260101-000000"), tmp_path)
    assert again_folder == folder and again.settings.extra_args == ("--x",)
    assert again.batch == "4" and again.slo == ("ttft:2000",) and rows[0].goodput == 2.0
    with pytest.raises(UsageError, match="No tune"):
        _open(TuneRequest(settings=Settings(), resume="nope"), tmp_path)
    with pytest.raises(UsageError, match="plain name"):
        _open(TuneRequest(settings=Settings(), resume="../x"), tmp_path)


def test_bad_input_is_refused_before_a_tune_folder_exists(tmp_path: Path) -> None:
    from rich.console import Console

    from glmkit.host.hardware import Hardware
    from glmkit.measure.tune import run_tune

    with pytest.raises(UsageError, match="Unknown vendor"):
        run_tune(TuneRequest(settings=Settings(vendor="intel")), Hardware(vendor="cpu"), {},
                 tmp_path, Console())
    assert not (tmp_path / "results").exists()


def test_a_tune_serves_each_candidate_of_the_planned_model_and_writes_the_winner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The whole loop with serving and benchmarking faked: candidates come from the plan
    # `up` makes of the settings, and the best goodput's settings become the winner file.
    from types import SimpleNamespace

    from rich.console import Console

    from glmkit.host.hardware import Hardware
    from glmkit.measure import tune

    served: list[str] = []
    monkeypatch.setattr(tune.deploy, "up", lambda plan, *_, **__: served.append(
        " ".join(plan.serving.serve_args)))
    monkeypatch.setattr(tune.deploy, "down", lambda *_: [])

    def bench(request: object, *_: object) -> object:
        goodput = float(len(served))  # each later candidate measures better
        return SimpleNamespace(series=SimpleNamespace(run_id=f"r{len(served)}", points={
            4: {"request_goodput": goodput, "output_throughput": 1.0}}))

    monkeypatch.setattr(tune, "run_bench", bench)
    settings = Settings(vendor="cpu", project="tune-unit")
    report = tune.run_tune(TuneRequest(settings=settings, workload="balanced", batch="4",
                                       slo=("ttft:2000",), max_candidates=2),
                           Hardware(vendor="cpu"), {}, tmp_path, Console(quiet=True))
    names = [c.name for c in candidates_for(resolve_model(settings.model), VENDORS["cpu"])]
    assert [r.candidate for r in report.rows] == names[:2] and len(served) == 2
    assert report.winner == names[1]
    assert report.winner_file is not None
    assert yaml.safe_load(report.winner_file.read_text())["glmkit"]["vendor"] == "cpu"
