"""Advisories: known faults and workarounds that the recipes do not say, as data.

knowledge/advisories.yaml lists each fault with its sources, what they confirm and what
they do not, what it applies to (vendor, GPU, model or expert shape, quantization, tool
parser, an environment entry) and the vLLM versions it is known in, and one action:

    env     set environment entries (through glmkit.policy.admit_env, like a recipe's)
    refuse  stop the plan with the reason, before anything is pulled
    note    one line in `invoke plan`, `render`/`up` and `doctor`
    check   decide rows of `invoke check` (a cut tool call's finish reason, the upstream
            issue a failed row is known by)

An advisory acts only where its vLLM range is known and the image's version falls in it;
where a bound is unknown, or the version cannot be placed (a moving nightly tag), it is a
note and glmkit changes nothing. The file is read through the recipes' limited YAML reader
and a strict schema (its text reaches terminals and, for `env`, containers); the values it
is matched against (model ids, a synced recipe's environment) are untrusted and only
compared, never echoed from here.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from glmkit.knowledge.images import version_key
from glmkit.knowledge.recipe_schema import RecipeRefused, read_yaml
from glmkit.text import validation_reason

TABLE = Path(__file__).with_name("advisories.yaml")
MAX_ADVISORIES = 200
# AMD's LLVM targets as the taxonomy's GPU ids: advisories name the architecture a fault
# is in, the plan knows the card.
ARCHITECTURES: dict[str, tuple[str, ...]] = {"gfx942": ("mi300x", "mi325x"),
                                             "gfx950": ("mi350x", "mi355x")}


class AdvisoryRefused(ValueError):
    """An advisory table glmkit will not read; the message is one line saying why."""


Text = Annotated[StrictStr, StringConstraints(min_length=1, max_length=600,
                                              pattern=r"^[^\x00-\x1f\x7f]+$")]
Title = Annotated[StrictStr, StringConstraints(min_length=1, max_length=120,
                                               pattern=r"^[^\x00-\x1f\x7f]+$")]
Id = Annotated[StrictStr, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
Url = Annotated[StrictStr, StringConstraints(
    pattern=r"^https://[A-Za-z0-9.-]{1,100}/[A-Za-z0-9._~/#%?=&+-]{1,200}$")]
Release = Annotated[StrictStr, StringConstraints(pattern=r"^[0-9]{1,4}(\.[0-9]{1,4}){1,3}$")]
Gpu = Annotated[StrictStr, StringConstraints(pattern=r"^[a-z0-9_]{2,40}$")]
Pattern = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z0-9._*?\[\]!-]{1,80}$")]
Name = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
EnvName = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")]
EnvValue = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z0-9._:,/=-]{0,128}$")]
Count = Annotated[StrictInt, Field(ge=1, le=1 << 16)]
Env = Annotated[dict[EnvName, EnvValue], Field(min_length=1, max_length=8)]
Api = Literal["chat", "messages", "responses"]
Choice = Literal["auto", "required", "none", "named"]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceLink(_Schema):
    url: Url
    says: Text

    @property
    def short(self) -> str:
        """github.com/owner/repo/issues/N as owner/repo#N; any other address as it is."""
        found = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)/(?:issues|pull)/([0-9]+)",
                             self.url)
        return f"{found.group(1)}#{found.group(2)}" if found else self.url


class Applies(_Schema):
    """What an advisory applies to: every key given must hold (a list: one of its values).
    `models` (patterns on the checkpoint's name) or the expert shape, whichever is known,
    picks the model."""

    vendors: tuple[Literal["cuda", "rocm", "cpu"], ...] | None = None
    gpus: tuple[Gpu, ...] | None = Field(default=None, max_length=16)
    models: tuple[Pattern, ...] | None = Field(default=None, max_length=16)
    experts: Count | None = None
    experts_per_token: Count | None = None
    precisions: tuple[Literal["bf16", "fp8", "nvfp4", "mxfp4"], ...] | None = None
    tool_parsers: tuple[Name, ...] | None = Field(default=None, max_length=8)
    env: Env | None = None  # entries the planned environment holds

    def gpu_ids(self) -> frozenset[str] | None:
        if self.gpus is None:
            return None
        return frozenset(gpu for name in self.gpus for gpu in ARCHITECTURES.get(name, (name,)))


