"""Hostile input through the tasks and the library: one clear line and a non-zero exit,
never a traceback, a hang, a half-written file, a leaked secret or text read as markup.

Tasks run in-process through invoke's Program, so a traceback fails the test with the
exception itself; no Docker is needed (the few Docker reads are faked).
"""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from glmkit.errors import CommandFailed, EnvironmentProblem, GlmkitError, UsageError

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ["[/x]", "[bold]", "[link=file:///etc/passwd]x[/link]"]


def run_task(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             tmp_path: Path, *argv: str, env: dict[str, str] | None = None
             ) -> tuple[int, str, str]:
    """`invoke ARGV` in this process: (exit code, stdout, stderr). Files go to tmp_path."""
    from invoke import Collection, Program

    import tasks

    monkeypatch.setenv("GLMKIT_HARDWARE", str(ROOT / "tests" / "cpu-host.json"))
    for name in [n for n in os.environ if n.startswith("GLMKIT_") and n != "GLMKIT_HARDWARE"]:
        monkeypatch.delenv(name)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(tasks, "COMPOSE_DIR", tmp_path / "compose")
    monkeypatch.setattr(tasks, "RESULTS_DIR", tmp_path / "results")
    capsys.readouterr()
    code = 0
    try:
        Program(namespace=Collection.from_module(tasks)).run(["invoke", *argv], exit=True)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, message: str, exit_code: int = 2) -> None:
    assert code == exit_code, err
    assert "Traceback" not in err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err


def rendered(*renderables: Any) -> str:
    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(*renderables)
    return console.file.getvalue()  # type: ignore[attr-defined]


# --- item 8: user text is printed as text, never read as rich markup ------------------

@pytest.mark.parametrize("text", HOSTILE)
def test_errors_print_markup_as_text(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    from glmkit.cli.views import print_error

    assert print_error(UsageError(f"bad value {text} (yaml: [1, 2])")) == 2
    err = capsys.readouterr().err
    assert f"bad value {text} (yaml: [1, 2])" in err.replace("\n", "")


@pytest.mark.parametrize("text", HOSTILE)
def test_notes_and_tables_print_markup_as_text(text: str) -> None:
    from glmkit.cli.views import (
        check_table,
        models_table,
        print_notes,
        settings_table,
        status_table,
    )
    from glmkit.knowledge.catalog import generic_model
    from glmkit.run.engine import ServerStatus
    from glmkit.run.tool_check import CaseResult

    console = Console(file=io.StringIO(), width=300, color_system=None)
    print_notes(console, [f"skipped {text}"], "skipped")
    assert f"skipped {text}" in console.file.getvalue()  # type: ignore[attr-defined]
    assert repr(text) in rendered(settings_table({"project": text}, {"project": "environment"}))
    assert f"{text}/x" in rendered(models_table([generic_model(f"{text}/x", local=False)]))
    status = ServerStatus(project=text, node="-", model=text, vendor="cpu", url="-",
                          state="exited", api="-", docker_health="-", restarts=0, image=text)
    assert text in rendered(status_table([status]))
    case = CaseResult("weather", "auto", True, False, False, f"said {text}")
    assert f"FAIL said {text}" in rendered(check_table([case]))


def test_doctor_lines_escape_what_they_report() -> None:
    from glmkit.run.doctor import Check, render_lines

    lines = render_lines([Check("port 8000", "fail", "in use on [/x]", "stop [bold]it")])
    text = rendered("\n".join(lines))
    assert "in use on [/x]" in text and "stop [bold]it" in text


def test_report_labels_and_advice_titles_print_as_text(tmp_path: Path) -> None:
    from glmkit.cli.views import advice_table, print_report
    from glmkit.measure.results import Series, read_meta
    from glmkit.plan.advice import Advice

    console = Console(file=io.StringIO(), width=300, color_system=None)
    series = Series("[/x]", read_meta({"label": "[link=file:///etc/passwd]x[/link]"}, "r"),
                    {16: {"output_throughput": 1.0}})
    print_report(console, [series], tmp_path)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[link=file:///etc/passwd]x[/link]" in text
    advice = Advice("[/x] on 1 × GPU", [("model", "[/b] " + "wide " * 10)], "[bold]", ())
    assert "[/x] on 1 × GPU" in rendered(advice_table(advice))


def test_a_log_line_with_brackets_does_not_break_the_health_wait() -> None:
    from glmkit.run.engine import wait_until

    hints = iter(["loading [/x] weights", "[link=http://x]y", None])
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    assert wait_until(lambda: next(hints), 30, console, "[/model]", lambda: pytest.fail(),
                      poll_s=0) >= 0


def test_render_with_a_markup_vendor_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--vendor", "[/x]",
                            "--no-check")
    one_line_error(code, err, "Unknown vendor '[/x]'")
    assert not (tmp_path / "compose").exists()


def test_config_shows_a_markup_project_as_text(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    code, out, _ = run_task(monkeypatch, capsys, tmp_path, "config",
                            env={"GLMKIT_ROUTER_POLICY": "[/x]"})
    assert code == 0 and "'[/x]'" in out


# --- item 9: secrets stay off command lines, out of output and errors ------------------

def test_secret_from_a_file_stripped_and_checked(tmp_path: Path) -> None:
    from glmkit.host.credentials import secret_option

    key = tmp_path / "key"
    key.write_text("sk-test-123\n")
    key.chmod(0o600)
    assert secret_option(None, str(key), "--api-key") == ("sk-test-123", [])
    key.chmod(0o644)
    value, warnings = secret_option(None, str(key), "--api-key")
    assert value == "sk-test-123" and "chmod 600" in warnings[0]
    assert secret_option(None, "-", "--token", io.StringIO("hf_x\n")) == ("hf_x", [])
    assert secret_option(None, None, "--token") == (None, [])


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"), ("  \n", "is empty"), ("a" * 5000, "longer than 4096"),
    ("sk-1\nsk-2", "line break"), (b"\xff\xfe", "not UTF-8"),
])
def test_bad_secret_files_are_refused(tmp_path: Path, content: str | bytes,
                                      message: str) -> None:
    from glmkit.host.credentials import secret_option

    key = tmp_path / "key"
    if isinstance(content, bytes):
        key.write_bytes(content)
    else:
        key.write_text(content)
    with pytest.raises(UsageError, match=message):
        secret_option(None, str(key), "--api-key")
    with pytest.raises(UsageError, match="cannot read"):
        secret_option(None, str(tmp_path), "--api-key")
    with pytest.raises(UsageError, match="give one of them"):
        secret_option("sk", str(key), "--api-key")


