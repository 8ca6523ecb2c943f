"""The one way glmkit writes files: a temporary file beside the target, then moved in.

A reader never sees half a file, and a check that fails (a compose file Docker rejects)
leaves the earlier file in place.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from glmkit.errors import UsageError


@contextmanager
def _staged(path: Path, text: str) -> Iterator[Path]:
    """A temporary file with `text` beside `path`; removed unless the caller moved it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, text: str, *, check: Callable[[Path], None] | None = None,
                 mode: int = 0o644) -> Path:
    """Replace `path` with `text`; `check` sees the staged file first and may raise."""
    with _staged(path, text) as tmp:
        if check is not None:
            check(tmp)
        tmp.chmod(mode)
        tmp.replace(path)
    return path


def write_json_once(path: Path, data: Any) -> Path:
    """Create `path` with `data` as JSON; refuses to replace an existing file."""
    with _staged(path, json.dumps(data, indent=2) + "\n") as tmp:
        try:
            os.link(tmp, path)  # fails if `path` exists: results are never overwritten
        except FileExistsError:
            raise UsageError(f"{path} already exists; results are never overwritten.") \
                from None
    return path
