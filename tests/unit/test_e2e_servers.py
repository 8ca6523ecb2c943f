"""The e2e layer's shared servers (tests/e2e/conftest.py), with `invoke` faked: users of
one server run together, the tests that end it last, and every server comes down after
its last user or at the session's end, even when its start failed."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import conftest
from tests.e2e.common import KEYED, TINY


@dataclass
class Item:
    nodeid: str
    fixturenames: tuple[str, ...] = ()
    ends: bool = False
    config: Any = None
    groups: list[str] = field(default_factory=list)  # its xdist_group marks

    @property
    def path(self) -> Path:
        folder, _, name = self.nodeid.split("::")[0].rpartition("/")
        return (conftest.HERE if folder == "e2e" else conftest.HERE.parent / folder) / name

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "ends_server" and self.ends else None

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        assert mark.name == "xdist_group"
        self.groups.append(mark.args[0])


@dataclass
class Config:
    stash: pytest.Stash = field(default_factory=pytest.Stash)


@dataclass
class Session:
    config: Config
    items: list[Item]


def ordered(items: list[Item]) -> list[str]:
    config = Config()
    for item in items:
        item.config = config
    conftest.pytest_collection_modifyitems(config, items)  # type: ignore[arg-type]
    conftest.pytest_collection_finish(Session(config, items))  # type: ignore[arg-type]
    return [item.nodeid for item in items]


def test_users_of_one_server_run_together_and_its_ending_tests_last() -> None:
    items = [Item("e2e/test_agents.py::a", ("keyed_server",)),
             Item("e2e/test_cpu.py::crash", ("tiny_server",), ends=True),
             Item("e2e/test_cpu.py::chat", ("tiny_server",)),
             Item("e2e/test_faults.py::kill", ("keyed_server",), ends=True),
             Item("e2e/test_faults.py::check", ("keyed_server",)),
             Item("e2e/test_flags.py::flags"),
             # A fixture of the same name outside tests/e2e is not the shared server.
             Item("unit/test_x.py::x", ("keyed_server",))]
    assert ordered(items) == ["e2e/test_agents.py::a", "e2e/test_faults.py::check",
                              "e2e/test_faults.py::kill", "e2e/test_cpu.py::chat",
                              "e2e/test_cpu.py::crash", "e2e/test_flags.py::flags",
                              "unit/test_x.py::x"]
    assert items[0].config.stash[conftest.LAST_USERS] == {
        "keyed_server": "e2e/test_faults.py::kill", "tiny_server": "e2e/test_cpu.py::crash"}
    # A module that ends the server goes after the group's other modules.
    items = [Item("e2e/test_faults.py::kill", ("keyed_server",), ends=True),
             Item("e2e/test_cpu.py::chat", ("tiny_server",)),
             Item("e2e/test_agents.py::a", ("keyed_server",))]
    assert ordered(items) == ["e2e/test_agents.py::a", "e2e/test_faults.py::kill",
                              "e2e/test_cpu.py::chat"]


def test_each_server_s_tests_are_one_xdist_group_and_other_modules_their_own() -> None:
    """pytest-xdist keeps a group on one worker: a shared server's modules must be one
    group (else two workers start it, each on the same port), a module with its own
    module-scoped server one group, and tests outside e2e none (spread over workers)."""
    items = [Item("e2e/test_agents.py::a", ("keyed_server",)),
             Item("e2e/test_agents.py::no_server"),
             Item("e2e/test_cpu.py::chat", ("tiny_server",)),
             Item("e2e/test_faults.py::check", ("keyed_server",)),
             Item("e2e/test_pd.py::one"), Item("e2e/test_pd.py::two"),
             Item("unit/test_x.py::x", ("keyed_server",))]
    ordered(items)
    groups = {item.nodeid: item.groups for item in items}
    assert groups == {"e2e/test_agents.py::a": ["e2e/test_agents.py"],
                      "e2e/test_agents.py::no_server": ["e2e/test_agents.py"],
                      "e2e/test_faults.py::check": ["e2e/test_agents.py"],
                      "e2e/test_cpu.py::chat": ["e2e/test_cpu.py"],
                      "e2e/test_pd.py::one": ["e2e/test_pd.py"],
                      "e2e/test_pd.py::two": ["e2e/test_pd.py"],
                      "unit/test_x.py::x": []}


def fake_invoke(calls: list[tuple[str, ...]], fail_up: set[str] | None = None,
                times_out: tuple[Callable[[tuple[str, ...]], bool], int] | None = None
                ) -> Any:
    """`invoke` as the fixtures call it: recorded, `up` failing for the projects in
    `fail_up`, and a call that `times_out[0]` picks raising the timeout after that many s."""
    def invoke(*args: str, **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(args[:3])
        if times_out is not None and times_out[0](args):
            raise subprocess.TimeoutExpired(list(args), times_out[1])
        failed = args[0] == "up" and args[2] in (fail_up or set())
        return subprocess.CompletedProcess(list(args), 1 if failed else 0, "started", "")
    return invoke


def test_a_server_starts_once_and_comes_down_after_its_last_user(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(conftest, "invoke", fake_invoke(calls))
    items = [Item("e2e/test_a.py::one", ("tiny_server",)),
             Item("e2e/test_a.py::two", ("tiny_server",)), Item("e2e/test_b.py::other")]
    ordered(items)
    servers = conftest.Servers()
    items[0].config.stash[conftest.SERVERS] = servers
    assert servers.get(TINY) is servers.get(TINY)
    assert calls == [("up", "--project", TINY.project)]

    def teardown(item: Item, nextitem: Item | None) -> None:
        hook = conftest.pytest_runtest_teardown(item, nextitem)  # type: ignore[arg-type]
        next(hook)
        with pytest.raises(StopIteration):
            next(hook)

    teardown(items[0], items[1])
    assert calls == [("up", "--project", TINY.project)]  # a later test still needs it
    teardown(items[1], items[2])
    assert calls[-1] == ("down", "--project", TINY.project) and not servers.up
    servers.down_all()  # the session's end: once more, harmless ("nothing was running")
    assert calls[-1] == ("down", "--project", TINY.project) and servers.started == []


def test_a_failed_start_is_brought_down_and_not_tried_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(conftest, "invoke", fake_invoke(calls, fail_up={KEYED.project}))
    servers = conftest.Servers()
    servers.get(TINY)
    with pytest.raises(pytest.fail.Exception, match="exited 1"):
        servers.get(KEYED)
    assert calls[-1] == ("down", "--project", KEYED.project)
    with pytest.raises(pytest.fail.Exception, match="did not start"):
        servers.get(KEYED)
    assert [c[0] for c in calls].count("up") == 2
    calls.clear()
    servers.down_all()  # whatever an interrupted session left, newest first
    assert calls == [("down", "--project", KEYED.project), ("down", "--project", TINY.project)]


def test_sigterm_unwinds_like_ctrl_c() -> None:
    with pytest.raises(KeyboardInterrupt):
        conftest._sigterm(15, None)


def test_a_down_that_times_out_leaves_no_other_server_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(conftest, "invoke", fake_invoke(calls, times_out=(
        lambda args: args[:3] == ("down", "--project", KEYED.project), 120)))
    servers = conftest.Servers()
    servers.get(TINY)
    servers.get(KEYED)
    with pytest.raises(subprocess.TimeoutExpired):
        servers.down_all()  # KEYED, newest, first: its timeout used to end the loop there
    assert calls[-1] == ("down", "--project", TINY.project) and servers.started == []


def test_a_start_that_times_out_is_brought_down_and_not_waited_for_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(conftest, "invoke", fake_invoke(
        calls, times_out=(lambda args: args[0] == "up", 900)))
    servers = conftest.Servers()
    with pytest.raises(pytest.fail.Exception, match="did not end in 900 s"):
        servers.get(TINY)
    assert calls[-1] == ("down", "--project", TINY.project)
    with pytest.raises(pytest.fail.Exception, match="did not start"):
        servers.get(TINY)  # every later user waited 15 minutes more before
    assert [c[0] for c in calls].count("up") == 1


def test_a_module_with_two_shared_servers_is_refused() -> None:
    items = [Item("e2e/test_a.py::one", ("tiny_server",)),
             Item("e2e/test_a.py::two", ("keyed_server",))]
    with pytest.raises(pytest.UsageError, match="keyed_server and tiny_server"):
        ordered(items)


def _how(arg: Any, bound: dict[str, Any], where: str, depth: int = 0
         ) -> tuple[str, str] | None:
    """("project" or "port", NAME) for `project("NAME")` / `port("NAME")`, through the
    names bound to it and `str(...)`; ("fixed", TEXT) for text or a number written out;
    None for a parameter or a Shared's .project/.port (named where those are made)."""
    import ast

    func = getattr(getattr(arg, "func", None), "id", "")
    if isinstance(arg, ast.Name) and arg.id in bound and depth < 5:
        return _how(bound[arg.id], bound, where, depth + 1)
    if isinstance(arg, ast.Call) and func == "str":
        return _how(arg.args[0], bound, where, depth + 1)
    if isinstance(arg, ast.Call) and func in ("project", "port"):
        name = arg.args[0]
        assert isinstance(name, ast.Constant), ast.unparse(arg)
        return func, str(name.value)
    if isinstance(arg, ast.Constant | ast.JoinedStr):
        return "fixed", f"{where}: {ast.unparse(arg)}"
    return None