class VllmRange(_Schema):
    """The vLLM versions a fault is known in; see advisories.yaml's header."""

    seen_from: Release | Literal["any", "unknown"]
    fixed_in: Release | Literal["open", "unknown"]
    before: Literal["unaffected", "unknown"] = "unknown"
    checked: date  # when the sources were last read

    @property
    def known(self) -> bool:
        return "unknown" not in (self.seen_from, self.fixed_in)

    def holds(self, version: str | None, floor: bool = False) -> bool | None:
        """Whether `version` is affected: True, False, or None where that cannot be told
        (a bound not known, no version, or a moving tag's `floor` below a bound)."""
        if not self.known or version is None:
            return None
        v = version_key(version)
        if self.fixed_in != "open" and v >= version_key(self.fixed_in):
            return False  # a floor at or past the fix: every build it may be has the fix
        if self.seen_from != "any" and v < version_key(self.seen_from):
            return None if floor or self.before == "unknown" else False
        return None if floor and self.fixed_in != "open" else True

    def describe(self) -> str:
        since = {"any": "every version", "unknown": "versions not known"}.get(
            self.seen_from, f"vLLM {self.seen_from}")
        fixed = {"open": "no release has the fix", "unknown": "fix not known"}.get(
            self.fixed_in, f"fixed in {self.fixed_in}")
        return f"{since}; {fixed} (as of {self.checked.isoformat()})"


class Action(_Schema):
    kind: Literal["env", "refuse", "note", "check"]
    text: Text  # one line a user reads
    env: Env | None = None

    @model_validator(mode="after")
    def _env_for_env(self) -> Action:
        if (self.kind == "env") != (self.env is not None):
            raise ValueError("an env action, and only one, names env entries")
        return self


class CheckRule(_Schema):
    """How the advisory decides rows of `invoke check`."""

    apis: tuple[Api, ...] | None = None
    tool_choice: tuple[Choice, ...] | None = None
    # A failed row whose problem holds one of these is known upstream: the row names it.
    symptoms: tuple[Title, ...] = Field(default=(), max_length=8)
    # Finish reasons a tool call cut by max_tokens may end with while the advisory holds,
    # besides `length` (what OpenAI's API and a fixed vLLM say).
    cut_finish: tuple[Literal["tool_calls", "stop"], ...] = ()


class Advisory(_Schema):
    id: Id
    title: Title
    sources: tuple[SourceLink, ...] = Field(min_length=1, max_length=8)
    confirmed: Text
    unconfirmed: Text | None = None
    applies: Applies = Field(default_factory=Applies)
    vllm: VllmRange
    action: Action
    check: CheckRule | None = None

    @model_validator(mode="after")
    def _check_rule(self) -> Advisory:
        if self.action.kind == "check" and self.check is None:
            raise ValueError("a check action needs a check rule")
        return self

    @property
    def cited(self) -> str:
        return ", ".join(s.short for s in self.sources)


class AdvisoryTable(_Schema):
    advisories: tuple[Advisory, ...] = Field(max_length=MAX_ADVISORIES)

    @model_validator(mode="after")
    def _unique(self) -> AdvisoryTable:
        ids = [a.id for a in self.advisories]
        if len(set(ids)) != len(ids):
            raise ValueError(f"an advisory id is given twice ({sorted(ids)})")
        return self


def read_table(path: Path) -> tuple[Advisory, ...]:
    """An advisory table: the recipes' limited YAML reader, then the schema; anything
    else is AdvisoryRefused with one line."""
    try:
        return AdvisoryTable.model_validate(read_yaml(path)).advisories
    except RecipeRefused as err:
        raise AdvisoryRefused(f"{path.name}: {err}") from None
    except ValidationError as err:
        raise AdvisoryRefused(f"{path.name}: {validation_reason(err)}") from None


@functools.cache
def advisories() -> tuple[Advisory, ...]:
    """glmkit's table (knowledge/advisories.yaml), read once."""
    return read_table(TABLE)


# --- what applies to a plan -----------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Situation:
    """What a plan is, as advisories are matched against it."""

    vendor: str  # cuda, rocm, cpu
    gpu: str | None = None  # the taxonomy's id (mi355x); None: not in the taxonomy
    model: str = ""  # the checkpoint id
    precision: str | None = None
    experts: int | None = None  # routed experts, where config.json was read
    experts_per_token: int | None = None
    tool_parser: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # the planned environment
    vllm_version: str | None = None  # None: not known
    version_floor: bool = False  # a moving tag: at least vllm_version


