"""The question sets `invoke eval` asks (#34): GSM8K from the HF cache, and the tiny
model's arithmetic set shipped with the kit.

GSM8K (`openai/gsm8k`, config `main`) is parquet on the Hub. `invoke download --dataset
gsm8k` puts its two files (train: the few-shot examples; test: the 1,319 questions) into
the HF cache through huggingface_hub and records the snapshot as complete; `invoke eval`
reads them from there, offline. They are read with pyarrow on the host: a host
dependency (a wheel without torch; see pyproject.toml) rather than a `docker exec` into
the serving image, so an eval never runs anything in the user's server container and
works against a server on another machine. Every file is read as data from outside:
a regular file inside the cache, within a size limit, each row a question and an answer
ending "#### N", else one line.

The tiny set (`data/tiny_gsm8k.json`) is GSM8K-shaped arithmetic the tiny model is
trained on (scripts/train_tiny_tools.py): its first five train items are the few-shot
block, its test items the questions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from glmkit.errors import EnvironmentProblem, UsageError
from glmkit.files import Unreadable, atomic_write, read_bounded, read_json
from glmkit.measure.accuracy import Problem
from glmkit.text import validation_reason

GSM8K = "gsm8k"
TINY = "tiny-arith"
DATASETS = (GSM8K, TINY)
GSM8K_REPO = "openai/gsm8k"
GSM8K_NAMES = (GSM8K, GSM8K_REPO)  # what `invoke download --dataset` takes for it
ALLOW_PATTERNS = ["main/*.parquet", "README.md"]
TINY_FILE = Path(__file__).parents[1] / "data" / "tiny_gsm8k.json"
MAX_PARQUET_BYTES = 64 * 1024 * 1024  # GSM8K's files are 0.4 and 2.3 MB
MAX_TINY_BYTES = 4 * 1024 * 1024
MAX_ROWS = 100_000
MISSING = ("GSM8K is not on this machine: `invoke download --dataset gsm8k` (needs the "
           "Hub once; evals are offline afterwards).")


def _answer(text: str) -> str:
    if "#### " not in text:
        raise ValueError("an answer must end with '#### N'")
    return text


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    question: Annotated[str, Field(min_length=1, max_length=16_384)]
    answer: Annotated[str, Field(min_length=1, max_length=16_384), AfterValidator(_answer)]


_ITEMS: TypeAdapter[list[_Item]] = TypeAdapter(
    Annotated[list[_Item], Field(min_length=1, max_length=MAX_ROWS)])


class _TinySet(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)
    name: Annotated[str, Field(max_length=64)]
    source: Annotated[str, Field(max_length=2000)] = ""
    train: Annotated[list[_Item], Field(min_length=5, max_length=MAX_ROWS)]
    test: Annotated[list[_Item], Field(min_length=1, max_length=MAX_ROWS)]


@dataclass(frozen=True)
class EvalSet:
    """A data set's few-shot examples and questions, and where they came from."""

    name: str
    revision: str
    source: str
    train: tuple[Problem, ...]
    test: tuple[Problem, ...]


def _problems(items: list[_Item]) -> tuple[Problem, ...]:
    return tuple(Problem(i.question, i.answer) for i in items)


def load_tiny(path: Path | None = None) -> EvalSet:
    """The tiny model's arithmetic set (data/tiny_gsm8k.json unless `path`)."""
    path = path or TINY_FILE
    try:
        data = _TinySet.model_validate(read_json(path, MAX_TINY_BYTES))
    except Unreadable as err:
        raise UsageError(f"The tiny model's question set {path} cannot be read ({err}); "
                         "this glmkit lacks it.") from None
    except ValidationError as err:
        raise UsageError(f"The tiny model's question set {path} is refused: "
                         f"{validation_reason(err)}") from None
    import hashlib

    revision = "sha256-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return EvalSet(TINY, revision, str(path), _problems(data.train), _problems(data.test))


def _marker(hf_cache: Path) -> Path:
    return hf_cache / "glmkit-complete" / f"datasets--{GSM8K_REPO.replace('/', '--')}.json"


