"""`invoke eval` as a user runs it (#34), in this process: the server found by its
labels (faked: no Docker), the tiny model's set by default, one summary line, exit 0;
a broken copy compared --against the tiny model exits 8 with one line; bad options one
line each before any server is looked up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from glmkit.plan.model_facts import ModelFacts
from glmkit.run.server import RunningServer

from .test_cli_trust import one_line_error, run_task
from .test_eval_data import tiny_set
from .test_evaluate import off_by_one, right, server


def _serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, model: str,
           tiny: bool, key: str | None = None, args: tuple[str, ...] = ()) -> None:
    """`running_server` finds a server at `url`; the tiny set is the test's."""
    from glmkit.measure import eval_data, results
    from glmkit.run import server as found

    target = RunningServer(container="c", served_model=model, model_ref="/models/x",
                           max_model_len=4096, vendor="cpu", image="glmkit/vllm-cpu:test",
                           serve_args=("--max-model-len", "4096", *args), base_url=url,
                           api_key=key, facts=ModelFacts(tiny="text" if tiny else None))
    monkeypatch.setattr(found, "running_server", lambda project: (None, target))
    monkeypatch.setattr(results, "read_run_facts",
                        lambda t, root: results.RunFacts(None, "sha256:abc"))
    data = tiny_set(tmp_path / "tiny.json", count=20)
    # The tiny set's questions are "Ann has N apples and gets 2 more": answer N + 2.
    text = json.loads(data.read_text())
    for item in text["test"]:
        item["question"] = item["question"].replace("Ann has", "Bob has").replace(
            "apples and gets 2", "pears and gets 3")
        n = int(item["answer"].split(" + ")[0])
        item["answer"] = f"{n} + 3 = {n + 3}\n#### {n + 3}"
    data.write_text(json.dumps(text))
    monkeypatch.setattr(eval_data, "TINY_FILE", data)


