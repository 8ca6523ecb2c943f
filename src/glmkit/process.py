"""The one way glmkit runs external commands: argument lists, never shell strings."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping

from glmkit.errors import CommandFailed, EnvironmentProblem


def display(argv: list[str]) -> str:
    return shlex.join(argv)


def run(argv: list[str], *, env: Mapping[str, str] | None = None, check: bool = True,
        hint: str = "", timeout: float | None = None, input: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    """Run and capture; raise `CommandFailed` (command, code, stdout, stderr) on failure."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              env=dict(env) if env is not None else None, timeout=timeout,
                              input=input)
    except FileNotFoundError:
        raise EnvironmentProblem(f"`{argv[0]}` is not installed or not on PATH.") from None
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"`{display(argv[:3])} ...` did not finish in {timeout} s.") \
            from None
    if check and done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stdout, done.stderr, hint=hint)
    return done


def stream(argv: list[str], *, env: Mapping[str, str] | None = None, check: bool = True,
           hint: str = "") -> int:
    """Run with output going straight to the terminal (logs -f, builds, benches)."""
    try:
        code = subprocess.call(argv, env=dict(env) if env is not None else None)
    except FileNotFoundError:
        raise EnvironmentProblem(f"`{argv[0]}` is not installed or not on PATH.") from None
    if check and code != 0:
        raise CommandFailed(argv, code, "", "", hint=hint)
    return code


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    return env
