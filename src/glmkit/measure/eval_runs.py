"""Eval runs read back (#34): for `invoke report`, accuracy beside speed, and two runs
compared question by question (`invoke report --runs A --runs B` with two eval runs).

The folders are the kit's own, but a file read back is data from outside (hand-edited,
planted, from another version): each is read within a size limit and parsed with
pydantic, and a run that does not parse is skipped with a note naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glmkit.errors import UsageError
from glmkit.files import Unreadable, read_bounded, read_json
from glmkit.measure.evaluate import ANSWERS, EVAL_DIR, META, SUMMARY
from glmkit.text import validation_reason

MAX_META_BYTES = 4 * 1024 * 1024
MAX_ANSWERS_BYTES = 64 * 1024 * 1024
Short = Annotated[str, Field(max_length=300)]
Count = Annotated[int, Field(ge=0, le=10_000_000)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Named(_Doc):
    name: Short


class _Dataset(_Named):
    revision: Short = ""


class _Meta(_Doc):
    version: Literal[1]
    kind: Literal["eval"]
    created: Short = ""
    model: Short
    vllm_version: Short | None = None
    protocol: _Named
    dataset: _Dataset


class _Correct(_Doc):
    strict: Count = 0
    flexible: Count = 0


class _Gate(_Doc):
    verdict: Short
    reference: Short


class _Summary(_Doc):
    status: Literal["complete", "partial", "interrupted"]
    selected: Count
    answered: Count
    correct: _Correct
    gate: list[_Gate] = Field(default_factory=list, max_length=100)


class _Verdict(_Doc):
    flexible: bool
    strict: bool


class _Extracted(_Doc):
    flexible: Short


class _Answer(_Doc):
    index: Count
    target: Short
    verdict: _Verdict | None = None
    extracted: _Extracted | None = None
    error: Short | None = None


@dataclass(frozen=True)
class EvalRun:
    run_id: str
    meta: _Meta
    summary: _Summary

    @property
    def rate(self) -> float | None:
        n = self.summary.answered
        return self.summary.correct.flexible / n if n else None


def _read(folder: Path) -> EvalRun:
    try:
        meta = _Meta.model_validate(read_json(folder / META, MAX_META_BYTES,
                                              links_within=folder))
        summary = _Summary.model_validate(read_json(folder / SUMMARY, MAX_META_BYTES,
                                                    links_within=folder))
    except Unreadable as err:
        raise UsageError(f"Eval run {folder} cannot be read ({err}).") from None
    except ValidationError as err:
        raise UsageError(f"Eval run {folder} is refused ({validation_reason(err)}).") \
            from None
    return EvalRun(folder.name, meta, summary)


def answers(results_dir: Path, run_id: str) -> dict[int, _Answer]:
    """A run's answers by question index."""
    path = results_dir / EVAL_DIR / run_id / ANSWERS
    try:
        text = read_bounded(path, MAX_ANSWERS_BYTES, links_within=path.parent).decode()
        rows = [_Answer.model_validate(json.loads(line)) for line in text.splitlines() if line]
    except (Unreadable, UnicodeDecodeError, ValueError) as err:  # ValidationError too
        reason = validation_reason(err) if isinstance(err, ValidationError) else \
            str(err).splitlines()[0][:120]
        raise UsageError(f"{path} cannot be read ({reason}).") from None
    return {row.index: row for row in rows}


def is_eval_run(results_dir: Path, ref: str) -> bool:
    from glmkit.measure.results import plain_name

    try:
        plain_name(ref, "Run id")
    except UsageError:
        return False
    return (results_dir / EVAL_DIR / ref / META).is_file()


def eval_runs(results_dir: Path, refs: list[str]) -> tuple[list[EvalRun], list[str]]:
    """The eval runs named in `refs` (every one when `refs` is empty), and notes on the
    ones skipped."""
    folder = results_dir / EVAL_DIR
    names = [r for r in refs if is_eval_run(results_dir, r)] if refs else sorted(
        p.parent.name for p in folder.glob(f"*/{SUMMARY}"))
    found, notes = [], []
    for name in names:
        try:
            found.append(_read(folder / name))
        except UsageError as err:
            if refs:
                raise
            notes.append(str(err))
    return found, notes


@dataclass(frozen=True)
class Change:
    index: int
    target: str
    before: str  # what run A read (flexible), or why none
    after: str
    now_right: bool


def diff(results_dir: Path, a: EvalRun, b: EvalRun) -> list[Change]:
    """The questions both runs asked whose verdict (flexible) differs."""
    if (a.meta.dataset.name, a.meta.protocol.name) != (b.meta.dataset.name,
                                                       b.meta.protocol.name):
        raise UsageError(f"{a.run_id} and {b.run_id} asked different things ("
                         f"{a.meta.dataset.name} {a.meta.protocol.name} vs "
                         f"{b.meta.dataset.name} {b.meta.protocol.name}).")
    first, second = answers(results_dir, a.run_id), answers(results_dir, b.run_id)

    def ok(row: _Answer) -> bool:
        return row.verdict is not None and row.verdict.flexible

    def read(row: _Answer) -> str:
        return row.error or (row.extracted.flexible if row.extracted else "-")

    return [Change(i, first[i].target, read(first[i]), read(second[i]), ok(second[i]))
            for i in sorted(set(first) & set(second)) if ok(first[i]) != ok(second[i])]


@dataclass(frozen=True)
class AccuracyReport:
    """`invoke report`'s accuracy section: the eval runs, what was skipped, and for two
    eval runs named, the questions whose verdict changed."""

    runs: list[EvalRun]
    notes: list[str]
    changes: list[Change] | None = None


def split_report(results_dir: Path, refs: list[str]
                 ) -> tuple[list[str] | None, AccuracyReport]:
    """The benchmark runs to report (None: no benchmark section) and the eval runs: the
    named ones of each kind, or every one of each when none is named (the benchmark
    section then also when there is nothing at all, to say so)."""
    evals, notes = eval_runs(results_dir, refs)
    changes = diff(results_dir, *evals) if refs and len(evals) == 2 else None
    accuracy = AccuracyReport(evals, notes, changes)
    if refs:
        bench = [r for r in refs if not is_eval_run(results_dir, r)]
        return (bench or None), accuracy
    has_bench = any(results_dir.glob("*/meta.json"))
    return ([] if has_bench or not (evals or notes) else None), accuracy
