"""Where glmkit keeps things on the host. Everything is derived from a passed-in env."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def kit_home(env: Mapping[str, str]) -> Path:
    """Generated models, wheelhouses and logs: $GLMKIT_HOME or ~/.cache/glmkit."""
    return Path(env.get("GLMKIT_HOME") or Path.home() / ".cache" / "glmkit").expanduser()


def existing_ancestor(path: Path) -> Path:
    """`path` or its nearest parent that exists (what a folder about to be made inherits)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def hf_cache(env: Mapping[str, str], override: str | None = None) -> Path:
    """The host's Hugging Face cache, shared by every container and vendor."""
    if override:
        return Path(override).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser()
    return Path.home() / ".cache" / "huggingface"