def _e2e_names() -> list[tuple[str, str]]:
    """How every project name and port in tests/e2e is written: `Shared(P, PORT, ...)`,
    `serving(P, ...)`, and what follows "--project", "--off-project" or "--port" in a call,
    a tuple or a list (see _how)."""
    import ast

    found: list[tuple[str, str]] = []
    for path in sorted(conftest.HERE.glob("*.py")):
        tree = ast.parse(path.read_text())
        bound: dict[str, Any] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        bound[target.id] = node.value
                    elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        bound |= {t.id: v for t, v in zip(target.elts, node.value.elts,
                                                          strict=True)
                                  if isinstance(t, ast.Name)}
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call | ast.Tuple
                                                             | ast.List)):
            args = call.args if isinstance(call, ast.Call) else call.elts
            func = getattr(getattr(call, "func", None), "id", "")
            picked = args[:2] if func == "Shared" else args[:1] if func == "serving" else []
            picked += [args[i + 1] for i, a in enumerate(args[:-1]) if isinstance(
                a, ast.Constant) and a.value in ("--project", "--off-project", "--port")]
            found += [h for h in (_how(a, bound, path.name) for a in picked) if h is not None]
    return found


def test_every_e2e_project_and_port_is_this_runs_own() -> None:
    """Two test runs on one engine (two checkouts, two CI jobs) used the same fixed project
    names and ports: each took the other's servers down. Every name is made by
    common.project (glmkit-e2e-RUN-NAME: found after an interrupt by its prefix) and every
    port by common.port (this run's block of free ports)."""
    from tests.e2e import common

    found = _e2e_names()
    assert [text for kind, text in found if kind == "fixed"] == []
    projects = {name for kind, name in found if kind == "project"}
    # The modules' own projects are all seen (a sample, so the scan cannot find nothing).
    assert {"tiny", "key", "pd", "crash", "agents-off", "mn", "port"} <= projects
    assert {"tiny", "key", "pd", "hub", "agents-off", "mn"} <= {
        name for kind, name in found if kind == "port"}
    assert all(common.is_e2e_project(common.project(name)) for name in projects)
    assert not common.is_e2e_project("glmkit") and not common.is_e2e_project("glmkit-e2ex")


