"""The unit layer runs in this process: no Docker engine, no `docker` or `docker compose`,
no other program. Every way Python starts a program is closed here, so a test that
would reach one fails, naming it, instead of passing only where Docker happens to be.
A test that needs a program belongs in tests/integration; one that needs a program's
answer fakes the function that asks (`glmkit.process.run`, a module's `run`)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest


def _program(args: Any) -> str:
    """The program a command names (its first word), as given."""
    if isinstance(args, (str, bytes, os.PathLike)):
        words = os.fsdecode(args).split()
    else:
        words = [os.fsdecode(w) for w in list(args)[:1]]
    return words[0] if words else ""


def _refuse(what: str, args: Any) -> None:
    program = os.path.basename(_program(args))
    where = ("needs the Docker engine or the compose CLI" if program.startswith("docker")
             else "starts a program")
    pytest.fail(f"unit test {where}: {what}({args!r}). Unit tests run in-process: fake "
                "the call, or move the test to tests/integration.", pytrace=False)


@pytest.fixture(autouse=True)
def no_programs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`subprocess` (run, call, check_output, Popen: all end in `_execute_child`), the
    `os` spawn and exec families and `os.system`. pytest.fail is not an Exception, so
    code under test that catches OSError or Exception cannot swallow the refusal."""

    def execute_child(self: subprocess.Popen[Any], args: Any, executable: Any,
                      *rest: Any) -> None:
        # A program that is not there starts nothing: fail as exec does, so code that
        # handles a missing tool (git, docker) is tested as it runs.
        env = rest[4] if len(rest) > 4 and rest[4] is not None else os.environ
        program = os.fsdecode(executable) if executable else _program(args)
        if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        _refuse("subprocess", args)

    monkeypatch.setattr(subprocess.Popen, "_execute_child", execute_child)
    for name in ("system", "popen", "posix_spawn", "posix_spawnp", "execv", "execve", "execl",
                 "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnv", "spawnve",
                 "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe"):
        if hasattr(os, name):
            def refused(*args: Any, _name: str = name, **_: Any) -> None:
                # The program: spawn*(mode, path, ...), the others (path or command, ...).
                _refuse(f"os.{_name}", args[1] if _name.startswith("spawn") else args[0])

            monkeypatch.setattr(os, name, refused)
    yield


@pytest.fixture(scope="session")
def aiohttp() -> ModuleType:
    """aiohttp, the library of the PD gate and the model group's door (every vLLM image
    and the router image have it); a dev dependency here, required in CI."""
    try:
        import aiohttp
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("aiohttp is needed in CI (pip install -e '.[dev]')")
        pytest.skip("aiohttp not installed (pip install -e '.[dev]')")
    return aiohttp
