"""One error hierarchy for everything a user can cause or fix.

Tasks catch `GlmkitError` in one place and turn it into a one-line message and an exit
code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping

# The flags whose value is a secret (vLLM's --api-key, glmkit's --hf-token and --token),
# the environment entries that hold one, and what a masked secret reads as.
SECRET_FLAGS = ("--api-key", "--hf-token", "--token")
SECRET_ENV = ("HF_TOKEN", "VLLM_API_KEY")
MASK = "***"


def secrets_in(env: Mapping[str, str]) -> list[str]:
    """The secret values an environment holds (HF_TOKEN, VLLM_API_KEY)."""
    return [env[name] for name in SECRET_ENV if env.get(name)]


def mask(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with each secret's value replaced by ***; values under 4 characters are left
    alone (masking every "1" would hide the command, not a secret)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def is_secret_flag(word: str) -> bool:
    """Whether `word` names a secret flag in any spelling vLLM's parser accepts: `_` for
    `-` before the first `.`, and an abbreviation argparse would expand (`--api-ke`)."""
    if not word.startswith("--"):
        return False
    name = "--" + word[2:].split("=", 1)[0].split(".", 1)[0].replace("_", "-")
    return len(name) > 4 and any(flag.startswith(name) for flag in SECRET_FLAGS)


def mask_argv(argv: Iterable[str], secrets: Iterable[str | None] = ()) -> list[str]:
    """Command words fit to show: the value of each secret flag (`--api-key KEY`,
    `--api_key=KEY`, `--api-ke KEY`) and every secret's value anywhere in a word become
    ***."""
    values = list(secrets)
    out: list[str] = []
    previous = ""
    for word in argv:
        flag, eq, _ = word.partition("=")
        if is_secret_flag(previous) and "=" not in previous:
            out.append(MASK)
        elif eq and is_secret_flag(flag):
            out.append(f"{flag}={MASK}")
        else:
            out.append(mask(word, values))
        previous = word
    return out


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
    """An external command (docker, compose) exited non-zero. The message names the whole
    command, as a shell would read it, with secrets masked: the values of the secret flags
    and of HF_TOKEN and VLLM_API_KEY (`secrets`; by default this process's environment)."""

    exit_code = 4

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str,
                 hint: str = "", secrets: Iterable[str] | None = None) -> None:
        values = list(secrets_in(os.environ) if secrets is None else secrets)
        self.argv = mask_argv(argv, values)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip().splitlines()
        last = mask(detail[-1], values) if detail else "(no output)"
        message = f"`{shlex.join(self.argv)}` failed with exit code {returncode}: {last}"
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


class AccuracyFailed(GlmkitError):
    """The server answered, but its GSM8K score is below the reference (`invoke eval`)."""

    exit_code = 8
