"""The CLI as its own process, as a user starts it: `invoke --list` stays instant (the
whole interpreter's start-up), and every task finds the project from invoke.yaml and the
environment against the real engine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The same machine to glmkit on every host: CPU only, whatever GPUs this one has.
    full_env = {**os.environ, "GLMKIT_HARDWARE": str(ROOT / "tests" / "cpu-host.json"),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                          capture_output=True, check=False, env=full_env, timeout=120)


# --- from tests/unit/test_cli.py ----------------------------------------------------------

def test_list_is_instant_and_shows_help() -> None:
    started = time.monotonic()
    done = invoke("--list")
    assert done.returncode == 0
    for name in ("up", "down", "render", "bench", "build", "pull", "login", "status", "logs"):
        assert f"  {name} " in done.stdout
    assert time.monotonic() - started < 10  # generous: start-up of a whole interpreter


# --- from tests/unit/test_deploy.py -------------------------------------------------------

@pytest.mark.usefixtures("compose_cli")
def test_every_task_reads_the_project_from_config_and_environment(tmp_path: Path) -> None:
    # A project that exists nowhere: each task must look for it, not for "glmkit".
    env = {"GLMKIT_PROJECT": "from-env-7b3"}
    for task in (["status", "--json"], ["down"], ["bench", "--batch", "1"]):
        done = invoke(*task, env=env)
        text = done.stdout + done.stderr
        assert "Traceback" not in text
        if task[0] == "down":
            assert "from-env-7b3: nothing was running" in done.stdout
        if task[0] == "bench":
            assert "'from-env-7b3'" in done.stderr
    config = tmp_path / "invoke.yaml"
    config.write_text("glmkit:\n  project: from-yaml-7b3\n")
    done = invoke("-f", str(config), "down")
    assert "from-yaml-7b3: nothing was running" in done.stdout, done.stderr
