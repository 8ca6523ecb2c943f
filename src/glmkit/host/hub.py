"""Weights from the Hugging Face Hub into the one host cache every container mounts.

huggingface_hub's `snapshot_download` does the work (resume, parallel files, the cache
layout vLLM reads); this module picks the files vLLM needs, checks disk space first,
turns the Hub's errors into what to do next, and records a completed download so
servers started afterwards run with HF_HUB_OFFLINE=1 and never touch the network.
"""

from __future__ import annotations

import errno
import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmkit.errors import EnvironmentProblem, GlmkitError, UsageError
from glmkit.files import Unreadable, atomic_write, read_json
from glmkit.knowledge.hf_config import MAX_CONFIG_BYTES

# What vLLM reads: weights, configs, tokenizer, chat template. Not the original
# PyTorch .bin shards, GGUF copies or images in the model card.
ALLOW_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.json", "*.jinja",
                  "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.py"]
IGNORE_PATTERNS = ["original/*", "*.bin", "*.pth", "*.gguf", "*.pt"]
MARKER_DIR = "glmkit-complete"


@dataclass(frozen=True)
class Download:
    model_id: str
    revision: str
    path: Path
    files: int
    size_gb: float
    seconds: float

    def __str__(self) -> str:
        return (f"{self.model_id}@{self.revision[:12]}: {self.files} files, "
                f"{self.size_gb:.1f} GB in {self.seconds:.0f} s → {self.path}\n"
                "servers for it now start with HF_HUB_OFFLINE=1")


def _marker(hf_cache: Path, model_id: str) -> Path:
    return hf_cache / MARKER_DIR / f"{model_id.replace('/', '--')}.json"


def is_complete(hf_cache: Path, model_id: str) -> bool:
    """True after a finished `invoke download` whose snapshot is still in the cache."""
    marker = _marker(hf_cache, model_id)
    try:
        record = read_json(marker, 64 * 1024)
        snapshot = Path(record["path"]).resolve()
        # The snapshot the marker names is this model's, in this cache: a planted marker
        # must not turn some other folder into "complete, mount read-only and offline".
        home = (hf_cache / "hub" / f"models--{model_id.replace('/', '--')}").resolve()
        return home in snapshot.parents and snapshot.is_dir()
    except (Unreadable, OSError, RuntimeError, KeyError, TypeError):
        return False


def hf_token(env: Mapping[str, str]) -> str | None:
    """HF_TOKEN, else the token `invoke login` (or `hf auth login`) stored."""
    if env.get("HF_TOKEN"):
        return env["HF_TOKEN"]
    from huggingface_hub import get_token  # imported late: keeps `invoke --list` fast

    return get_token()


def explain_hub_error(err: Exception, model_id: str | None, token: str | None) -> GlmkitError:
    """The one translation of the Hub client's errors into what to do next."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"https://huggingface.co/{model_id}"
    if isinstance(err, GatedRepoError):
        return EnvironmentProblem(
            f"{model_id} is gated: accept its terms at {page} with your account, then "
            + ("check the token has read access." if token else "run `invoke login`."))
    if isinstance(err, RepositoryNotFoundError):
        return UsageError(f"{model_id} was not found on the Hub (or it is private"
                          + (" and this token cannot read it" if token else
                             " and no token is set: `invoke login`") + "). Check the id.")
    if isinstance(err, RevisionNotFoundError):
        return UsageError(f"{model_id} has no such revision.")
    if isinstance(err, HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status == 401:
            return EnvironmentProblem("The Hub rejected the token (401): create a new read "
                                      "token and run `invoke login`.")
        return EnvironmentProblem(f"The Hub answered {status}: {err}".splitlines()[0])
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return EnvironmentProblem("The disk filled up during the download. Free space or set "
                                  "HF_HOME to a larger disk, then run `invoke download` again: "
                                  "it resumes.")
    if err.__class__.__name__ in ("ConnectError", "ConnectTimeout", "LocalEntryNotFoundError"):
        name = err.__class__.__name__
        return EnvironmentProblem(f"The Hugging Face Hub is not reachable ({name}). Check the "
                                  "network or proxy (HTTPS_PROXY), or HF_ENDPOINT.")
    detail = f"{err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if model_id is None:
        return EnvironmentProblem(f"The Hugging Face Hub request failed ({detail}).")
    return EnvironmentProblem(f"Download of {model_id} failed ({detail}). Run `invoke "
                              "download` again: finished files are kept and it resumes.")


def remote_size_gb(model_id: str, token: str | None, endpoint: str | None = None) -> float:
    """Bytes of the files `download` would fetch, from the Hub's file listing."""
    from fnmatch import fnmatch

    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    try:
        entries = list(api.list_repo_tree(model_id, recursive=True))
    except Exception as err:  # the Hub client's HTTP and network errors: explained below
        raise explain_hub_error(err, model_id, token) from None
    total = 0
    for entry in entries:
        path, size = getattr(entry, "path", ""), getattr(entry, "size", None)
        if size is None:
            continue
        if any(fnmatch(path, p) for p in IGNORE_PATTERNS):
            continue
        if any(fnmatch(path, p) for p in ALLOW_PATTERNS):
            total += size
    return total / 1e9