def test_eval_prints_one_summary_line(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    with server(right) as (url, _):
        _serve(monkeypatch, tmp_path, url, "glmkit/glm-tiny", tiny=True)
        code, out, err = run_task(monkeypatch, capsys, tmp_path, "eval", "--save-baseline")
    assert code == 0, err
    [line] = out.splitlines()
    assert line.startswith("tiny-arith completions-5shot: flexible 1.000 (95% CI 0.839-1.000)"
                           ", strict 1.000, n=20")
    assert "saved as the baseline" in line and " · run " in line


def test_a_broken_copy_fails_against_the_tiny_model(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    with server(right) as (url, _):
        _serve(monkeypatch, tmp_path, url, "glmkit/glm-tiny", tiny=True)
        assert run_task(monkeypatch, capsys, tmp_path, "eval", "--save-baseline")[0] == 0
    with server(off_by_one) as (url, _):
        _serve(monkeypatch, tmp_path, url, "glm-tiny-perturbed", tiny=False)
        code, out, err = run_task(monkeypatch, capsys, tmp_path, "eval", "--against",
                                  "glmkit/glm-tiny")
    assert "fail at flexible 0.250" in out
    one_line_error(code, err, "flexible 0.250 on 20 questions is 0.750 below baseline "
                   "of glmkit/glm-tiny", exit_code=8)


def test_eval_verbose_shows_every_question(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    with server(right) as (url, _):
        _serve(monkeypatch, tmp_path, url, "glmkit/glm-tiny", tiny=True)
        code, out, _ = run_task(monkeypatch, capsys, tmp_path, "eval", "--verbose",
                                "--limit", "4")
    assert code == 0 and out.count("right") == 4


def test_the_model_asked_for_must_be_one_the_server_serves(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    _serve(monkeypatch, tmp_path, "http://127.0.0.1:9", "glmkit/glm-tiny", tiny=True)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "eval", "--model", "gpt-9")
    one_line_error(code, err, "--model 'gpt-9': glmkit answers to glmkit/glm-tiny")


@pytest.mark.parametrize(("args", "message"), [
    (["--limit", "0"], "--limit must be at least 1, got 0."),
    (["--limit", "-5"], "--limit must be at least 1"),
    (["--limit", "x" * 300], "--limit: expected a number"),
    (["--limit", "99999999999"], "--limit must be at most 1,048,576"),
    (["--protocol", "zero-shot"], "--protocol 'zero-shot': choose completions-5shot or "
                                  "chat-thinking."),
    (["--dataset", "mmlu"], "--dataset 'mmlu': choose gsm8k or tiny-arith."),
    (["--seed", "1.5"], "--seed: expected a number"),
])
def test_bad_eval_options_are_one_line(args: list[str], message: str,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    def no_server(project: str) -> Any:
        raise AssertionError("looked up a server before checking the options")

    from glmkit.run import server as found

    monkeypatch.setattr(found, "running_server", no_server)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "eval", *args)
    one_line_error(code, err, message)
    assert len(err) < 200


def test_up_eval_gates_after_health(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str],
                                    tmp_path: Path) -> None:
    from types import SimpleNamespace

    import tasks
    from glmkit.cli import views
    from glmkit.run import deploy

    started: list[str] = []
    monkeypatch.setattr(tasks, "_deployment", lambda *a, **k: SimpleNamespace())
    monkeypatch.setattr(deploy, "up", lambda *a, **k: started.append("up") or SimpleNamespace(
        check=lambda: None))
    monkeypatch.setattr(views, "print_up", lambda out, result: out.print("healthy"))
    with server(off_by_one) as (url, _):
        _serve(monkeypatch, tmp_path, url, "glm-tiny-perturbed", tiny=True)
        code, out, err = run_task(monkeypatch, capsys, tmp_path, "up", "--eval", "8")
    assert started == ["up"]
    lines = out.strip().splitlines()
    assert lines[0] == "healthy" and lines[1].startswith("tiny-arith completions-5shot: ")
    assert "(sample of 8)" in lines[1] and code == 0, err  # no reference: no gate failed


@pytest.mark.parametrize(("value", "message"), [
    ("0", "--eval must be at least 1, got 0."), ("many", "--eval: expected a number")])
def test_up_eval_is_checked_before_anything_starts(value: str, message: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    from glmkit.run import deploy

    monkeypatch.setattr(deploy, "up", lambda *a, **k: pytest.fail("started a server"))
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "up", "--eval", value)
    one_line_error(code, err, message)


def test_report_shows_accuracy_and_diffs_two_runs(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    with server(right) as (url, _):
        _serve(monkeypatch, tmp_path, url, "glmkit/glm-tiny", tiny=True)
        assert run_task(monkeypatch, capsys, tmp_path, "eval", "--label", "good")[0] == 0
    with server(off_by_one) as (url, _):
        _serve(monkeypatch, tmp_path, url, "glmkit/glm-tiny", tiny=True)
        assert run_task(monkeypatch, capsys, tmp_path, "eval", "--label", "bad")[0] == 0
    runs = sorted((p.name for p in (tmp_path / "results" / "eval").iterdir()),
                  key=lambda name: not name.endswith("-good"))  # good, then bad
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "report")
    assert code == 0, err  # eval runs alone: no benchmark section, no error
    assert "accuracy (invoke eval)" in out and "1.000" in out and "0.250" in out
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "report", "--runs", runs[0],
                              "--runs", runs[1])
    assert code == 0, err
    assert "15 question(s) answered differently" in out
    assert out.count("wrong") == 15


def test_report_skips_a_broken_eval_run_with_a_note(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    folder = tmp_path / "results" / "eval" / "20260101-000000-x"
    folder.mkdir(parents=True)
    (folder / "eval.json").write_text('{"version": 1, "kind": "eval"}')
    (folder / "summary.json").write_text("[1, 2")
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "report")
    assert "skipped" in out and "20260101-000000-x is refused" in out
    assert "Traceback" not in err
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "report", "--runs",
                            "20260101-000000-x")
    one_line_error(code, err, "20260101-000000-x is refused")


def test_the_api_key_is_sent_and_never_stored(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    key = "sk-eval-secret-42"
    with server(right, key=key) as (url, seen):
        _serve(monkeypatch, tmp_path, url, "glmkit/glm-tiny", tiny=True, key=key,
               args=("--api-key", key))
        code, out, err = run_task(monkeypatch, capsys, tmp_path, "eval", "--limit", "3",
                                  "--save-baseline")
    assert code == 0, err
    assert {auth for _, _, auth in seen} == {f"Bearer {key}"}
    stored = [p.read_text() for p in (tmp_path / "results").rglob("*") if p.is_file()]
    assert stored and not [text for text in stored if key in text]
    assert key not in out + err