def matches(applies: Applies, s: Situation) -> bool:
    """Whether every condition of `applies` holds for `s`."""
    ids = applies.gpu_ids()
    if (applies.vendors is not None and s.vendor not in applies.vendors) or \
            (ids is not None and s.gpu not in ids) or \
            (applies.precisions is not None and s.precision not in applies.precisions) or \
            (applies.tool_parsers is not None and s.tool_parser not in applies.tool_parsers):
        return False
    if applies.env is not None and any(s.env.get(k) != v for k, v in applies.env.items()):
        return False
    if applies.models is None and applies.experts is None:
        return True
    name = s.model.rsplit("/", 1)[-1].lower()
    by_name = applies.models is not None and \
        any(fnmatch.fnmatchcase(name, p.lower()) for p in applies.models)
    by_shape = applies.experts is not None and s.experts == applies.experts and \
        applies.experts_per_token in (None, s.experts_per_token)
    return by_name or by_shape


@dataclass(frozen=True)
class Applied:
    """An advisory that applies to a plan; `acts` False where it is only noted (its vLLM
    range is not known, or the image's version cannot be placed in it)."""

    advisory: Advisory
    acts: bool

    @property
    def kind(self) -> str:
        return self.advisory.action.kind

    def line(self) -> str:
        """The advisory as one line of `plan`, `up` and `doctor`."""
        a = self.advisory
        text = f"{a.action.text} ({a.cited})"
        if a.action.kind == "env" and a.action.env is not None:
            entries = " ".join(f"{k}={v}" for k, v in a.action.env.items())
            text += f": sets {entries}" if self.acts else \
                f"; not set here, vLLM versions affected: {a.vllm.describe()} (the " \
                f"workaround is {entries})"
        elif a.action.kind == "refuse":
            text += ": `render` and `up` refuse this plan" if self.acts else \
                f"; not refused, vLLM versions affected: {a.vllm.describe()}"
        return f"advisory {a.id}: {text}"


def applicable(s: Situation, table: tuple[Advisory, ...] | None = None
               ) -> tuple[Applied, ...]:
    """The plan-side advisories (env, refuse, note) that apply to `s`, in table order."""
    out = []
    for advisory in advisories() if table is None else table:
        if advisory.action.kind == "check" or not matches(advisory.applies, s):
            continue
        holds = advisory.vllm.holds(s.vllm_version, s.version_floor)
        if holds is False:
            continue
        out.append(Applied(advisory, acts=bool(holds)))
    return tuple(out)


# --- what applies to `invoke check` ---------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class CheckTarget:
    """The server a check runs against, as check rules are matched against it."""

    api: str = "chat"
    tool_parser: str | None = None
    vllm_version: str | None = None


def _rules(target: CheckTarget, table: tuple[Advisory, ...] | None
           ) -> list[tuple[Advisory, CheckRule]]:
    found = []
    for advisory in advisories() if table is None else table:
        rule = advisory.check
        if rule is None or (rule.apis is not None and target.api not in rule.apis):
            continue
        # A check knows the server's tool parser, not its GPU or vendor: only the parser
        # narrows a check rule.
        parsers = advisory.applies.tool_parsers
        if parsers is not None and target.tool_parser not in parsers:
            continue
        if advisory.vllm.holds(target.vllm_version) is False:
            continue
        found.append((advisory, rule))
    return found


def _choice_kind(tool_choice: str) -> str:
    return tool_choice if tool_choice in ("auto", "required", "none") else "named"


def upstream(problem: str, tool_choice: str, target: CheckTarget,
             table: tuple[Advisory, ...] | None = None) -> str | None:
    """The sources of the advisory a failed row's problem is known by, or None."""
    for advisory, rule in _rules(target, table):
        if rule.tool_choice is not None and _choice_kind(tool_choice) not in rule.tool_choice:
            continue
        if any(symptom in problem for symptom in rule.symptoms):
            return f"{advisory.cited} ({advisory.title})"
    return None


def cut_finish_reasons(target: CheckTarget, table: tuple[Advisory, ...] | None = None
                       ) -> dict[str, str]:
    """The finish reasons a tool call cut by max_tokens may end with on `target`: `length`
    always (OpenAI's answer), and each one an advisory that holds allows, with its
    sources."""
    allowed = {"length": ""}
    for advisory, rule in _rules(target, table):
        for reason in rule.cut_finish:
            allowed.setdefault(reason, f"{advisory.cited} ({advisory.title})")
    return allowed