def download(model_id: str, hf_cache: Path, token: str | None, *,
             endpoint: str | None = None, revision: str | None = None,
             check_space: bool = True, max_workers: int = 8) -> Download:
    from huggingface_hub import snapshot_download

    hub_dir = hf_cache / "hub"
    hub_dir.mkdir(parents=True, exist_ok=True)
    if check_space:
        needed = remote_size_gb(model_id, token, endpoint)
        free = shutil.disk_usage(hub_dir).free / 1e9
        if needed > free:
            raise EnvironmentProblem(f"{model_id} needs {needed:.1f} GB, {hub_dir} has "
                                     f"{free:.1f} GB free. Free space or set HF_HOME / "
                                     "--hf-cache to a larger disk.")
    started = time.monotonic()
    try:
        path = Path(snapshot_download(
            model_id, cache_dir=hub_dir, token=token, endpoint=endpoint, revision=revision,
            allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS,
            max_workers=max_workers))
    except Exception as err:  # the Hub client's HTTP and network errors: explained below
        raise explain_hub_error(err, model_id, token) from None
    files = [p for p in path.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files) / 1e9
    record: dict[str, Any] = {"model": model_id, "revision": path.name, "path": str(path),
                              "files": len(files), "size_gb": size, "time": time.time()}
    marker = _marker(hf_cache, model_id)
    atomic_write(marker, json.dumps(record, indent=2) + "\n")
    return Download(model_id, path.name, path, len(files), size, time.monotonic() - started)


def offline_env(hf_cache: Path, model_id: str, env: Mapping[str, str]) -> dict[str, str]:
    """HF_HUB_OFFLINE=1 for containers once the weights are complete in the cache."""
    if env.get("HF_HUB_OFFLINE") or not is_complete(hf_cache, model_id):
        return {}
    return {"HF_HUB_OFFLINE": "1"}


def check_access(model_id: str, token: str | None, timeout_s: float = 5.0) -> None:
    """Refuse a gated or missing repo before anything starts, when the Hub answers in time
    (offline, the server's own start reports what is missing from the cache)."""
    import threading

    from huggingface_hub import auth_check
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    outcome: dict[str, Exception] = {}

    def probe() -> None:
        try:
            auth_check(model_id, token=token)
        except Exception as err:  # judged below; network trouble is not the user's input
            outcome["error"] = err

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    error = outcome.get("error")
    if isinstance(error, GatedRepoError | RepositoryNotFoundError):
        raise explain_hub_error(error, model_id, token)


def fetch_config(model_id: str, hf_cache: Path, token: str | None, env: Mapping[str, str],
                 endpoint: str | None = None) -> dict[str, Any] | None:
    """The model's config.json alone, fetched into the HF cache; None when offline.

    A 3-second probe first: unreachable, the Hub client would retry for ~20 s before
    giving up, and the built-in facts serve just as well."""
    import requests
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return None
    base = (endpoint or env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    try:
        requests.head(f"{base}/api/models/{model_id}", timeout=3)
    except requests.RequestException:
        return None
    try:
        path = hf_hub_download(model_id, "config.json", cache_dir=hf_cache / "hub", token=token,
                               endpoint=base, etag_timeout=5)
        data = read_json(Path(path), MAX_CONFIG_BYTES, links_within=hf_cache)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError):  # Unreadable too
        return None
    return data if isinstance(data, dict) else None


def download_model(model: str, revision: str | None, hf_cache_dir: Path,
                   env: Mapping[str, str]) -> Download:
    """`invoke download`: a catalog id or Hub repo into the shared cache."""
    from glmkit.knowledge.catalog import resolve_model

    spec = resolve_model(model, env)
    if spec.local_dir:
        raise UsageError(f"{spec.id} is a local model; nothing to download.")
    return download(spec.id, hf_cache_dir, hf_token(env), revision=revision)
