"""Hugging Face token and API key: found, stored by huggingface_hub, passed by name only.

Values travel to containers only through the environment of the `docker compose`
process; they are never written into a compose file, an image, a log or a result.
They reach glmkit from the environment (HF_TOKEN, VLLM_API_KEY), a file
(`--token-file`, `--api-key-file`), a hidden prompt, or, with a warning, a flag: a
flag's value is in `ps` for every local user and in the shell's history.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO

from glmkit.endpoints import is_loopback
from glmkit.errors import CommandFailed, GlmkitError, UsageError, mask, mask_argv
from glmkit.host.hub import explain_hub_error, hf_token

MAX_SECRET_BYTES = 4096


def check_secret(text: str, where: str) -> str:
    """A token or key as read: surrounding whitespace dropped; empty, several lines, control
    characters or more than 4 KiB refused (it would break an HTTP header, or it is not a
    key at all)."""
    text = text.strip()
    if not text:
        raise UsageError(f"{where} is empty.")
    if len(text.encode()) > MAX_SECRET_BYTES:
        raise UsageError(f"{where} is longer than {MAX_SECRET_BYTES} bytes: not a token.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise UsageError(f"{where} has a line break or control character inside: give the "
                         "token alone.")
    return text


def read_secret_file(path: str, option: str, stdin: IO[str] | None = None
                     ) -> tuple[str, list[str]]:
    """The secret in `path` (`-`: standard input), and a warning when other users can
    read the file."""
    warnings: list[str] = []
    shown = repr(path[:80])  # a pasted wall of text is not echoed whole
    if path == "-":
        raw = (stdin or sys.stdin).read(MAX_SECRET_BYTES + 1).encode()
    else:
        try:
            # Opened without following the read past 4 KiB: /dev/zero ends here too.
            with open(path, "rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as err:
            raise UsageError(f"{option} {shown}: cannot read it ({err.strerror}).") from None
        if stat.S_ISREG(mode) and mode & 0o044:
            warnings.append(f"{option} {shown} can be read by other users (mode "
                            f"{stat.S_IMODE(mode):04o}): `chmod 600 {path}`.")
    if len(raw) > MAX_SECRET_BYTES:
        raise UsageError(f"{option} {shown} is longer than {MAX_SECRET_BYTES} bytes: not a "
                         "token.")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise UsageError(f"{option} {shown} is not UTF-8 text.") from None
    return check_secret(text, f"{option} {shown}"), warnings


def secret_option(value: str | None, path: str | None, option: str,
                  stdin: IO[str] | None = None) -> tuple[str | None, list[str]]:
    """What `--X` / `--X-file` give (None: neither; the caller falls back to the
    environment or a prompt), and warnings to print."""
    if value and path:
        raise UsageError(f"{option} and {option}-file: give one of them.")
    if path:
        return read_secret_file(path, f"{option}-file", stdin)
    if not value:
        return None, []
    return check_secret(value, option), [
        f"{option} on the command line is visible to other local users (`ps`) and kept "
        f"in your shell history; prefer {option}-file FILE or the environment."]




@contextmanager
def masked(secrets: Iterable[str | None]) -> Iterator[None]:
    """A `GlmkitError` leaving the block carries no secret's value: not in its message, a
    command's words or output, or a container's log tail."""
    values = [s for s in secrets if s]
    try:
        yield
    except GlmkitError as err:
        err.args = tuple(mask(a, values) if isinstance(a, str) else a for a in err.args)
        for name in ("stdout", "stderr", "log_tail"):
            if isinstance(getattr(err, name, None), str):
                setattr(err, name, mask(getattr(err, name), values))
        if isinstance(err, CommandFailed):
            err.argv = mask_argv(err.argv, values)
        raise


def login(token: str | None, env: Mapping[str, str], interactive: bool = True) -> str:
    """Validate a token with the Hub and store it where huggingface_hub looks. Returns the user."""
    token = token or env.get("HF_TOKEN")
    if not token and interactive:
        token = getpass.getpass("Hugging Face token (input hidden): ")
    if not token:
        raise UsageError("No token: set HF_TOKEN, pass --token-file FILE, or run "
                         "interactively for a hidden prompt.")
    token = check_secret(token, "The token")
    from huggingface_hub import login as hub_login
    from huggingface_hub import whoami


    with masked([token]):
        try:
            user = whoami(token=token)
        except Exception as err:  # the Hub client's HTTP and network errors: explained
            raise explain_hub_error(err, None, token) from None
    hub_login(token=token, add_to_git_credential=False)
    return str(user.get("name", "unknown"))


def container_secrets(env: Mapping[str, str], host: str, api_key: str | None) -> dict[str, str]:
    """The secret environment for `docker compose up`; refuses an open port without a key."""
    secrets: dict[str, str] = {}
    token = hf_token(env)
    if token:
        secrets["HF_TOKEN"] = token
    key = api_key or env.get("VLLM_API_KEY")
    if key:
        secrets["VLLM_API_KEY"] = key
    if not is_loopback(host) and not key:
        raise UsageError(f"--host {host} exposes the API to the network: set an API key "
                         "(VLLM_API_KEY in the environment, or --api-key-file FILE).")
    return secrets