def test_a_token_on_the_command_line_is_warned_about(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    import glmkit.host.credentials

    seen = []
    monkeypatch.setattr(glmkit.host.credentials, "login",
                        lambda token, env, interactive=True, **_: seen.append(token) or "me")
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "login", "--token", "hf_secret1")
    assert code == 0 and seen == ["hf_secret1"] and "logged in" in out
    assert "visible to other local users" in err and "hf_secret1" not in out + err
    token = tmp_path / "token"
    token.write_text("hf_secret2\n")
    token.chmod(0o600)
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "login", "--token-file", str(token))
    assert code == 0 and seen[-1] == "hf_secret2" and err == ""


def test_up_reads_the_api_key_from_a_file(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "up", "--api-key-file",
                            str(tmp_path / "missing"), "--project", "trust-up")
    one_line_error(code, err, "--api-key-file")
    assert "sk-" not in err


def test_errors_from_up_never_carry_the_key(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    from glmkit.run import deploy

    from .helpers import plan_for

    def failing(*_: Any) -> None:
        raise CommandFailed(["docker", "compose", "up", "--api-key", "sk-topsecret9"], 1, "",
                            "error near sk-topsecret9")

    monkeypatch.setattr(deploy, "_prepare_here", failing)
    with pytest.raises(CommandFailed) as caught:
        deploy.up(plan_for(), "sk-topsecret9", tmp_path, tmp_path, Console(file=io.StringIO()),
                  {"HF_TOKEN": "hf_alsosecret"})
    err = caught.value
    assert "sk-topsecret9" not in str(err) + err.stderr + " ".join(err.argv)
    assert "***" in err.stderr


def test_config_never_shows_a_key_given_after_the_dashes() -> None:
    from glmkit.cli.views import settings_table

    text = rendered(settings_table({"extra_args": ("--api-key", "sk-abc", "--hf-token=hf_x")},
                                   {"extra_args": "flag"}))
    assert "sk-abc" not in text and "hf_x" not in text and "***" in text


# --- item 12: tracebacks and wrong answers --------------------------------------------

@pytest.mark.parametrize("section", ["[port, 9000]", "'port=9000'", "5"])
def test_a_glmkit_section_that_is_not_a_mapping(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path, section: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"glmkit: {section}\n")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "-f", str(config), "config")
    one_line_error(code, err, "`glmkit:` must be a mapping")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "-f", str(config), "down")
    one_line_error(code, err, "`glmkit:` must be a mapping")


