"""The results store: one folder per benchmark run, append-only.

    results/<run-id>/meta.json              what ran: model, vendor, image+digest, flags,
                                            workload, batches, git commit, hardware, date
    results/<run-id>/points/batch-0016.json vLLM's own result JSON for one point
    results/<run-id>/failures/batch-…json   a point that did not finish, and why
    results/<run-id>/telemetry/batch-…json  GPU samples taken during the point
    results/<run-id>/metrics/batch-…json    the server's /metrics sampled during the
                                            point, and their peaks, means and rates

A point file is never overwritten; an interrupted sweep keeps its points and
`invoke bench --resume <run-id>` runs only the missing ones. Files are read as data from
outside: a corrupt or hand-broken one is skipped with a note, never a traceback.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from glmkit import __version__
from glmkit.errors import EnvironmentProblem, UsageError
from glmkit.files import Unreadable, write_json_once
from glmkit.files import read_json as bounded_json
from glmkit.host.hardware import Hardware
from glmkit.measure.workloads import (
    MAX_BATCH,
    MAX_POINTS,
    WORKLOADS,
    Point,
    SweepMode,
    Workload,
    check_goodput,
    check_request_rate,
    sweep_points,
)
from glmkit.process import run
from glmkit.run.image_build import container_image_digest, image_digest
from glmkit.run.server import RunningServer
from glmkit.text import validation_reason
from glmkit.vllm_args import flag_value

META = "meta.json"
# 1: meta.json before it had a version; 2: adds "version" and writes hardware as
# {vendor, description, gpus: [{index, name, memory_mib}], cpu_count}.
META_VERSION = 2
REFERENCE_DIR = Path(__file__).parents[1] / "reference"
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def plain_name(text: str, what: str) -> str:
    """A label or run id: one path component under results/, never `..` or a path."""
    if not PLAIN_NAME.fullmatch(text) or ".." in text:
        raise UsageError(f"{what} {text[:60]!r} must be a plain name: letters, digits, '.', "
                         "'_' and '-', at most 100 characters, starting with a letter or "
                         "digit.")
    return text


def point_name(batch: int) -> str:
    return f"batch-{batch:04d}.json"


@dataclass(frozen=True)
class GpuInfo:
    name: str
    memory_mib: int | None
    index: int | None = None  # written since version 2; older runs lack it

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "memory_mib": self.memory_mib}


@dataclass(frozen=True, kw_only=True)
class HardwareMeta:
    """What a run ran on. Version 1 wrote only GPU names, or a description as text."""

    vendor: str | None = None
    description: str = ""  # in words
    gpus: tuple[GpuInfo, ...] = ()
    cpu_count: int | None = None

    @classmethod
    def of(cls, hw: Hardware) -> HardwareMeta:
        return cls(vendor=hw.vendor, description=hw.describe(),
                   gpus=tuple(GpuInfo(g.name, g.memory_mib, g.index) for g in hw.gpus),
                   cpu_count=os.cpu_count())

    def to_json(self) -> dict[str, Any]:
        return {"vendor": self.vendor, "description": self.description,
                "gpus": [g.to_json() for g in self.gpus], "cpu_count": self.cpu_count}


# Past 2^53 a results number is no measurement (and past float's range it breaks every
# division and format): such numbers read as missing.
MAX_NUMBER = 2 ** 53


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf
        return None
    return number if abs(number) <= MAX_NUMBER else None


def _in_range(value: Any) -> Any:
    """`value` with every number out of range (an int past 2^53, inf, nan) as None, at
    any depth: results files are read by tables, ratios and plots that expect floats."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_NUMBER else None
    if isinstance(value, float):
        return value if math.isfinite(value) and abs(value) <= MAX_NUMBER else None
    if isinstance(value, dict):
        return {str(k): _in_range(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_in_range(v) for v in value]
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# What one run may cost a reader (issue #35: a 16 MiB point file took 860 MB and 11 s).
# vLLM's result JSON is a few KB; a metrics file holds a sample every 0.25 s, thinned when
# written to stay under MAX_FILE_BYTES. A file over its limit, or past the run's budget,
# is skipped with a note and the rest is read.
MAX_META_BYTES = 1024 * 1024
MAX_FILE_BYTES = 2 * 1024 * 1024  # one points/, metrics/ or telemetry/ file
RUN_READ_BYTES = 16 * 1024 * 1024  # every points/ and metrics/ file of one run together
RUN_SAMPLES = 20_000  # metrics samples kept of one run (they are plotted, not summed)
MAX_KEYS = 128  # values kept of one point or one summary (vLLM's result has ~50)
SAMPLE_KEYS = 12  # values kept of one metrics sample (server_metrics takes 12)
MAX_TEXT = 200  # characters of a text value kept


def read_json(path: Path, max_bytes: int = MAX_FILE_BYTES, *, links: bool = True) -> Any:
    """A results file's JSON (a plain file inside its results folder, within a size
    limit; `links=False`: the file itself never a link); a UsageError naming the file
    when it cannot be read."""
    try:
        return bounded_json(path, max_bytes,
                            links_within=path.parent.parent if links else None)
    except Unreadable as err:
        raise UsageError(f"{path} cannot be read ({err}); fix or remove it.") from None
    except RecursionError:
        raise UsageError(f"{path} is nested too deep; fix or remove it.") from None


def _batch_files(folder: Path, notes: list[str] | None = None) -> dict[int, Path]:
    """batch-NNNN.json files by batch (other names are not results), the first
    MAX_POINTS of them; a folder that is a symbolic link holds none."""
    if folder.is_symlink() or not folder.is_dir():
        return {}
    found: dict[int, Path] = {}
    for entry in os.scandir(folder):
        batch = entry.name.removeprefix("batch-").removesuffix(".json")
        if entry.name.startswith("batch-") and entry.name.endswith(".json") and \
                batch.isascii() and batch.isdigit() and len(batch) <= 8:
            found[int(batch)] = Path(entry.path)
    if len(found) > MAX_POINTS and notes is not None:
        notes.append(f"{folder} holds {len(found):,} batch files; the first {MAX_POINTS:,} "
                     "are read.")
    return dict(sorted(found.items())[:MAX_POINTS])


def _number(value: Any) -> bool:
    """A finite number in range (not a bool): what a table, ratio or plot takes."""
    return type(value) in (int, float) and abs(value) <= MAX_NUMBER


def number_of(result: Mapping[str, Any], key: str) -> float:
    """A point's count or figure as a number, 0 where the file holds something else: a
    point file is data, and '"failed": "1"' must not end a report in a TypeError."""
    value = result.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0.0


def _scalars(data: Mapping[str, Any], limit: int = MAX_KEYS) -> dict[str, Any]:
    """The first `limit` numbers, switches and short texts of an object (a number out of
    range as None); what a report computes with: nested lists and objects are left out."""
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if len(kept) >= limit:
            break
        if len(key) > 64:
            continue
        if type(value) in (int, float):
            value = value if abs(value) <= MAX_NUMBER else None  # nan compares False
        elif isinstance(value, str):
            value = value[:MAX_TEXT]
        elif value is not None and not isinstance(value, bool):
            continue
        kept[sys.intern(key)] = value
    return kept


def _thinned(samples: list[Any], most: int) -> list[dict[str, float]]:
    """At most `most` samples, evenly spaced, the first and last kept; each its first
    SAMPLE_KEYS numbers."""
    if len(samples) > most:
        step = (len(samples) - 1) / max(most - 1, 1)
        samples = [samples[round(i * step)] for i in range(most)]
    return [dict(itertools.islice(((sys.intern(k), v) for k, v in x.items()
                                   if _number(v) and len(k) <= 64), SAMPLE_KEYS))
            for x in samples if isinstance(x, dict)]


@dataclass
class _RunBudget:
    """What is left to read of one run, and what was skipped (one note per kind)."""

    run: Path
    left: int = RUN_READ_BYTES
    samples: int = RUN_SAMPLES
    over: list[Path] = field(default_factory=list)  # files over MAX_FILE_BYTES
    past: list[Path] = field(default_factory=list)  # files past the run's budget

    def admit(self, file: Path) -> bool:
        try:
            size = file.lstat().st_size
        except OSError:
            return True  # read_json says why
        if size > MAX_FILE_BYTES:
            self.over.append(file)
            return False
        if size > self.left:
            self.past.append(file)
            return False
        self.left -= size
        return True

    def notes(self) -> list[str]:
        out = []
        if self.over:
            out.append(f"{len(self.over)} file(s) of {self.run.name} over "
                       f"{MAX_FILE_BYTES // 2**20} MiB skipped (first: {self.over[0]}).")
        if self.past:
            out.append(f"{len(self.past)} file(s) of {self.run.name} not read: past the "
                       f"{RUN_READ_BYTES // 2**20} MiB a report reads of one run "
                       f"(first: {self.past[0]}).")
        return out


def _read_batches(folder: Path, notes: list[str] | None, budget: _RunBudget | None = None,
                  kind: str = "points") -> dict[int, dict[str, Any]]:
    """Each batch's JSON object, reduced to what a report reads (`_scalars`; metrics:
    the summary and thinned samples), within `budget`; an unreadable file is skipped
    and named in `notes`."""
    budget = budget or _RunBudget(folder.parent)
    files = _batch_files(folder, notes)
    found = {}
    for batch, file in files.items():
        if not budget.admit(file):
            continue
        try:
            data = read_json(file, links=False)
            if not isinstance(data, dict):
                raise UsageError(f"{file} is not a JSON object; fix or remove it.")
        except UsageError as err:
            if notes is not None:
                notes.append(str(err))
            continue
        if kind == "metrics":
            summary = data.get("summary")
            samples = data.get("samples")
            most = max(2, min(RUN_SAMPLES // max(len(files), 1), budget.samples))
            kept = _thinned(samples if isinstance(samples, list) else [], most)
            budget.samples = max(budget.samples - len(kept), 0)
            found[batch] = {"summary": _scalars(summary) if isinstance(summary, dict) else {},
                            "samples": kept}
        else:
            found[batch] = _scalars(data)
    return found


class _SavedPoint(BaseModel):
    """A point as meta.json holds it: what `vllm bench serve` is run with on --resume,
    so every field has its shape (workloads.check_request_rate, check_goodput)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    batch: StrictInt = Field(ge=1, le=MAX_BATCH)
    num_prompts: StrictInt = Field(ge=1, le=4 * MAX_BATCH)
    max_concurrency: StrictInt | None = Field(default=None, ge=1, le=MAX_BATCH)
    request_rate: Annotated[StrictStr, AfterValidator(check_request_rate)]
    goodput: list[Annotated[StrictStr, AfterValidator(check_goodput)]] = Field(
        default_factory=list, max_length=3)


def _point(item: Any) -> Point | str:
    """A meta.json point, or why it is not one (one line)."""
    try:
        saved = _SavedPoint.model_validate(item)
    except ValidationError as err:
        return validation_reason(err)
    return Point(batch=saved.batch, num_prompts=saved.num_prompts,
                 max_concurrency=saved.max_concurrency, request_rate=saved.request_rate,
                 goodput=tuple(saved.goodput))


def _workload(raw: Any) -> Workload | None:
    """The run's workload; fields an older glmkit did not write come from its name."""
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping) or not (raw.get("name") or raw.get("input_len")):
        return None
    known = {f.name for f in fields(Workload)}
    name = str(raw.get("name") or "custom")
    base = WORKLOADS.get(name)
    values: dict[str, Any] = dict(base.__dict__) if base else {"description": name}
    values.update({k: v for k, v in raw.items() if k in known}, name=name)
    try:
        workload = Workload(**values)
    except TypeError:
        return None
    # Each field as the report computes with it: a length is a count, a switch a bool.
    typed = all(isinstance(getattr(workload, f.name), int) and not isinstance(
        getattr(workload, f.name), bool) and 0 <= getattr(workload, f.name) <= MAX_NUMBER
        for f in fields(Workload) if f.name in ("input_len", "output_len")) and all(
        isinstance(getattr(workload, f.name), bool) for f in fields(Workload)
        if f.name in ("ignore_eos", "vision")) and all(
        isinstance(getattr(workload, f.name), str | None) for f in fields(Workload)
        if f.name in ("name", "description", "dataset", "dataset_path", "dataset_revision"))
    # Where `vllm bench serve` reads a data set in the container, on --resume: a folder
    # there, as `bench_data.stage` wrote it (never a Hub id, an option or `..`).
    folder = workload.dataset_path if typed else None
    if folder is not None and not (_CONTAINER_PATH.fullmatch(folder) and ".." not in folder):
        return None
    return workload if typed else None


_CONTAINER_PATH = re.compile(r"/[A-Za-z0-9._@+/-]{1,511}")


@dataclass(frozen=True, kw_only=True)
class RunMeta:
    """meta.json: written by `start_run`, and read back from any version (or from a
    reference run's header) into this one shape."""

    version: int = META_VERSION
    label: str
    model: str
    vendor: str
    image: str = ""
    serve_args: tuple[str, ...] = ()
    max_model_len: int | None = None
    workload: Workload | None = None
    mode: SweepMode = "prompts"
    points: tuple[Point, ...] = ()
    hardware: HardwareMeta = HardwareMeta()
    reference: bool = False
    # Provenance: written since glmkit wrote meta.json; None where a file lacks it.
    glmkit_version: str | None = None
    glmkit_commit: str | None = None
    created: str | None = None
    image_digest: str | None = None
    prefix_caching: bool | None = None
    container: str | None = None
    # Where a run measured outside glmkit's own containers came from (scripts/gpu_truth.py:
    # GPU, driver, vLLM version, weights = dummy, expert routing, vLLM's memory lines).
    provenance: dict[str, Any] | None = None
    # What reading meta.json left out, one line each (never written back): a run with
    # any is reported, never resumed.
    dropped: tuple[str, ...] = ()

    @property
    def batches(self) -> list[int]:
        return [p.batch for p in self.points]

    @property
    def tensor_parallel(self) -> int:
        """The last --tensor-parallel-size, in either `--flag N` or `--flag=N` form."""
        return _int(flag_value(self.serve_args, "--tensor-parallel-size")) or 1

    def to_json(self) -> dict[str, Any]:
        """meta.json as META_VERSION writes it (the keys in the order they always had)."""
        return {
            "version": self.version, "label": self.label,
            "glmkit_version": self.glmkit_version, "glmkit_commit": self.glmkit_commit,
            "created": self.created, "model": self.model, "vendor": self.vendor,
            "image": self.image, "image_digest": self.image_digest,
            "serve_args": list(self.serve_args), "max_model_len": self.max_model_len,
            "prefix_caching": self.prefix_caching,
            "workload": asdict(self.workload) if self.workload else None, "mode": self.mode,
            "batches": self.batches, "points": [asdict(p) for p in self.points],
            "hardware": self.hardware.to_json(), "container": self.container,
            **({"reference": True} if self.reference else {}),
            **({"provenance": self.provenance} if self.provenance else {}),
        }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _hardware(raw: Any) -> HardwareMeta:
    if not isinstance(raw, Mapping):
        return HardwareMeta(description=str(raw or ""))
    return HardwareMeta(
        vendor=_text(raw.get("vendor")), description=str(raw.get("description") or ""),
        gpus=tuple(GpuInfo(str(g.get("name") or "?"), _int(g.get("memory_mib")),
                           _int(g.get("index")))
                   for g in _list(raw.get("gpus")) if isinstance(g, Mapping)),
        cpu_count=_int(raw.get("cpu_count")))


def read_meta(raw: Mapping[str, Any], fallback_label: str) -> RunMeta:
    """meta.json's data as a RunMeta: any version, every field its type; a point that is
    not one is left out (named in `dropped`), and more than MAX_POINTS is no run."""
    mode: SweepMode = "concurrency" if raw.get("mode") == "concurrency" else "prompts"
    listed, batches_listed = _list(raw.get("points")), _list(raw.get("batches"))
    if max(len(listed), len(batches_listed)) > MAX_POINTS:
        raise UsageError(f"meta.json lists {max(len(listed), len(batches_listed)):,} "
                         f"points, over the {MAX_POINTS:,} a run has; fix or remove that run.")
    read = [_point(item) for item in listed]
    points = [p for p in read if isinstance(p, Point)]
    dropped = [f"point {i}: {p}" for i, p in enumerate(read) if isinstance(p, str)]
    workload = _workload(raw.get("workload"))
    if workload is None and raw.get("workload") is not None:
        dropped.append("workload: not one this glmkit reads (lengths are counts, a data "
                       "set's folder a path in the container)")
    if not read or dropped:
        batches = [b for b in (_int(x) for x in batches_listed)
                   if b and 0 < b <= MAX_BATCH]
        points = sweep_points(list(dict.fromkeys(batches)), mode)
    caching = raw.get("prefix_caching")
    return RunMeta(
        version=_int(raw.get("version")) or 1, label=str(raw.get("label") or fallback_label),
        model=str(raw.get("model") or "?"), vendor=str(raw.get("vendor") or "?"),
        image=str(raw.get("image") or ""),
        serve_args=tuple(str(a) for a in _list(raw.get("serve_args"))),
        max_model_len=_int(raw.get("max_model_len")), workload=workload,
        mode=mode, points=tuple(points), hardware=_hardware(raw.get("hardware")),
        reference=bool(raw.get("reference")),
        glmkit_version=_text(raw.get("glmkit_version")),
        glmkit_commit=_text(raw.get("glmkit_commit")), created=_text(raw.get("created")),
        image_digest=_text(raw.get("image_digest")),
        prefix_caching=caching if isinstance(caching, bool) else None,
        container=_text(raw.get("container")),
        provenance=raw["provenance"] if isinstance(raw.get("provenance"), dict) else None,
        dropped=tuple(dropped))


def _fitted(data: dict[str, Any]) -> dict[str, Any]:
    """Samples thinned (every other one, the last kept) until the file is one a report
    reads (MAX_FILE_BYTES): a long point keeps its shape, not every quarter second."""
    samples = data.get("samples")
    while isinstance(samples, list) and len(samples) > 2 and \
            len(json.dumps(data, indent=2)) > MAX_FILE_BYTES * 0.9:
        samples = samples[::2] + ([samples[-1]] if len(samples) % 2 == 0 else [])
        data = {**data, "samples": samples, "thinned": True}
    return data


@dataclass(frozen=True)
class Run:
    """A run folder: its metadata, and the append-only point, failure and telemetry files."""

    path: Path
    meta: RunMeta

    @property
    def run_id(self) -> str:
        return self.path.name

    def points(self, notes: list[str] | None = None, budget: _RunBudget | None = None
               ) -> dict[int, dict[str, Any]]:
        """Each finished point's result (its numbers and short texts); unreadable files
        skipped (named in `notes`)."""
        return _read_batches(self.path / "points", notes, budget)

    def missing(self) -> list[int]:
        # A point whose file exists is done, readable or not: it is never overwritten.
        done = _batch_files(self.path / "points")
        return [b for b in self.meta.batches if b not in done]

    def _folder(self, kind: str) -> Path:
        """The run's `kind` folder, made if missing: never a symbolic link (a write
        would follow it out of the run)."""
        folder = self.path / kind
        if self.path.is_symlink() or folder.is_symlink() or \
                (folder.exists() and not folder.is_dir()):
            raise UsageError(f"{folder} is a symbolic link or not a folder; results are "
                             "written only inside their run. Remove it.")
        folder.mkdir(exist_ok=True)
        return folder

    def save_point(self, batch: int, result: dict[str, Any]) -> Path:
        path = self._folder("points") / point_name(batch)
        write_json_once(path, result)
        return path

    def save_failure(self, batch: int, failure: dict[str, Any]) -> Path:
        """Every failure kept, numbered (a retried point may fail again): written whole
        to a temporary file, then linked under the first free name, so two writers at
        once neither clobber each other nor leave half a file."""
        folder = self._folder("failures")
        base = point_name(batch).removesuffix(".json")
        fd, name = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump({"time": time.time(), **failure}, handle, indent=2)
                handle.write("\n")
            for n in range(10_000):
                path = folder / (f"{base}.json" if n == 0 else f"{base}.{n}.json")
                try:
                    os.link(name, path)  # fails if taken: never replaces a failure
                except FileExistsError:
                    continue
                return path
        finally:
            os.unlink(name)
        raise UsageError(f"{folder} holds 10000 failures of batch {batch}; clean it up.")

    def save_telemetry(self, batch: int, telemetry: dict[str, Any]) -> None:
        self._save_samples("telemetry", batch, telemetry)

    def save_metrics(self, batch: int, metrics: dict[str, Any]) -> None:
        self._save_samples("metrics", batch, metrics)

    def _save_samples(self, kind: str, batch: int, data: dict[str, Any]) -> None:
        path = self._folder(kind) / point_name(batch)
        if path.exists():  # a point run again keeps its first samples
            return
        with contextlib.suppress(UsageError):  # another writer was first: theirs stays
            write_json_once(path, _fitted(data))

    def metrics(self, notes: list[str] | None = None, budget: _RunBudget | None = None
                ) -> dict[int, dict[str, Any]]:
        """The server's metrics per batch (summary, and samples thinned to what a plot
        shows), where they were taken; unreadable files skipped (named in `notes`)."""
        return _read_batches(self.path / "metrics", notes, budget, kind="metrics")


def _git_commit(repo_root: Path) -> str | None:
    """The kit's commit, when it runs from a git checkout and git is installed."""
    try:
        done = run(["git", "-C", str(repo_root), "rev-parse", "HEAD"], check=False, timeout=10)
    except EnvironmentProblem:  # no git on PATH
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def create_run(results_dir: Path, meta: RunMeta) -> Run:
    """A new run folder named `<time>-<label>` (numbered if taken), its meta.json written."""
    plain_name(meta.label, "Label")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = results_dir / (f"{stamp}-{meta.label}" if n == 0 else
                              f"{stamp}-{meta.label}-{n}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        write_json_once(path / META, meta.to_json())
        return Run(path, meta)
    raise UsageError(f"Could not create a new run folder under {results_dir}.")


@dataclass(frozen=True)
class RunFacts:
    """What the host says about a run, read once before it starts: the kit's git commit
    and the digest of the image the server runs."""

    glmkit_commit: str | None
    image_digest: str | None


def read_run_facts(target: RunningServer, repo_root: Path) -> RunFacts:
    """The host facts of a run against `target` (git, and Docker for the digest)."""
    # The container's own image: a moving tag may name another one since.
    return RunFacts(_git_commit(repo_root),
                    (target.container and container_image_digest(target.container))
                    or image_digest(target.image))


def start_run(results_dir: Path, target: RunningServer, workload: Workload, mode: SweepMode,
              points: list[Point], hardware: HardwareMeta, facts: RunFacts,
              label: str | None = None) -> Run:
    """A new run of a sweep against `target`: what ran, where, and from which glmkit."""
    default = f"{target.served_model.rsplit('/', 1)[-1]}-{target.vendor}-{workload.name}"
    name = label or re.sub(r"[^A-Za-z0-9._-]+", "-", default).strip("-.")[:100]
    meta = RunMeta(
        label=name, glmkit_version=__version__, glmkit_commit=facts.glmkit_commit,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), model=target.served_model,
        vendor=target.vendor, image=target.image, image_digest=facts.image_digest,
        serve_args=tuple(target.serve_args), max_model_len=target.max_model_len,
        prefix_caching=target.prefix_caching, workload=workload, mode=mode,
        points=tuple(points), hardware=hardware, container=target.container)
    return create_run(results_dir, meta)


def _read_run(path: Path) -> Run:
    try:
        raw = _in_range(read_json(path / META, MAX_META_BYTES))
    except RecursionError:
        raise UsageError(f"{path / META} is nested too deep; fix or remove that run.") \
            from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path / META} is not a JSON object; fix or remove that run.")
    return Run(path, read_meta(raw, path.name))


def open_run(results_dir: Path, ref: str) -> Run:
    """A run by id, by a unique id prefix, or by its folder under `results_dir`."""
    try:
        if Path(ref).is_dir() and Path(ref).resolve().parent == results_dir.resolve():
            ref = Path(ref).name
    except OSError:  # a name longer than the file system takes: not a run folder
        pass
    plain_name(ref, "Run id")
    candidates = sorted(p for p in results_dir.glob(f"{ref}*") if (p / META).is_file())
    if not candidates:
        raise UsageError(f"No benchmark run {ref!r} under {results_dir} (`invoke report` lists "
                         "them).")
    exact = [p for p in candidates if p.name == ref]
    if len(candidates) > 1 and not exact:
        names = ", ".join(p.name for p in candidates[:5])
        raise UsageError(f"{ref!r} matches several runs ({names}); give more of the id.")
    return _read_run((exact or candidates)[0])


def list_runs(results_dir: Path) -> list[Run]:
    return [_read_run(p.parent) for p in sorted(results_dir.glob(f"*/{META}"))]


# --- reading runs for reports ----------------------------------------------------------

# `vllm bench serve` text output → its JSON keys.
TEXT_KEYS = {
    "Successful requests": "completed",
    "Failed requests": "failed",
    "Benchmark duration (s)": "duration",
    "Total input tokens": "total_input_tokens",
    "Total generated tokens": "total_output_tokens",
    "Request throughput (req/s)": "request_throughput",
    "Output token throughput (tok/s)": "output_throughput",
    "Total Token throughput (tok/s)": "total_token_throughput",
    "Maximum request concurrency": "max_concurrency",
    "Mean TTFT (ms)": "mean_ttft_ms", "Median TTFT (ms)": "median_ttft_ms",
    "P99 TTFT (ms)": "p99_ttft_ms",
    "Mean TPOT (ms)": "mean_tpot_ms", "Median TPOT (ms)": "median_tpot_ms",
    "P99 TPOT (ms)": "p99_tpot_ms",
    "Mean ITL (ms)": "mean_itl_ms", "Median ITL (ms)": "median_itl_ms",
    "P99 ITL (ms)": "p99_itl_ms",
}


def parse_bench_text(text: str) -> dict[str, float]:
    """The 'Serving Benchmark Result' block that `vllm bench serve` prints."""
    result: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(.+?):\s+([-\d.]+)\s*$", line.strip())
        if match and match.group(1) in TEXT_KEYS:
            result[TEXT_KEYS[match.group(1)]] = float(match.group(2))
    result.setdefault("failed", 0.0)
    return result


@dataclass(frozen=True)
class Series:
    """One run as a report reads it: its id, metadata and a result per batch."""

    run_id: str
    meta: RunMeta
    points: dict[int, dict[str, Any]]
    missing: tuple[int, ...] = ()
    metrics: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.meta.label


def reference_names() -> list[str]:
    return [p.stem for p in sorted(REFERENCE_DIR.glob("*.txt"))]


def load_reference(name: str) -> Series:
    """A published figure shipped as text: `# key: value` header lines, then the result.
    Only the shipped names: `ref:` never reads a path."""
    if name not in reference_names():
        shipped = ", ".join(f"ref:{n}" for n in reference_names())
        raise UsageError(f"No reference run {name!r}. Shipped: {shipped}.")
    path = REFERENCE_DIR / f"{name}.txt"
    text = path.read_text(errors="replace")
    header: dict[str, Any] = dict(re.findall(r"^# (\w+): (.+)$", text, re.M))
    batch = _int(header.pop("batch", None))
    if batch is None or batch < 1:
        raise UsageError(f"Reference run {path} has no '# batch: N' line; it cannot be "
                         "reported.")
    meta = read_meta({**header, "reference": True, "label": f"ref:{name}",
                      "batches": [batch]}, f"ref:{name}")
    return Series(f"ref:{name}", meta, {batch: parse_bench_text(text)})


def _series(run: Run, notes: list[str] | None = None) -> Series:
    """A run as a report reads it, within one run's bounds (RUN_READ_BYTES, RUN_SAMPLES)."""
    budget = _RunBudget(run.path, RUN_READ_BYTES, RUN_SAMPLES)
    points, metrics = run.points(notes, budget), run.metrics(notes, budget)
    if notes is not None:
        notes.extend(budget.notes())
    return Series(run.run_id, run.meta, points, tuple(run.missing()), metrics)


def load_report(results_dir: Path, refs: list[str]) -> tuple[list[Series], list[str]]:
    """The named runs (ids, folders, `ref:NAME`), or every run under `results_dir`; and
    notes on what was skipped: a run whose meta.json is unreadable (when listing all),
    a point or metrics file that is."""
    notes: list[str] = []
    if refs:
        return [load_reference(ref.removeprefix("ref:")) if ref.startswith("ref:") else
                _series(open_run(results_dir, ref), notes) for ref in refs], notes
    series = []
    for meta in sorted(results_dir.glob(f"*/{META}")):
        try:
            series.append(_series(_read_run(meta.parent), notes))
        except UsageError as err:
            notes.append(str(err))
    if not series:
        raise UsageError(f"No readable benchmark runs under {results_dir}: `invoke bench` "
                         "first." + (f" ({notes[0]})" if notes else ""))
    return series, notes


def load_all(results_dir: Path, refs: list[str]) -> list[Series]:
    """`load_report` without its notes."""
    return load_report(results_dir, refs)[0]


def report_folder(results_dir: Path, out: str | None) -> Path:
    """Where a report's plots and CSV go (created): --out, else results/reports/<time>."""
    folder = Path(out) if out else results_dir / "reports" / time.strftime("%Y%m%d-%H%M%S")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file there, no permission, a read-only disk, a long name
        raise UsageError(f"--out {str(folder)[:80]!r}: cannot write a report there "
                         f"({err.strerror}). Pass a folder you can write.") from None
    return folder
