"""The tasks as a user runs them: one clear line and a non-zero exit for bad input."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    # The same machine to glmkit on every host: CPU only, whatever GPUs this one has.
    full_env = {**os.environ, "GLMKIT_HARDWARE": str(ROOT / "tests" / "cpu-host.json"),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                          capture_output=True, check=False, env=full_env, timeout=120)


def test_list_is_instant_and_shows_help() -> None:
    started = time.monotonic()
    done = invoke("--list")
    assert done.returncode == 0
    for name in ("up", "down", "render", "bench", "build", "pull", "login", "status", "logs"):
        assert f"  {name} " in done.stdout
    assert time.monotonic() - started < 10  # generous: start-up of a whole interpreter


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
                                                 tmp_path: Path) -> None:
    project = f"cli-{abs(hash(tuple(args))) % 10**8}"
    if "--" in args:
        at = args.index("--")
        args = [*args[:at], "--project", project, *args[at:]]
    else:
        args = [*args, "--project", project]
    done = invoke(*args, env={"VLLM_API_KEY": ""})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (ROOT / "compose" / f"{project}.yaml").exists()


def test_docker_unreachable_is_a_clear_error() -> None:
    done = invoke("status", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert done.returncode == 3
    assert "Docker engine is not reachable" in done.stderr
    assert "Traceback" not in done.stderr


def test_tasks_stay_thin() -> None:
    """Each task parses, calls one library function and prints: logic lives in src/."""
    import ast

    source = (ROOT / "tasks.py").read_text()
    assert len(source.splitlines()) < 350
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            body = node.end_lineno - node.body[0].lineno + 1  # type: ignore[operator]
            assert body <= 25, f"{node.name} has {body} lines"
    assert "hasattr" not in source
