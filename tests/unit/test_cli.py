"""The tasks as a user runs them: one clear line and a non-zero exit for bad input.

Tasks run in this process through invoke's Program (test_cli_trust.run_task); the CLI as
its own process, start-up time included, is tests/integration/test_cli_process.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_cli_trust import run_task

ROOT = Path(__file__).resolve().parents[2]


def test_list_shows_help(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                         tmp_path: Path) -> None:
    code, out, _ = run_task(monkeypatch, capsys, tmp_path, "--list")
    assert code == 0
    for name in ("up", "down", "render", "bench", "build", "pull", "login", "status", "logs"):
        assert f"  {name} " in out


def _task_names() -> list[str]:
    from invoke import Collection

    import tasks

    return sorted(Collection.from_module(tasks).task_names)


@pytest.mark.parametrize("name", _task_names())
def test_every_tasks_help_prints_help_and_changes_nothing(
        name: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # `invoke bench-data --help` once wrote a data set into a folder named --help: a
    # positional argument took the flag as its value.
    import subprocess

    def no_command(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"`invoke {name} --help` started a command: {args}")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "Popen", no_command)
    code, out, err = run_task(monkeypatch, capsys, tmp_path, name, "--help")
    assert code == 0, err
    assert out.startswith(f"Usage: invoke [--core-opts] {name} "), out
    assert "Options:" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["render", "--vendor", "intel"], "Unknown vendor 'intel'"),
    (["render", "--model", "zai-org/GLM-4.66"], "Did you mean 'zai-org/GLM-4.6'"),
    (["render", "--vendor", "nvidia", "--model", "zai-org/GLM-4.6", "--gpus", "0,1,2,3"],
     "needs about 857 GB"),
    (["render", "--tp", "x"], "tp: expected a whole number"),
    (["render", "--gpu-memory-utilization", "1.2"], "must be in (0, 1]"),
    (["render", "--model", "./no/such/folder"], "not a model folder"),
    (["render", "--port", "80"], "privileged port"),
    (["render", "--max-model-len", "999999"], "context limit"),
    (["render", "--", "--api-key", "sk-secret"], "would write a secret"),
    (["up", "--host", "0.0.0.0"], "exposes the API to the network"),
    (["bench", "--workload", "chatty"], "Unknown workload 'chatty'"),
    (["bench", "--batch", "1,x"], "--batch '1,x'"),
])
def test_bad_input_one_line_no_traceback_no_file(args: list[str], message: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    project = f"cli-{abs(hash(tuple(args))) % 10**8}"
    if "--" in args:
        at = args.index("--")
        args = [*args[:at], "--project", project, *args[at:]]
    else:
        args = [*args, "--project", project]
    code, out, err = run_task(monkeypatch, capsys, tmp_path, *args,
                              env={"VLLM_API_KEY": ""})
    assert code == 2, err
    assert "Traceback" not in err + out
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "compose" / f"{project}.yaml").exists()


def test_docker_unreachable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "status",
                            env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert code == 3
    assert "Docker engine is not reachable" in err
    assert "Traceback" not in err


def test_tasks_stay_thin() -> None:
    """Each task parses, calls one library function and prints: logic lives in src/."""
    import ast

    source = (ROOT / "tasks.py").read_text()
    assert len(source.splitlines()) < 470  # 450 before `invoke eval` and `up --eval` (#34)
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            body = node.end_lineno - node.body[0].lineno + 1  # type: ignore[operator]
            assert body <= 25, f"{node.name} has {body} lines"
    assert "hasattr" not in source


def test_status_shows_a_long_project_name_whole() -> None:
    """A test run's project names carry its run id; the status table folded them over two
    lines in piped output (160 columns), so the name --project takes could not be copied."""
    from rich.console import Console

    from glmkit.cli.views import status_table
    from glmkit.run.engine import ServerStatus

    row = ServerStatus(project="glmkit-e2e-a12a71-tiny", node="head", model="glmkit/glm-tiny",
                       vendor="cpu", url="http://127.0.0.1:28293", state="running",
                       api="not ready", docker_health="starting", restarts=0,
                       image="glmkit/vllm-cpu:0.32.0", digest="sha256:" + "b" * 64)
    console = Console(width=160, record=True)  # what views.console() gives piped output
    console.print(status_table([row]))
    assert "glmkit-e2e-a12a71-tiny" in console.export_text()


def test_status_keeps_names_whole_beside_other_servers() -> None:
    """With the other e2e servers listed beside it (a model served from a folder, long
    digests), the piped table cut 'glmkit-e2e-fbf1bb-tiny' and its model and 'ready' to
    fit 160 columns: the names a user copies stay whole; the image and digest fold."""
    from rich.console import Console

    from glmkit.cli.views import status_table
    from glmkit.run.engine import ServerStatus

    rows = [ServerStatus(project=f"glmkit-e2e-fbf1bb-{name}", node="head", model=model,
                         vendor="cpu", url=f"http://127.0.0.1:2{i}293", state="running",
                         api="ready", docker_health="healthy", restarts=0,
                         image="glmkit/vllm-cpu:0.32.0", digest="sha256:" + "b" * 64)
            for i, (name, model) in enumerate([
                ("tiny", "glmkit/glm-tiny"), ("groups", "glmkit/glm-tiny-vision"),
                ("perturbed", "/tmp/pytest-of-root/pytest-12/test_a_copy0/glm-tiny-perturbed"),
                ("agents-off", "glmkit/glm-tiny")])]
    console = Console(width=160, record=True)
    console.print(status_table(rows))
    text = console.export_text()
    for row in rows:
        assert row.project in text and row.model in text and row.url in text, text
    assert "ready" in text
