"""Servers the e2e modules share (tests/e2e/common.py: TINY, KEYED). The first test that
asks for one by fixture starts it, once a session; it is brought down right after the last
test that needs it (so it holds no memory or port while other modules start theirs), and
whatever is still up when the session ends, by a failure, Ctrl-C or SIGTERM, is brought
down then.

Tests that use a shared server run one after another, and a test that ends or replaces
it (`@pytest.mark.ends_server`) runs after every other test of that server: the modules
of one server are moved together, those with such a test last, and inside a module the
marked tests go last. Order is otherwise the usual one."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from .common import KEYED, TINY, Shared, invoke

HERE = Path(__file__).resolve().parent
SHARED = {"tiny_server": TINY, "keyed_server": KEYED}
LAST_USERS = pytest.StashKey[dict[str, str]]()
SERVERS = pytest.StashKey["Servers"]()


class Servers:
    """The shared servers of one session: each started at most once, a failed start not
    tried again by every later test, every project brought down at the end."""

    def __init__(self) -> None:
        self.up: dict[str, subprocess.CompletedProcess[str]] = {}
        self.failed: dict[str, str] = {}
        self.started: list[Shared] = []

    def get(self, spec: Shared) -> subprocess.CompletedProcess[str]:
        if spec.project in self.failed:
            pytest.fail(f"{spec.project} did not start (see the first test that used it):\n"
                        f"{self.failed[spec.project]}")
        if spec.project not in self.up:
            self.started.append(spec)  # before `up`: an interrupted start is cleaned too
            try:
                done = invoke("up", "--project", spec.project, *spec.up_args, env=spec.env)
            except subprocess.TimeoutExpired as err:
                # A start that hangs is not waited for again (15 minutes) by every user.
                self.failed[spec.project] = f"invoke up did not end in {err.timeout:g} s"
                self.down(spec)
                pytest.fail(f"invoke up for {spec.project}: {self.failed[spec.project]}")
            print(f"{done.stdout}\n{done.stderr}")
            if done.returncode != 0:
                self.failed[spec.project] = done.stdout + done.stderr
                self.down(spec)
                pytest.fail(f"invoke up for {spec.project} exited {done.returncode}:\n"
                            f"{done.stdout}{done.stderr}")
            self.up[spec.project] = done
        return self.up[spec.project]

    def down(self, spec: Shared) -> None:
        self.up.pop(spec.project, None)
        invoke("down", "--project", spec.project, timeout=120, env=spec.env)

    def down_all(self) -> None:
        # Every server is tried: one `down` that times out must not leave the rest up.
        errors: list[BaseException] = []
        while self.started:
            try:
                self.down(self.started.pop())
            except Exception as err:  # raised below, once all were tried
                errors.append(err)
        if errors:
            raise errors[0]


def docker_running() -> bool:
    try:
        subprocess.run(["docker", "info"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _sigterm(signum: int, frame: FrameType | None) -> None:
    # A CI runner's timeout ends pytest with SIGTERM: make it unwind like Ctrl-C, so the
    # session's finalizers (down_all) run.
    raise KeyboardInterrupt


@pytest.fixture(scope="session")
def servers(request: pytest.FixtureRequest) -> Iterator[Servers]:
    if not docker_running():
        pytest.fail("e2e tests need a running Docker engine (scripts/install-docker.sh)")
    registry = Servers()
    request.config.stash[SERVERS] = registry
    previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        yield registry
    finally:
        registry.down_all()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def tiny_server(servers: Servers) -> subprocess.CompletedProcess[str]:
    """The keyless tiny server (TINY); the `invoke up` that started it."""
    return servers.get(TINY)


@pytest.fixture(scope="session")
def keyed_server(servers: Servers) -> subprocess.CompletedProcess[str]:
    """The tiny server with an API key (KEYED); the `invoke up` that started it."""
    return servers.get(KEYED)


def _uses(item: pytest.Item) -> list[str]:
    """The shared servers an e2e test uses (a test elsewhere may have a fixture of the
    same name: tests/unit/test_api_check.py's keyed_server is a fake)."""
    if HERE not in Path(item.path).resolve().parents:
        return []
    return [name for name in SHARED if name in getattr(item, "fixturenames", ())]


@pytest.hookimpl(trylast=True)  # after -k / -m deselection: the items that will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    group_of: dict[str, str] = {}  # module -> the first module of its shared server
    first_module: dict[str, str] = {}  # server -> the first module that uses it
    for module, its in modules.items():
        used = [name for item in its for name in _uses(item)]
        group_of[module] = first_module.setdefault(used[0], module) if used else module
    rank = {module: n for n, module in enumerate(modules)}

    def ending(item: pytest.Item) -> bool:
        return item.get_closest_marker("ends_server") is not None

    def module_key(module: str) -> tuple[int, bool, int]:
        return (rank[group_of[module]], any(ending(i) for i in modules[module]), rank[module])

    items[:] = [item for module in sorted(modules, key=module_key)
                for item in sorted(modules[module], key=ending)]
    config.stash[LAST_USERS] = {name: item.nodeid for item in items for name in _uses(item)}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    registry = item.config.stash.get(SERVERS, None)
    if registry is None:
        return
    for name, nodeid in item.config.stash.get(LAST_USERS, {}).items():
        if nodeid == item.nodeid and SHARED[name].project in registry.up:
            registry.down(SHARED[name])
