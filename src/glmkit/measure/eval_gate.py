"""The accuracy gate (#34): what a GSM8K score is compared with, and how.

References are of two kinds. A `threshold` (vLLM CI's 0.84 for GLM-4.7-Flash) passes
when the score is at least the threshold; on a `--limit` sample, when the sample's Wilson
95 % interval does not lie wholly below it (a sample cannot prove a full-set score is
under the line, only that it is very unlikely to be over it). A `measured` score (a
recipe's validation run, or a baseline saved here with `--save-baseline`) passes unless
this run is significantly below it: a one-sided two-proportion z-test (pooled), at
α = 0.05, with both sides' question counts, so a 50-question sample is not failed for a
2-point dip that a 1,319-question run would be.

A reference measured with another protocol or on another data set is not compared at
all (the protocol moves GSM8K more than the engine does: vllm#57134); other hardware,
engine version or quantization is compared, and the line says what differs.

The published table (knowledge/accuracy_references.json) and saved baselines are files
read as untrusted data: parsed with pydantic, with limits, a bad one refused in one line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from glmkit.errors import UsageError
from glmkit.files import Unreadable, atomic_write, read_json
from glmkit.measure.accuracy import Metric
from glmkit.text import one_line, validation_reason

REFERENCES = Path(__file__).parents[1] / "knowledge" / "accuracy_references.json"
MAX_TABLE_BYTES = 1024 * 1024
MAX_BASELINE_BYTES = 256 * 1024
Z95 = 1.959963984540054  # two-sided 95 %: the Wilson interval printed with every score
Z_ONE_SIDED = 1.6448536269514722  # one-sided, alpha = 0.05: "significantly below"
Kind = Literal["threshold", "measured"]
Verdict = Literal["pass", "fail", "not compared"]


def _printable(text: str) -> str:
    if any(not ch.isprintable() for ch in text):
        raise ValueError("holds a control character")
    return text


def _source(text: str) -> str:
    """An https:// link, or a file of this repository (a score the kit measured itself,
    e.g. the tiny model's: the script or page that says how)."""
    if re.fullmatch(r"https://[A-Za-z0-9.-]+/[!-~]*", text) or (
            re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./#-]*", text) and ".." not in text):
        return text
    raise ValueError("must be an https:// link or a file of this repository")


Short = Annotated[str, Field(max_length=40), AfterValidator(_printable)]
Words = Annotated[str, Field(max_length=120), AfterValidator(_printable)]
Long = Annotated[str, Field(max_length=300), AfterValidator(_printable)]
Note = Annotated[str, Field(max_length=800), AfterValidator(_printable)]
Arg = Annotated[str, Field(max_length=4096), AfterValidator(_printable)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Count = Annotated[int, Field(ge=1, le=10_000_000)]
Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Reference(_Data):
    """A published GSM8K figure: what was measured, how, on what, and where it is written."""

    id: Name
    model: Words  # the model family's repo (zai-org/GLM-4.7-Flash)
    checkpoint: Words  # the exact checkpoint measured
    quantization: Short
    gpu: Short | None = None  # a token the GPU's name holds (mi300x); None: not stated
    hardware: Words  # in words
    engine: Short
    engine_version: Words | None = None
    dataset: Name
    protocol: Name
    protocol_stated: bool = True  # False: the source does not say; the note says why
    metric: Literal["strict", "flexible", "last-integer"]
    kind: Kind
    value: Score
    n: Count
    source: Annotated[str, Field(max_length=300), AfterValidator(_source)]
    note: Note = ""


class ReferenceTable(_Data):
    version: Literal[1]
    references: list[Reference] = Field(max_length=1000)

    @model_validator(mode="after")
    def _unique(self) -> ReferenceTable:
        ids = [r.id for r in self.references]
        if len(ids) != len(set(ids)):
            raise ValueError("two references share an id")
        return self


def load_references(path: Path = REFERENCES) -> list[Reference]:
    """The published references; a table that is not the schema's: one line."""
    try:
        return list(ReferenceTable.model_validate(read_json(path, MAX_TABLE_BYTES))
                    .references)
    except Unreadable as err:
        raise UsageError(f"The accuracy reference table {path} cannot be read ({err}).") \
            from None
    except ValidationError as err:
        raise UsageError(f"The accuracy reference table {path} is refused: "
                         f"{validation_reason(err)}") from None


class Correct(_Data):
    strict: Annotated[int, Field(ge=0, le=10_000_000)]
    flexible: Annotated[int, Field(ge=0, le=10_000_000)]
    last_integer: Annotated[int, Field(ge=0, le=10_000_000)]


class Baseline(_Data):
    """A run saved with `--save-baseline`: the reference later runs of the model here
    compare with. Written by the kit, read back as untrusted as invoke.yaml."""

    version: Literal[1]
    model: Long
    protocol: Name
    dataset: Name
    n: Count
    correct: Correct
    run_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")]
    created: Short
    hardware: Long = ""
    image: Long = ""
    image_digest: Long | None = None
    vllm_version: Words | None = None
    serve_args: list[Arg] = Field(default_factory=list, max_length=512)

    @model_validator(mode="after")
    def _counts(self) -> Baseline:
        if max(self.correct.strict, self.correct.flexible, self.correct.last_integer) \
                > self.n:
            raise ValueError("more correct answers than questions")
        return self


def baseline_name(model: str, protocol: str, dataset: str) -> str:
    """The file a baseline is saved as: one path part, whatever the model's name."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", model).strip("-.")[:120] or "model"
    return f"{slug}.{protocol}.{dataset}.json"


def save_baseline(folder: Path, baseline: Baseline) -> Path:
    """The baseline written whole (a reader never sees half of it); it replaces the
    model's earlier one for the same protocol and data set."""
    path = folder / baseline_name(baseline.model, baseline.protocol, baseline.dataset)
    return atomic_write(path, baseline.model_dump_json(indent=2) + "\n")


def read_baseline(path: Path) -> Baseline:
    try:
        return Baseline.model_validate(read_json(path, MAX_BASELINE_BYTES,
                                                 links_within=path.parent))
    except Unreadable as err:
        raise UsageError(f"Baseline {path} cannot be read ({err}); remove it or save a new "
                         "one with `invoke eval --save-baseline`.") from None
    except ValidationError as err:
        raise UsageError(f"Baseline {path} is refused ({validation_reason(err)}); remove it "
                         "or save a new one with `invoke eval --save-baseline`.") from None


def baselines_of(folder: Path, model: str) -> list[Baseline]:
    """The baselines saved for `model`, newest first; a bad file is refused in one line."""
    if not folder.is_dir():
        return []
    prefix = baseline_name(model, "x", "x").removesuffix(".x.x.json") + "."
    found = [read_baseline(p) for p in sorted(folder.glob("*.json"))
             if p.name.startswith(prefix)]
    return sorted((b for b in found if b.model == model), key=lambda b: b.created,
                  reverse=True)


# --- statistics -------------------------------------------------------------------------

def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of `correct` out of `n` (n ≥ 1)."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # All right or all wrong: the bound on that side is exact (float error aside).
    return (0.0 if correct == 0 else max(0.0, centre - half),
            1.0 if correct == n else min(1.0, centre + half))


def z_below(correct: int, n: int, ref_correct: int, ref_n: int) -> float:
    """The one-sided two-proportion z statistic (pooled) for "this run's rate is below the
    reference's": positive when below; 0 when both are all right or all wrong."""
    pooled = (correct + ref_correct) / (n + ref_n)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / ref_n))
    if spread == 0:
        return 0.0
    return (ref_correct / ref_n - correct / n) / spread