def read_split(path: Path, hf_cache: Path) -> tuple[Problem, ...]:
    """One GSM8K parquet file's rows, read within the cache and its size limit."""
    try:
        data = read_bounded(path, MAX_PARQUET_BYTES, links_within=hf_cache)
    except Unreadable as err:
        raise UsageError(f"GSM8K file {path} cannot be read ({err}). {MISSING}") from None
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise EnvironmentProblem("pyarrow is not installed, and GSM8K is parquet: run "
                                 "scripts/setup.sh (it installs the kit's dependencies).") \
            from None
    try:
        table = pq.read_table(pa.BufferReader(data), columns=["question", "answer"])
        if table.num_rows > MAX_ROWS:
            raise ValueError(f"{table.num_rows} rows, over {MAX_ROWS}")
        rows = table.to_pylist()
    except (pa.ArrowException, ValueError, KeyError, OSError, TypeError) as err:
        detail = " ".join(str(err).split())[:160]
        raise UsageError(f"GSM8K file {path} is not a readable parquet file of questions "
                         f"and answers ({detail}); run `invoke download --dataset gsm8k` "
                         "again.") from None
    try:
        return _problems(_ITEMS.validate_python(rows))
    except ValidationError as err:
        raise UsageError(f"GSM8K file {path} is refused: {validation_reason(err)}; run "
                         "`invoke download --dataset gsm8k` again.") from None


def _split_file(folder: Path, split: str) -> Path:
    found = sorted(folder.glob(f"main/{split}-*.parquet"))
    if len(found) != 1:
        raise UsageError(f"The GSM8K snapshot {folder} has {len(found)} {split} files, not "
                         f"one. {MISSING}")
    return found[0]


def load_gsm8k(hf_cache: Path) -> EvalSet:
    """GSM8K's train and test splits from the snapshot `invoke download` recorded."""
    try:
        record = read_json(_marker(hf_cache), 64 * 1024)
        folder = Path(str(record["path"]))
    except (Unreadable, KeyError, TypeError):
        raise UsageError(MISSING) from None
    home = (hf_cache / "hub" / f"datasets--{GSM8K_REPO.replace('/', '--')}").resolve()
    if home not in folder.resolve().parents or not folder.is_dir():
        raise UsageError(f"The GSM8K download record names {str(folder)[:120]!r}, not a "
                         f"snapshot in {home}. {MISSING}")
    train = read_split(_split_file(folder, "train"), hf_cache)
    test = read_split(_split_file(folder, "test"), hf_cache)
    return EvalSet(GSM8K, folder.name[:40], str(folder), train, test)


def load_set(name: str, hf_cache: Path) -> EvalSet:
    if name == GSM8K:
        return load_gsm8k(hf_cache)
    if name == TINY:
        return load_tiny()
    raise UsageError(f"--dataset {name[:40]!r}: choose {' or '.join(DATASETS)}.")


def download_gsm8k(revision: str | None, hf_cache: Path, env: Mapping[str, str],
                   endpoint: str | None = None) -> str:
    """`invoke download --dataset gsm8k`: GSM8K's `main` parquet files into the HF cache
    (resumable), checked readable, then recorded as complete."""
    from huggingface_hub import snapshot_download

    from glmkit.host.hub import explain_hub_error, hf_token

    token = hf_token(env)
    hub = hf_cache / "hub"
    hub.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(snapshot_download(GSM8K_REPO, repo_type="dataset", cache_dir=hub,
                                      token=token, revision=revision, endpoint=endpoint,
                                      allow_patterns=ALLOW_PATTERNS))
    except Exception as err:  # the Hub client's HTTP and network errors: explained
        raise explain_hub_error(err, GSM8K_REPO, token) from None
    train = read_split(_split_file(path, "train"), hf_cache)
    test = read_split(_split_file(path, "test"), hf_cache)
    record: dict[str, Any] = {"dataset": GSM8K_REPO, "revision": path.name,
                              "path": str(path), "train": len(train), "test": len(test)}
    atomic_write(_marker(hf_cache), json.dumps(record, indent=2) + "\n")
    return (f"{GSM8K_REPO}@{path.name[:12]}: {len(train):,} train and {len(test):,} test "
            f"questions → {path}")