def test_settings_refuse_a_bad_section_and_odd_keys() -> None:
    from glmkit.host.settings import resolve_settings

    with pytest.raises(UsageError, match="must be a mapping"):
        resolve_settings({}, ["port"], {})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="Unknown setting"):
        resolve_settings({}, {1: "x", "portt": 2}, {})


@pytest.mark.parametrize("content", [
    "[1, 2]", "not json", '"cpu"', "null", '{"vendor": "cpu", "gpus": {"a": 1}}',
    '{"vendor": "cuda", "gpus": [{"index": 0, "name": "H100", "memory_mib": -5}]}',
    '{"vendor": "cuda", "gpus": [1]}', '{"vendor": 7}', b"\xff\xfe",
])
def test_junk_hardware_files_are_one_line(tmp_path: Path, content: str | bytes) -> None:
    from glmkit.host.hardware import detect

    path = tmp_path / "hw.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(UsageError, match="GLMKIT_HARDWARE"):
        detect({"GLMKIT_HARDWARE": str(path)})


def test_a_missing_or_folder_hardware_file_is_one_line(tmp_path: Path) -> None:
    from glmkit.host.hardware import detect

    for where in (tmp_path, tmp_path / "missing.json"):
        with pytest.raises(UsageError, match="GLMKIT_HARDWARE"):
            detect({"GLMKIT_HARDWARE": str(where)})


@pytest.mark.parametrize("name", [
    "a" * 150 + "/" + "b" * 150, "org/" + "b" * 97, "org/-x", "org/.x", "org/x-", "org/a..b",
    "-org/x", "org/x\nname", "org/x y", "a" * 300, "~nosuchuser-glmkit/x",
])
def test_model_ids_the_hub_would_refuse_are_refused(name: str) -> None:
    from glmkit.knowledge.catalog import resolve_model

    with pytest.raises(UsageError):
        resolve_model(name)


def test_hub_ids_at_the_limit_still_work() -> None:
    from glmkit.knowledge.catalog import resolve_model

    assert resolve_model("org/" + "b" * 96).id == "org/" + "b" * 96
    assert not resolve_model("Qwen/Qwen3-0.6B").in_catalog


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["doctor", "--port", "99999"], {}, "--port must be a whole number from 1 to 65535, got 99999"),
    (["doctor", "--port", "abc"], {}, "expected a whole number"),
    (["doctor", "--host", "not-an-ip"], {}, "not an IP address"),
    (["doctor"], {"GLMKIT_PORT": "70000"},
     "--port must be a whole number from 1 to 65535, got 70000"),
    (["plan", "--tp", "-2", "--gpu", "h100"], {}, "--tp must be a whole number from 1"),
    (["plan", "--gpu-count", "0", "--gpu", "h100"], {}, "--gpu-count must be"),
    (["plan", "--batch", "0", "--gpu", "h100"], {}, "--batch must be"),
    (["plan", "--context", "-5", "--gpu", "h100"], {}, "--context must be"),
    (["plan", "--nodes", "0", "--gpu", "h100"], {}, "--nodes must be"),
    (["plan", "--gpu-mem", "-80", "--gpu", "h100"], {}, "--gpu-mem must be"),
    (["plan", "--gpu-memory-utilization", "5", "--gpu", "h100"], {}, "must be in (0, 1]"),
    (["plan", "--gpu", "h100"], {"GLMKIT_TP": "-2"}, "--tp must be"),
    (["plan", "--batch", "abc"], {}, "--batch: expected a number"),
    (["logs", "--tail", "abc"], {}, "--tail: expected a number"),
    (["tiny-model", "--layers", "abc"], {}, "--layers: expected a number"),
    (["tune", "--budget", "abc"], {}, "--budget: expected a number"),
    (["bench", "--request-rate", "abc"], {}, "--request-rate 'abc'"),
    (["bench", "--num-prompts", "0"], {}, "--num-prompts must be at least 1"),
    (["bench", "--resume", "../../etc"], {}, "must be a plain name"),
    (["plan", "--strategy", "junk", "--gpu", "h100"], {}, "Unknown --strategy 'junk'"),
    (["plan", "--strategy", "single_node_dep", "--gpu", "h100"], {}, "does not offer"),
    (["report", "--runs", "ref:glm45-fp8-prompt-heavy-16", "--out", "/dev/null"], {},
     "cannot write a report there"),
])
def test_bad_numbers_and_addresses_are_one_line(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path, argv: list[str],
                                                env: dict[str, str], message: str) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *argv, env=env)
    one_line_error(code, err, message)
    assert not (tmp_path / "results").exists()


