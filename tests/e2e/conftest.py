"""Servers the e2e modules share (tests/e2e/common.py: TINY, KEYED). The first test that
asks for one by fixture starts it, once a session; it is brought down right after the last
test that needs it (so it holds no memory or port while other modules start theirs), and
whatever is still up when the session ends, by a failure, Ctrl-C or SIGTERM, is brought
down then.

Tests that use a shared server run one after another, and a test that ends or replaces
it (`@pytest.mark.ends_server`) runs after every other test of that server: the modules
of one server are moved together, those with such a test last, and inside a module the
marked tests go last. Order is otherwise the usual one.

The suite runs on two pytest-xdist workers (pyproject.toml): every e2e module is put in
an `xdist_group`, one group per shared server (its modules together) and one per other
module (its module-scoped server), so a server's tests stay on one worker, in this order,
while another worker runs another group's."""

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


@pytest.fixture(scope="session", autouse=True)
def grouped_on_workers(request: pytest.FixtureRequest) -> None:
    """On pytest-xdist workers, before any server starts: a server's tests are one group.
    Without it each worker would start the same server on the same port and take it down
    under the other's tests."""
    if not hasattr(request.config, "workerinput"):
        return  # one process: nothing to group
    ungrouped = [item.nodeid for item in request.session.items
                 if _in_e2e(item) and "@" not in item.nodeid]
    if ungrouped:
        pytest.fail(f"e2e tests on pytest-xdist workers need `--dist loadgroup` and a pytest "
                    f"that keeps its groups (<9.2: pytest-xdist#1386); {ungrouped[0]} has "
                    f"none. Run them with -n 0 otherwise.", pytrace=False)


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
    if not _in_e2e(item):
        return []
    return [name for name in SHARED if name in getattr(item, "fixturenames", ())]


def _in_e2e(item: pytest.Item) -> bool:
    return HERE in Path(item.path).resolve().parents


# Before pytest-xdist reads the groups (it appends them to the node ids) and before -k / -m
# deselection: which server is last used is decided after both (pytest_collection_finish).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    group_of: dict[str, str] = {}  # module -> the first module of its shared server
    first_module: dict[str, str] = {}  # server -> the first module that uses it
    for module, its in modules.items():
        used = [name for item in its for name in _uses(item)]
        if len(set(used)) > 1:
            # Its group would hold one server's tests and not the other's other users.
            raise pytest.UsageError(f"{module} uses {' and '.join(sorted(set(used)))}: one "
                                    f"shared server per e2e module")
        group_of[module] = first_module.setdefault(used[0], module) if used else module
    for module, its in modules.items():
        for item in its:
            if _in_e2e(item):
                item.add_marker(pytest.mark.xdist_group(group_of[module]))
    rank = {module: n for n, module in enumerate(modules)}

    def ending(item: pytest.Item) -> bool:
        return item.get_closest_marker("ends_server") is not None

    def module_key(module: str) -> tuple[int, bool, int]:
        return (rank[group_of[module]], any(ending(i) for i in modules[module]), rank[module])

    items[:] = [item for module in sorted(modules, key=module_key)
                for item in sorted(modules[module], key=ending)]


def pytest_collection_finish(session: pytest.Session) -> None:
    # The items that will run here, in order, with their final node ids.
    session.config.stash[LAST_USERS] = {name: item.nodeid for item in session.items
                                        for name in _uses(item)}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    registry = item.config.stash.get(SERVERS, None)
    if registry is None:
        return
    for name, nodeid in item.config.stash.get(LAST_USERS, {}).items():
        if nodeid == item.nodeid and SHARED[name].project in registry.up:
            registry.down(SHARED[name])