# --- the comparison ---------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """What a run is compared with: a published reference or a saved baseline."""

    name: str  # how the line names it
    kind: Kind
    metric: Metric
    value: float
    n: int
    protocol: str
    dataset: str
    source: str  # a link, or the baseline's file
    facts: Mapping[str, str | None] = field(default_factory=dict)  # what it ran on
    gpu: str | None = None  # a published row's GPU token
    stated: bool = True  # whether the source states its protocol

    @property
    def correct(self) -> int:
        return round(self.value * self.n)


def reference_target(ref: Reference) -> Target:
    return Target(ref.id, ref.kind, ref.metric,
                  ref.value, ref.n, ref.protocol, ref.dataset, ref.source,
                  {"quantization": ref.quantization, "engine_version": ref.engine_version,
                   "hardware": ref.hardware}, ref.gpu, ref.protocol_stated)


def baseline_target(baseline: Baseline, path: Path) -> Target:
    return Target(f"baseline of {one_line(baseline.model, 80)} ({baseline.run_id})",
                  "measured", "flexible", baseline.correct.flexible / baseline.n,
                  baseline.n, baseline.protocol, baseline.dataset, str(path),
                  {"hardware": baseline.hardware, "image": baseline.image_digest or
                   baseline.image or None, "engine_version": baseline.vllm_version,
                   "serve flags": " ".join(baseline.serve_args)})


