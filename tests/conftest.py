from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import FrameType

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


# --- the pytest-xdist controller (this file is the only conftest it loads) -------------------

def xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config,
                                                                               "workerinput")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def pytest_configure(config: pytest.Config) -> None:
    if xdist_controller(config):
        # A CI runner's timeout ends pytest with SIGTERM: unwind like Ctrl-C, so the
        # clean-up below runs (the workers have tests/e2e/conftest.py's own).
        signal.signal(signal.SIGTERM, _interrupt)


@pytest.hookimpl(trylast=True)  # after xdist has ended the workers
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On Ctrl-C or SIGTERM pytest-xdist gives its workers about 15 s before it kills them,
    too short for their servers' `invoke down`: what they left up is brought down here."""
    if not xdist_controller(session.config) or exitstatus != pytest.ExitCode.INTERRUPTED:
        return
    from tests.e2e import common

    for project in common.running_e2e_projects():
        common.invoke("down", "--project", project, timeout=120)
