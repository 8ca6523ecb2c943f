"""The one way glmkit writes files, and the one way it reads files it did not write.

Writing: a temporary file beside the target, then moved in. A reader never sees half a
file, and a check that fails (a compose file Docker rejects) leaves the earlier file in
place.

Reading (`read_bounded`, `read_json`): a file from the HF cache, a results folder, a data
set, GLMKIT_HARDWARE or a synced recipe is data someone else wrote. It is read only if it
is a regular file (a FIFO would block, /dev/zero would never end) of at most a given size,
opened non-blocking and without following a last-moment link, and a symbolic link is
followed only where it stays inside the folder the file belongs to.
"""

from __future__ import annotations

import json
import os
import stat
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


class Unreadable(ValueError):
    """A file glmkit will not read; the message is one line saying why."""


def read_bounded(path: Path, max_bytes: int, *, links_within: Path | None = None) -> bytes:
    """The bytes of `path` if it is a regular file of at most `max_bytes`, checked before
    reading and again while reading. A symbolic link is refused, unless `links_within` is
    given and the link resolves inside it (the HF cache's snapshots link to its blobs)."""
    if links_within is not None:
        try:
            target = path.resolve(strict=True)
            root = links_within.resolve()
        except FileNotFoundError:
            raise Unreadable("cannot read it: No such file or directory") from None
        except (OSError, RuntimeError) as err:  # a link loop, a folder we may not read
            raise Unreadable(f"cannot resolve it ({getattr(err, 'strerror', None) or err})") \
                from None
        if root not in target.parents:
            raise Unreadable(f"a symbolic link out of {root}")
        path = target
    try:
        info = path.lstat()
    except OSError as err:
        raise Unreadable(f"cannot read it: {err.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise Unreadable("a symbolic link; read as plain files only")
    if not stat.S_ISREG(info.st_mode):
        raise Unreadable("not a regular file")
    if info.st_size > max_bytes:
        raise Unreadable(f"{info.st_size} bytes, over the {max_bytes}-byte limit")
    # O_NOFOLLOW: a file swapped for a link after lstat is still not followed;
    # O_NONBLOCK: a FIFO swapped in cannot block the open.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise Unreadable(f"cannot read it: {err.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise Unreadable("not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise Unreadable(f"over the {max_bytes}-byte limit")
    return data


def read_json(path: Path, max_bytes: int, *, links_within: Path | None = None) -> Any:
    """The JSON document in `path`, read by `read_bounded`; text that is not UTF-8 or not
    JSON, nesting Python cannot parse and digits past int's limit are `Unreadable`."""
    data = read_bounded(path, max_bytes, links_within=links_within)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise Unreadable(f"not UTF-8 text (byte {err.start})") from None
    except RecursionError:
        raise Unreadable("nested too deep") from None
    except ValueError as err:  # JSONDecodeError; a 5000-digit number
        raise Unreadable(f"not JSON glmkit can read ({str(err)[:120]})") from None
