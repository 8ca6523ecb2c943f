"""What the e2e modules share: running `invoke` as a user does, from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str, timeout: float = 900, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """`python -m invoke ARGS` with the user's environment, less any API key in it."""
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                          capture_output=True, check=False, timeout=timeout,
                          env={**os.environ, "VLLM_API_KEY": "", **(env or {})})