def test_plan_requests_refuse_non_positive_counts() -> None:
    from glmkit.plan.advice import PlanRequest

    for bad in ({"tp": -2}, {"tp": 0}, {"batch": 0}, {"context": 0}, {"nodes": -1},
                {"gpu_count": 0}, {"gpu_mem": 0.0}, {"gpu_memory_utilization": 5.0},
                {"gpu_memory_utilization": 0.0}, {"goal": "fast"}):
        with pytest.raises(UsageError):
            PlanRequest(model="glmkit/glm-tiny", **bad)  # type: ignore[arg-type]


def test_doctor_refuses_an_address_it_cannot_check() -> None:
    from glmkit.run.engine import port_free

    with pytest.raises(EnvironmentProblem, match="Cannot publish on"):
        port_free("not-an-ip", 8000)


class _NoContainers:
    class containers:  # the Docker SDK's shape: client.containers.list(...)
        @staticmethod
        def list(**_: Any) -> list[Any]:
            return []


def test_logs_with_nothing_running_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.run import deploy, engine

    streamed: list[list[str]] = []
    monkeypatch.setattr(engine, "client", lambda docker_host=None: _NoContainers())
    monkeypatch.setattr(deploy, "stream", lambda argv, **_: streamed.append(argv) or 0)
    with pytest.raises(GlmkitError, match="Nothing is running in project 'ghost'"):
        deploy.show_logs("ghost", None, follow=False, tail=200)
    assert streamed == []


