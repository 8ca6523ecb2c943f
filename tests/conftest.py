from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True,
                          check=False).returncode == 0


@pytest.fixture(scope="session")
def compose_cli() -> None:
    """Compose v2 is required in CI; a developer without it gets a skip."""
    if not compose_available():
        if os.environ.get("CI"):
            pytest.fail("docker compose v2 is required in CI (scripts/install-docker.sh)")
        pytest.skip("docker compose v2 not installed")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A kit home and HF cache of this test's own, with secrets in the environment (the
    trust-boundary tests check they never reach a file)."""
    from tests.unit.helpers import SECRET

    (tmp_path / "hf").mkdir()
    return {"GLMKIT_HOME": str(tmp_path / "kit"), "HF_HOME": str(tmp_path / "hf"),
            "HF_TOKEN": SECRET, "VLLM_API_KEY": SECRET}
