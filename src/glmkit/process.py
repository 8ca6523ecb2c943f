"""The one way glmkit runs external commands: argument lists, never shell strings."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections import deque
from collections.abc import Callable, Mapping

from glmkit.errors import CommandFailed, EnvironmentProblem, mask_argv, secrets_in


def _secrets(env: Mapping[str, str] | None) -> list[str]:
    """The secrets a command may carry: this process's and the ones given to the command."""
    return secrets_in(os.environ) + secrets_in(env or {})


def display(argv: list[str], env: Mapping[str, str] | None = None) -> str:
    """The command as a shell would read it, secrets masked."""
    return shlex.join(mask_argv(argv, _secrets(env)))


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
        raise EnvironmentProblem(f"`{display(argv, env)}` did not finish in {timeout} s.") \
            from None
    if check and done.returncode != 0:
        raise CommandFailed(argv, done.returncode, done.stdout, done.stderr, hint=hint,
                            secrets=_secrets(env))
    return done


def stream(argv: list[str], *, env: Mapping[str, str] | None = None, check: bool = True,
           hint: str = "") -> int:
    """Run with output going straight to the terminal (logs -f, builds, benches)."""
    try:
        code = subprocess.call(argv, env=dict(env) if env is not None else None)
    except FileNotFoundError:
        raise EnvironmentProblem(f"`{argv[0]}` is not installed or not on PATH.") from None
    if check and code != 0:
        raise CommandFailed(argv, code, "", "", hint=hint, secrets=_secrets(env))
    return code


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    return env


def stream_lines(argv: list[str], on_line: Callable[[str], None],
                 env: Mapping[str, str] | None = None, keep: int = 60) -> tuple[int, list[str]]:
    """Run with stdout+stderr merged, calling `on_line` for every line or progress update
    (`\\r`-separated, as tqdm writes); returns the exit code and the last `keep` lines."""
    tail: deque[str] = deque(maxlen=keep)
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None)
    except FileNotFoundError:
        raise EnvironmentProblem(f"`{argv[0]}` is not installed or not on PATH.") from None
    assert proc.stdout is not None
    buffer = b""
    try:
        while chunk := proc.stdout.read1(4096):  # type: ignore[attr-defined]
            buffer += chunk
            *pieces, buffer = re.split(rb"[\r\n]", buffer)
            for piece in pieces:
                line = piece.decode(errors="replace").rstrip()
                if line:
                    tail.append(line)
                    on_line(line)
    except BaseException:  # Ctrl-C: stop the client now rather than wait for it
        proc.kill()
        proc.wait()
        raise
    code = proc.wait()
    if buffer.strip():
        tail.append(buffer.decode(errors="replace").rstrip())
    return code, list(tail)
