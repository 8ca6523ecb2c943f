"""The results store: one folder per benchmark run, append-only.

    results/<run-id>/meta.json              what ran: model, vendor, image+digest, flags,
                                            workload, batches, git commit, hardware, date
    results/<run-id>/points/batch-0016.json vLLM's own result JSON for one point
    results/<run-id>/failures/batch-…json   a point that did not finish, and why
    results/<run-id>/telemetry/batch-…json  GPU samples taken during the point

A point file is never overwritten; an interrupted sweep keeps its points and
`invoke bench --resume <run-id>` runs only the missing ones.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmkit.errors import UsageError

META = "meta.json"


def write_json_once(path: Path, data: Any) -> None:
    """Atomic create; refuses to replace an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    try:
        os.link(tmp, path)  # fails if `path` exists: results are never overwritten
    except FileExistsError:
        raise UsageError(f"{path} already exists; results are never overwritten.") from None
    finally:
        os.unlink(tmp)


def point_name(batch: int) -> str:
    return f"batch-{batch:04d}.json"


@dataclass(frozen=True)
class Run:
    path: Path
    meta: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def batches(self) -> list[int]:
        return [int(b) for b in self.meta.get("batches", [])]

    def points(self) -> dict[int, dict[str, Any]]:
        found = {}
        for file in sorted((self.path / "points").glob("batch-*.json")):
            found[int(file.stem.split("-")[1])] = json.loads(file.read_text())
        return found

    def failures(self) -> dict[int, dict[str, Any]]:
        found = {}
        for file in sorted((self.path / "failures").glob("batch-*.json")):
            found[int(file.stem.split("-")[1])] = json.loads(file.read_text())
        return found

    def missing(self) -> list[int]:
        done = self.points()
        return [b for b in self.batches if b not in done]

    def save_point(self, batch: int, result: dict[str, Any]) -> Path:
        path = self.path / "points" / point_name(batch)
        write_json_once(path, result)
        return path

    def save_failure(self, batch: int, failure: dict[str, Any]) -> None:
        # A retried point may fail again: keep every failure, numbered.
        base = self.path / "failures" / point_name(batch)
        path, n = base, 1
        while path.exists():
            path = base.with_name(f"{base.stem}.{n}.json")
            n += 1
        write_json_once(path, {"time": time.time(), **failure})

    def save_telemetry(self, batch: int, telemetry: dict[str, Any]) -> None:
        path = self.path / "telemetry" / point_name(batch)
        if not path.exists():
            write_json_once(path, telemetry)

    def label(self) -> str:
        return str(self.meta.get("label") or self.run_id)


def create_run(results_dir: Path, meta: dict[str, Any], name: str) -> Run:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = results_dir / (f"{stamp}-{name}" if n == 0 else f"{stamp}-{name}-{n}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        write_json_once(path / META, meta)
        return Run(path, meta)
    raise UsageError(f"Could not create a new run folder under {results_dir}.")


def open_run(results_dir: Path, ref: str) -> Run:
    """A run by folder path, by id, or by a unique id prefix."""
    candidates = [Path(ref)] if Path(ref).is_dir() else \
        sorted(p for p in results_dir.glob(f"{ref}*") if (p / META).is_file())
    candidates = [p for p in candidates if (p / META).is_file()]
    if not candidates:
        raise UsageError(f"No benchmark run {ref!r} under {results_dir} (`invoke report` lists "
                         "them).")
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates[:5])
        raise UsageError(f"{ref!r} matches several runs ({names}); give more of the id.")
    path = candidates[0]
    return Run(path, json.loads((path / META).read_text()))


def list_runs(results_dir: Path) -> list[Run]:
    return [Run(p.parent, json.loads(p.read_text()))
            for p in sorted(results_dir.glob(f"*/{META}"))]
