"""One error hierarchy for everything a user can cause or fix.

Tasks catch `GlmkitError` in one place and turn it into a one-line message and an exit
code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class GlmkitError(Exception):
    """A failure the user can act on. The message says what happened and what to do."""

    exit_code = 1


class UsageError(GlmkitError):
    """Bad input: unknown model or vendor, out-of-range value, conflicting options."""

    exit_code = 2


class EnvironmentProblem(GlmkitError):
    """The host lacks something: Docker, Compose, a device, a free port, a token."""

    exit_code = 3


class CommandFailed(GlmkitError):
    """An external command (docker, compose) exited non-zero."""

    exit_code = 4

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str,
                 hint: str = "") -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip().splitlines()
        last = detail[-1] if detail else "(no output)"
        message = f"`{' '.join(argv[:3])} ...` failed with exit code {returncode}: {last}"
        super().__init__(f"{message}\n{hint}" if hint else message)


class ServerFailed(GlmkitError):
    """The vLLM server did not become healthy, or died; carries the container's log tail."""

    exit_code = 5

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(message)


class BenchFailed(GlmkitError):
    """A benchmark run did not finish."""

    exit_code = 6


class Interrupted(GlmkitError):
    """Stopped by Ctrl-C; what finished is kept."""

    exit_code = 130


class CheckFailed(GlmkitError):
    """The server answered, but tool calls or reasoning came back wrong."""

    exit_code = 7
