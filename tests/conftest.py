from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

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

STARTED_DIR = "GLMKIT_E2E_STARTED"  # tests/e2e/common.invoke writes there

def xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config,
                                                                               "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and "tests.e2e.common" not in sys.modules:
        # This run's own e2e project names and ports (not those of a pytest that started
        # this one): tests/e2e/common.py starts a run when first imported, here, before
        # any test module; pytest-xdist's workers inherit it.
        os.environ.pop("GLMKIT_E2E_RUN", None)
        import tests.e2e.common  # noqa: F401
    if xdist_controller(config):
        # A CI runner's timeout ends pytest with SIGTERM: unwind like Ctrl-C, so the
        # clean-up below runs (the workers have tests/e2e/conftest.py's own).
        from tests.e2e.conftest import _sigterm

        signal.signal(signal.SIGTERM, _sigterm)
        # Where the workers, started after this, note each project they start: the
        # clean-up downs those and nothing else on the engine (another checkout's suite,
        # a user's own project).
        os.environ[STARTED_DIR] = tempfile.mkdtemp(prefix="glmkit-e2e-started-")


@pytest.hookimpl(trylast=True)  # after xdist has ended the workers
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On Ctrl-C, SIGTERM or -x, pytest-xdist gives its workers about 15 s before it kills
    them, too short for their servers' `invoke down`, and a crashed worker downs nothing:
    whatever this run started and is still up is brought down here. Then, in the run's
    first process, the compose files and compile-cache volumes of this run's projects
    are removed (each project has its own, and no later run uses its names)."""
    if hasattr(session.config, "workerinput"):
        return
    from tests.e2e import common

    folder = os.environ.get(STARTED_DIR)
    if xdist_controller(session.config):
        if not folder:
            return
        started = {p.name for p in Path(folder).iterdir()}
        try:
            if started:  # else no e2e test ran: not even `docker ps`
                _down_left(started, common)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        ran_e2e = bool(started)
    else:  # one process: tests/e2e/conftest.py's session fixture brought its servers down
        here = Path(common.__file__).resolve().parent
        ran_e2e = any(here in Path(item.path).resolve().parents for item in session.items)
    if ran_e2e:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            common.remove_run_leftovers()


def _down_left(started: set[str], common: ModuleType) -> None:
    try:
        running = common.running_e2e_projects()
    except (OSError, subprocess.SubprocessError):
        return  # no engine to ask
    for name in sorted(started):
        # A cluster's nodes are projects of their own, NAME-NODE; `down NAME` ends them all,
        # and nothing that is not NAME's.
        if any(project == name or project.startswith(f"{name}-") for project in running):
            try:
                common.invoke("down", "--project", name, timeout=120)
            except subprocess.SubprocessError:
                continue  # the others still