def _load_common(monkeypatch: pytest.MonkeyPatch) -> Any:
    """tests/e2e/common.py loaded afresh, as another pytest process loads it."""
    import importlib.util
    import sys

    name = f"e2e_common_{len([m for m in sys.modules if m.startswith('e2e_common_')])}"
    spec = importlib.util.spec_from_file_location(name, conftest.HERE / "common.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def _a_run(monkeypatch: pytest.MonkeyPatch) -> Any:
    """tests/e2e/common.py as a new test run loads it (the environment of a new shell)."""
    monkeypatch.delenv("GLMKIT_E2E_RUN", raising=False)
    return _load_common(monkeypatch)


def test_two_runs_on_one_engine_share_no_project_and_no_port(
        monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _a_run(monkeypatch), _a_run(monkeypatch)
    for shared in ("TINY", "KEYED"):
        mine, theirs = getattr(first, shared), getattr(second, shared)
        assert mine.project != theirs.project
        assert first.is_e2e_project(mine.project)
    ports = [{getattr(run, s).port for s in ("TINY", "KEYED")} for run in (first, second)]
    assert ports[0].isdisjoint(ports[1])


def test_this_run_is_one_run() -> None:
    """In a pytest process (configured by tests/conftest.py): the shared servers' names
    and the modules' own are of the same run, the one its clean-up removes. The run was
    started twice (once importing tests/e2e/common.py, once more after), so the shared
    servers' volumes were another run's, left behind."""
    import os

    from tests.e2e import common

    assert common.TINY.project == common.project("tiny")
    assert common.KEYED.port == common.port("key")
    assert os.environ[common.RUN_ENV].partition(":")[0] in common.TINY.project


def test_a_runs_workers_share_its_projects_and_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the first process sets in pytest_configure, its xdist workers inherit.
    first = _a_run(monkeypatch)
    worker = _load_common(monkeypatch)
    for shared in ("TINY", "KEYED"):
        mine, its = getattr(first, shared), getattr(worker, shared)
        assert (its.project, its.port, its.up_args) == (mine.project, mine.port, mine.up_args)


def test_the_xdist_controller_brings_down_what_this_run_started_and_nothing_else(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Ctrl-C, SIGTERM, -x or a crashed worker: pytest-xdist kills its workers before their
    `invoke down`. The controller downs what they started, never another run's projects;
    then it removes the compose files and volumes of this run's projects, and no others."""
    import tests.conftest as root
    from tests.e2e import common

    calls: list[tuple[str, ...]] = []
    removed: list[str] = []
    mine, other = common.project("tiny"), "glmkit-e2e-0ther-tiny"
    volumes = "".join(f"{p}_vllm-cache-cpu {p}\n" for p in (mine, other, "glmkit"))

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        if argv[:3] == ["docker", "volume", "ls"]:
            return subprocess.CompletedProcess(argv, 0, volumes, "")
        if argv[:3] == ["docker", "volume", "rm"]:
            removed.extend(argv[3:])
        else:
            calls.append(tuple(argv[3:6]))
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(common, "running_e2e_projects", lambda: [
        "glmkit-e2e", "glmkit-e2e-mn-worker1", "glmkit-e2e-other-checkout"])
    monkeypatch.setattr(common.subprocess, "run", run)
    monkeypatch.setattr(common, "ROOT", tmp_path)
    compose = tmp_path / "compose"
    compose.mkdir()
    files = [compose / f"{p}.yaml" for p in (mine, other, "glmkit")]

    @dataclass
    class Options:
        numprocesses: int | None = 2

    @dataclass
    class RootConfig:
        option: Options

    @dataclass
    class RootSession:
        config: RootConfig
        items: list[Item] = field(default_factory=list)

    def session_with(started: list[str], numprocesses: int | None = 2) -> RootSession:
        folder = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        folder.mkdir()
        for file in files:
            file.touch()
        monkeypatch.setenv(root.STARTED_DIR, str(folder))
        for project in started:  # as the workers' `invoke up --project P` note it
            common.invoke("up", "--project", project)
        calls.clear()
        removed.clear()
        return RootSession(RootConfig(Options(numprocesses)))

    controller = session_with(["glmkit-e2e", "glmkit-e2e-mn", "glmkit-e2e-pd"])
    root.pytest_sessionfinish(controller, pytest.ExitCode.INTERRUPTED)  # type: ignore[arg-type]
    # glmkit-e2e-pd is not up any more; glmkit-e2e-other-checkout is never named.
    assert calls == [("down", "--project", "glmkit-e2e"),
                     ("down", "--project", "glmkit-e2e-mn")]
    assert removed == [f"{mine}_vllm-cache-cpu"]  # not another run's, not the user's
    assert [f.exists() for f in files] == [False, True, True]
    assert not Path(controller_folder := str(tmp_path / "run0")).exists(), controller_folder
    root.pytest_sessionfinish(session_with([]), 0)  # type: ignore[arg-type]
    assert calls == [] and removed == []  # a unit-only run asks nothing of Docker
    assert all(f.exists() for f in files)
    root.pytest_sessionfinish(session_with(["glmkit-e2e"], None), 2)  # type: ignore[arg-type]
    assert calls == [] and removed == []  # one process: tests/e2e/conftest.py's fixture
    one = session_with([], None)
    one.items = [Item("e2e/test_x.py::t")]
    root.pytest_sessionfinish(one, 0)  # type: ignore[arg-type]
    assert calls == [] and removed == [f"{mine}_vllm-cache-cpu"]
