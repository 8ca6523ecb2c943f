"""Hugging Face token and API key: found, stored by huggingface_hub, passed by name only.

Values travel to containers only through the environment of the `docker compose`
process; they are never written into a compose file, an image, a log or a result.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping

from glmkit.endpoints import is_loopback
from glmkit.errors import UsageError


def hf_token(env: Mapping[str, str]) -> str | None:
    """HF_TOKEN, else the token `invoke login` (or `hf auth login`) stored."""
    if env.get("HF_TOKEN"):
        return env["HF_TOKEN"]
    from huggingface_hub import get_token  # imported late: keeps `invoke --list` fast

    return get_token()


def login(token: str | None, env: Mapping[str, str], interactive: bool = True) -> str:
    """Validate a token with the Hub and store it where huggingface_hub looks. Returns the user."""
    token = token or env.get("HF_TOKEN")
    if not token and interactive:
        token = getpass.getpass("Hugging Face token (input hidden): ").strip()
    if not token:
        raise UsageError("No token: set HF_TOKEN, pass --token, or run interactively.")
    from huggingface_hub import login as hub_login
    from huggingface_hub import whoami

    from glmkit.hub import explain_hub_error

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
                         "(VLLM_API_KEY in the environment, or --api-key).")
    return secrets