@dataclass(frozen=True)
class RunScore:
    """What the gate needs of a run: its counts per metric, and what it ran on."""

    n: int
    correct: Mapping[str, int]  # per metric
    protocol: str
    dataset: str
    sample: bool  # a --limit sample, not the whole test split
    facts: Mapping[str, str | None] = field(default_factory=dict)

    def rate(self, metric: str) -> float:
        return self.correct[metric] / self.n


@dataclass(frozen=True)
class Outcome:
    target: Target
    verdict: Verdict
    score: float  # this run's rate in the target's metric
    detail: str  # the test's figure, or why not compared
    differences: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def line(self) -> str:
        """"vs …: pass (…)", with what differs."""
        t = self.target
        what = f"≥ {t.value:g}" if t.kind == "threshold" else f"{t.value:.3f} (n={t.n})"
        text = f"vs {t.name} {t.metric} {what}: {self.verdict}"
        if self.verdict != "not compared":
            text += f" at {t.metric} {self.score:.3f}"
        text += f" ({self.detail})"
        if self.differences:
            text += "; differs: " + ", ".join(self.differences)
        return text


def differences(run: Mapping[str, str | None], target: Target) -> tuple[str, ...]:
    """What the run ran on that the reference did not, where both are known."""
    out = []
    for key, theirs in target.facts.items():
        ours = run.get(key)
        if not ours or not theirs:
            continue
        if key == "hardware" and target.gpu is not None:
            same = target.gpu.lower() in re.sub(r"[\s_-]", "", ours.lower())
        else:
            same = ours.strip().lower() == theirs.strip().lower()
        if not same:
            out.append(f"{key} {one_line(ours, 60)} (reference: {one_line(theirs, 60)})")
    return tuple(out)


def compare(run: RunScore, target: Target) -> Outcome:
    """The gate's verdict on one reference."""
    if target.protocol != run.protocol or target.dataset != run.dataset:
        return Outcome(target, "not compared", 0.0,
                       f"it was measured with {target.protocol} on {target.dataset}"
                       + ("" if target.stated else " (protocol not stated by its source)")
                       + f"; this run: {run.protocol} on {run.dataset}")
    score = run.rate(target.metric)
    diffs = differences(run.facts, target)
    if target.kind == "threshold":
        if run.sample:
            low, high = wilson(run.correct[target.metric], run.n)
            ok = high >= target.value
            detail = f"sample of {run.n}: 95% interval {low:.3f}-{high:.3f}"
        else:
            ok = score >= target.value
            detail = f"{run.correct[target.metric]}/{run.n}"
        return Outcome(target, "pass" if ok else "fail", score, detail, diffs)
    z = z_below(run.correct[target.metric], run.n, target.correct, target.n)
    ok = z <= Z_ONE_SIDED
    return Outcome(target, "pass" if ok else "fail", score,
                   f"one-sided two-proportion z = {z:.2f}, fails above {Z_ONE_SIDED:.3f}",
                   diffs)


def applicable(references: Sequence[Reference], model: str, family: str | None
               ) -> list[Reference]:
    """The published rows about `model`: its own checkpoint's, or (another quantization
    of the same model) its recipe family's."""
    names = {model.lower()} | ({family.lower()} if family else set())
    return [r for r in references
            if r.checkpoint.lower() in names or r.model.lower() in names]
