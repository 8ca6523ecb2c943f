"""What the e2e modules share: running `invoke` as a user does, from the checkout, on a
machine that looks the same to glmkit whatever GPUs it has."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Tests serve on the CPU even on a GPU host, and their servers never come back by
# themselves after a crash or a reboot (`up` defaults to --restart unless-stopped).
TEST_ENV = {"GLMKIT_HARDWARE": str(ROOT / "tests" / "cpu-host.json"), "GLMKIT_RESTART": "no",
            "VLLM_API_KEY": ""}


def invoke(*args: str, timeout: float = 900, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """`python -m invoke ARGS` with the user's environment, less any API key in it."""
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                          capture_output=True, check=False, timeout=timeout,
                          env={**os.environ, **TEST_ENV, **(env or {})})


@contextmanager
def serving(project: str, *up_args: str, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.CompletedProcess[str]]:
    """`invoke up` for a test module; `invoke down` afterwards even when the start failed,
    so a failed start leaves no container behind."""
    try:
        done = invoke("up", "--project", project, *up_args, env=env)
        print(f"{done.stdout}\n{done.stderr}")
        assert done.returncode == 0, done.stdout + done.stderr
        yield done
    finally:
        invoke("down", "--project", project, timeout=120, env=env)