def test_reference_names_are_names_not_paths(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.measure import results

    outside = tmp_path / "secret.txt"
    outside.write_text("# model: x\n# batch: 16\nSuccessful requests: 16\n")
    for name in (str(tmp_path / "secret"), f"../../../../../../../..{tmp_path}/secret"):
        with pytest.raises(UsageError, match="No reference run"):
            results.load_reference(name)
    shipped = tmp_path / "reference"
    shipped.mkdir()
    (shipped / "nobatch.txt").write_text("# model: x\nSuccessful requests: 16\n")
    monkeypatch.setattr(results, "REFERENCE_DIR", shipped)
    with pytest.raises(UsageError, match="no '# batch: N' line"):
        results.load_reference("nobatch")


def _run_folder(results_dir: Path, name: str, meta: bytes, points: dict[str, bytes]) -> Path:
    folder = results_dir / name
    (folder / "points").mkdir(parents=True)
    (folder / "meta.json").write_bytes(meta)
    for file, data in points.items():
        (folder / "points" / file).write_bytes(data)
    return folder


def test_corrupt_results_are_skipped_with_a_note(tmp_path: Path) -> None:
    from glmkit.measure.results import load_all, open_run

    good = json.dumps({"model": "m", "batches": [1, 16]}).encode()
    _run_folder(tmp_path, "20250101-000000-good", good, {
        "batch-0001.json": b'{"output_throughput": 5.0}', "batch-0016.json": b"\xff\xfe{",
        "batch-abc.json": b"{}"})
    _run_folder(tmp_path, "20250101-000001-latin1", b'{"model": "caf\xe9"}', {})
    _run_folder(tmp_path, "20250101-000002-array", b"[1, 2]", {})
    _run_folder(tmp_path, "20250101-000003-shapes", json.dumps(
        {"hardware": {"gpus": 5}, "serve_args": 7, "points": [{"batch": "x"}],
         "batches": "16"}).encode(), {})
    series = load_all(tmp_path, [])
    assert [s.run_id for s in series] == ["20250101-000000-good", "20250101-000003-shapes"]
    assert series[0].points == {1: {"output_throughput": 5.0}}
    assert series[0].missing == ()  # a point file that exists is never written again
    assert series[1].meta.serve_args == () and series[1].meta.hardware.gpus == ()
    with pytest.raises(UsageError, match="cannot be read"):
        open_run(tmp_path, "20250101-000001-latin1")
    from glmkit.measure.results import load_report

    notes = load_report(tmp_path, [])[1]
    assert len(notes) == 3 and any("batch-0016.json" in n for n in notes)


def test_report_task_notes_a_corrupt_point(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    _run_folder(tmp_path / "results", "20250101-000000-r",
                json.dumps({"model": "m", "batches": [16]}).encode(),
                {"batch-0016.json": b"{not json"})
    code, out, _ = run_task(monkeypatch, capsys, tmp_path, "report", "--out",
                            str(tmp_path / "out"))
    assert code == 0 and "skipped:" in out and "batch-0016.json" in out


def test_concurrent_failures_are_all_kept(tmp_path: Path) -> None:
    from glmkit.measure.results import create_run, read_meta

    run = create_run(tmp_path, read_meta({"batches": [16]}, "race"))
    writers = 24
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        barrier.wait()
        try:
            run.save_failure(16, {"writer": n, "output_tail": ["x" * 20000]})
        except BaseException as err:  # collected: a thread's error would be lost
            errors.append(err)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    files = sorted((run.path / "failures").glob("batch-0016*.json"))
    assert len(files) == writers
    assert sorted(json.loads(f.read_text())["writer"] for f in files) == list(range(writers))
    assert not [p for p in (run.path / "failures").iterdir() if p.name.startswith(".")]


def test_concurrent_samples_keep_the_first_and_raise_nothing(tmp_path: Path) -> None:
    from glmkit.measure.results import create_run, read_meta

    run = create_run(tmp_path, read_meta({"batches": [16]}, "samples"))
    writers = 16
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        barrier.wait()
        try:
            run.save_metrics(16, {"writer": n, "samples": [{"t": 0}] * 2000})
        except BaseException as err:  # collected: a thread's error would be lost
            errors.append(err)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert json.loads((run.path / "metrics" / "batch-0016.json").read_text())["writer"] in \
        range(writers)


def test_two_tunes_in_the_same_second_get_their_own_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from glmkit.host.settings import Settings
    from glmkit.measure.tune import TuneRequest, _open

    monkeypatch.setattr(time, "strftime", lambda *_: "20260101-000000")
    first, _, _ = _open(TuneRequest(settings=Settings()), tmp_path)
    second, _, _ = _open(TuneRequest(settings=Settings()), tmp_path)
    assert first != second and first.is_dir() and second.is_dir()


@pytest.mark.parametrize("state", [
    b'{"settings": []}', b'{"settings": {"nope": 1}, "workload": "w", "batch": "1", '
    b'"input_len": null, "output_len": null, "slo": [], "rows": []}', b"[]", b"\xff",
])
def test_a_broken_tune_state_is_one_line(tmp_path: Path, state: bytes) -> None:
    from glmkit.host.settings import Settings
    from glmkit.measure.tune import STATE, TuneRequest, _open

    folder = tmp_path / "tune" / "t1"
    folder.mkdir(parents=True)
    (folder / STATE).write_bytes(state)
    with pytest.raises(UsageError):
        _open(TuneRequest(settings=Settings(), resume="t1"), tmp_path)


def test_build_and_pull_read_the_settings(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    from glmkit.run import image_build

    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(image_build, "pull_for", lambda *a, **_: seen.append(a) or "pulled")
    monkeypatch.setattr(image_build, "build_for", lambda *a, **_: seen.append(a) or "built")
    code, _, _ = run_task(monkeypatch, capsys, tmp_path, "pull",
                          env={"GLMKIT_VENDOR": "rocm", "GLMKIT_VLLM_VERSION": "0.11.0"})
    assert code == 0 and seen[-1][:3] == ("rocm", None, "0.11.0")
    code, _, _ = run_task(monkeypatch, capsys, tmp_path, "build", "--model", "glm-4.6",
                          env={"GLMKIT_VENDOR": "cuda"})
    assert code == 0 and seen[-1][:2] == ("cuda", "glm-4.6")
    code, _, _ = run_task(monkeypatch, capsys, tmp_path, "pull")
    assert code == 0 and seen[-1][:2] == ("cuda", None)
