"""`invoke tune`: is the recipe's command the best this hardware can do for a workload?

Each candidate is the recipe's command with some knobs turned (strategy, max-num-seqs,
max-num-batched-tokens, MTP, FP8 KV cache, prefix caching). Every candidate is served in
turn (restarts reuse the torch.compile cache volume), benchmarked with the same workload,
seed and SLO (`vllm bench serve --goodput` counts the requests that meet it), and
compared with the recipe's default measured in the same tune. The winner is written as
an invoke config file that `invoke -f FILE up` starts. Finished candidates are kept in
results/tune/<id>/; `--resume ID` runs the rest.

Candidates are served in a compose project of their own (`<project>-tune`): the user's
server in `<project>` is never recreated or removed. A saved tune state is read back as
data someone else may have written: a shape with limits, and its settings a layer at most
as trusted as invoke.yaml, resolved and checked as invoke.yaml's would be.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console
from rich.text import Text

from glmkit.errors import GlmkitError, Interrupted, UsageError
from glmkit.files import Unreadable, atomic_write, read_json
from glmkit.host.hardware import Hardware
from glmkit.host.settings import (
    MAX_COUNT,
    Settings,
    TuneOptions,
    resolve_settings,
    user_settings,
)
from glmkit.host.vendors import VendorProfile
from glmkit.knowledge.catalog import ModelSpec
from glmkit.measure.bench import BenchRequest, run_bench
from glmkit.measure.results import PLAIN_NAME, plain_name
from glmkit.measure.workloads import check_goodput, parse_batches, resolve_workload
from glmkit.run import deploy
from glmkit.text import validation_reason

TUNE_DIR = "tune"
STATE = "tune.json"


@dataclass(frozen=True)
class Candidate:
    name: str
    changes: dict[str, Any] = field(default_factory=dict)  # Settings fields to replace

    def apply(self, settings: Settings) -> Settings:
        changes = dict(self.changes)
        if extra := changes.pop("extra_args", None):
            changes["extra_args"] = (*settings.extra_args, *extra)
        return dataclasses.replace(settings, **changes)


def candidates_for(model: ModelSpec, vendor: VendorProfile) -> list[Candidate]:
    """The recipe's default first, then the knobs that move throughput and latency most,
    most promising first (a budget cuts the tail)."""
    out = [Candidate("recipe default")]
    if not vendor.has_gpus:
        return [*out, Candidate("max-num-seqs 8", {"extra_args": ("--max-num-seqs", "8")}),
                Candidate("max-num-batched-tokens 512", {"max_num_batched_tokens": 512}),
                Candidate("prefix caching off", {"bench_mode": True})]
    strategies = model.recipe.compatible_strategies if model.recipe else ("single_node_tp",)
    for strategy in strategies:
        if strategy.startswith("single_node") and strategy != "single_node_tp":
            out.append(Candidate(strategy, {"strategy": strategy}))
    if model.has_mtp:
        out.append(Candidate("MTP", {"mtp": True}))
    for seqs in ("512", "128"):
        out.append(Candidate(f"max-num-seqs {seqs}", {"extra_args": ("--max-num-seqs", seqs)}))
    out += [Candidate("max-num-batched-tokens 16384", {"max_num_batched_tokens": 16384}),
            Candidate("FP8 KV cache", {"extra_args": ("--kv-cache-dtype", "fp8")})]
    return out


def tune_project(project: str) -> str:
    """The compose project a tune serves its candidates in: `<project>-tune`, a project
    name still (at most 63 characters), never the user's own."""
    return f"{project[:58]}-tune"


@dataclass(frozen=True, kw_only=True)
class TuneRequest:
    settings: Settings  # the model, vendor and hardware to tune for (the user's project)
    # The command line's settings (None: not given). A resumed tune resolves them over
    # its saved settings, so what only the command line may ask for is asked again.
    flags: Mapping[str, Any] = field(default_factory=dict)
    workload: str = TuneOptions.workload
    batch: str = TuneOptions.batch
    input_len: int | None = None
    output_len: int | None = None
    slo: tuple[str, ...] = ()
    budget_min: float = TuneOptions.budget
    max_candidates: int | None = None
    resume: str | None = None
    eval_limit: int = TuneOptions.eval_limit  # questions per candidate; 0: no accuracy


@dataclass(frozen=True)
class Row:
    candidate: str
    run_id: str | None
    goodput: float | None  # requests/s that met the SLO (all requests without one)
    throughput: float | None  # output tokens/s
    ttft_p99: float | None
    tpot_p99: float | None
    error: str = ""
    # GSM8K (the tiny model: its arithmetic set) on a seeded sample (#34): the share
    # right (flexible-extract) and of how many questions; None when not measured.
    accuracy: float | None = None
    accuracy_n: int | None = None


def _rate(row: Row) -> tuple[int, int] | None:
    """A row's accuracy as (right, asked), None when absent or not a share of a count
    (the state file is read back, and no more trusted than invoke.yaml)."""
    acc, n = row.accuracy, row.accuracy_n
    if not isinstance(acc, int | float) or isinstance(acc, bool) or not 0 <= acc <= 1 or \
            not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= 10_000_000:
        return None
    return round(acc * n), n


def passes_accuracy(candidate: Row, baseline: Row | None) -> bool:
    """Whether `candidate` may be recommended: its accuracy is not significantly below the
    recipe default's own, by the gate's one-sided two-proportion z-test (eval_gate). With
    no score for the default there is nothing to hold a candidate to; a candidate without
    a score of its own, while the default has one, is not recommended."""
    from glmkit.measure.eval_gate import Z_ONE_SIDED, z_below

    base = _rate(baseline) if baseline is not None else None
    if base is None:
        return True
    mine = _rate(candidate)
    return mine is not None and z_below(*mine, *base) <= Z_ONE_SIDED


@dataclass(frozen=True)
class TuneReport:
    folder: Path
    rows: list[Row]
    winner: str | None
    winner_file: Path | None
    # Faster candidates not recommended: their accuracy was significantly below the
    # recipe default's.
    less_accurate: tuple[str, ...] = ()

    def ratio(self, row: Row) -> float | None:
        base = self.rows[0].goodput if self.rows and self.rows[0].error == "" else None
        return row.goodput / base if base and row.goodput is not None else None


def parse_request(settings: Settings, *, workload: str | None, batch: str | None,
                  slo: str | None, budget: str | None, candidates: str | None,
                  resume: str | None, eval_limit: str | None = None,
                  flags: Mapping[str, Any] | None = None) -> TuneRequest:
    """A request from `invoke tune`'s text options (None: not given, the table's default);
    numbers, the workload, the batch sizes, the SLO and the tune id checked here."""
    from glmkit.host.settings import number
    from glmkit.measure.workloads import parse_slo

    if len(settings.models) > 1:
        raise UsageError("invoke tune searches one model's knobs: name one --model (a model "
                         "group's members are tuned one by one).")
    workload = workload or TuneOptions.workload
    resolve_workload(workload)
    parse_batches(batch or TuneOptions.batch)
    return TuneRequest(
        settings=settings, flags=dict(flags or {}), workload=workload,
        batch=batch or TuneOptions.batch, slo=parse_slo(slo),
        budget_min=number(budget or TuneOptions.budget, float, "budget", 0),
        resume=None if resume is None else plain_name(resume, "Tune id"),
        max_candidates=number(candidates or TuneOptions.candidates, int, "candidates", 0)
        or None, eval_limit=_eval_limit(eval_limit))


def _eval_limit(text: str | None) -> int:
    from glmkit.host.settings import task_option

    return int(task_option("tune", "eval_limit", text))


def _accuracy(project: str, limit: int, label: str, results_dir: Path, root: Path,
              hw: Hardware, env: Mapping[str, str], console: Console
              ) -> tuple[float | None, int | None]:
    """The candidate's GSM8K share right on a seeded sample (the same questions for every
    candidate); (None, None) when it could not be measured, said in a line."""
    from glmkit.measure.accuracy import PROTOCOLS
    from glmkit.measure.evaluate import EvalRequest, eval_server
    from glmkit.paths import hf_cache

    try:
        report = eval_server(EvalRequest(project=project, protocol=PROTOCOLS[
            "completions-5shot"], limit=limit, label=label), results_dir, root, hw,
            hf_cache(env, None), console)
    except GlmkitError as err:
        console.print(f"accuracy not measured: {str(err).splitlines()[0][:160]}",
                      highlight=False, markup=False)
        return None, None
    if report.status != "complete" or not report.answered:
        return None, None
    return report.correct["flexible"] / report.answered, report.answered


def _score(result: Mapping[str, Any], slo: tuple[str, ...]) -> float | None:
    value = result.get("request_goodput") if slo else result.get("request_throughput")
    return float(value) if isinstance(value, int | float) else None


def _row(name: str, run_id: str, result: Mapping[str, Any], slo: tuple[str, ...]) -> Row:
    def num(key: str) -> float | None:
        value = result.get(key)
        return float(value) if isinstance(value, int | float) else None

    return Row(name, run_id, _score(result, slo), num("output_throughput"),
               num("p99_ttft_ms"), num("p99_tpot_ms"))


def _write_state(folder: Path, request: TuneRequest, rows: list[Row]) -> None:
    # The settings as invoke.yaml would hold them: which layer gave a value is not saved
    # (read back, every value is invoke.yaml's).
    values = request.settings.values()
    saved = {f.name: list(v) if isinstance(v := values[f.name], tuple) else v
             for f in user_settings()}
    state = {"settings": saved, "workload": request.workload,
             "batch": request.batch, "input_len": request.input_len,
             "output_len": request.output_len, "slo": list(request.slo),
             "rows": [dataclasses.asdict(r) for r in rows]}
    atomic_write(folder / STATE, json.dumps(state, indent=2) + "\n")


def _winner_file(folder: Path, settings: Settings) -> Path:
    """The winning settings as an invoke config: `invoke -f FILE up` serves them."""
    # The settings a user can set (not which layer gave them), less what differs by host.
    values = settings.values()
    chosen = {f.name: (list(value) if isinstance(value, tuple) else value)
              for f in user_settings()
              if (value := values[f.name]) != f.default and f.name != "project"}
    return atomic_write(folder / "invoke.yaml", "# The winner of `invoke tune`.\n"
                        + yaml.safe_dump({"glmkit": chosen}, sort_keys=False))


def new_tune_folder(results_dir: Path) -> Path:
    """results/tune/<time>-<random>: two tunes started in the same second get their own."""
    parent = results_dir / TUNE_DIR
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        folder = parent / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise UsageError(f"Could not create a new tune folder under {parent}.")


# --- a saved tune state, read back ------------------------------------------------------

MAX_STATE_BYTES = 1024 * 1024  # a state holds settings and a row per candidate: a few KB
_INTERNAL = {f.name for f in dataclasses.fields(Settings) if f.metadata.get("internal")}
_Text = Annotated[str, Field(max_length=4096)]
_Number = Annotated[float, Field(ge=0, le=float(MAX_COUNT) ** 2, allow_inf_nan=False)]


def _run_id(text: str) -> str:
    if not PLAIN_NAME.fullmatch(text) or ".." in text:
        raise ValueError(f"{text[:40]!r} is not a run id")
    return text


class _SavedRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    candidate: str = Field(max_length=100)
    run_id: Annotated[str, AfterValidator(_run_id)] | None = None
    goodput: _Number | None = None
    throughput: _Number | None = None
    ttft_p99: _Number | None = None
    tpot_p99: _Number | None = None
    error: str = Field(default="", max_length=240)
    # A share right of a count asked; a hostile pair reads as not measured (_accuracy_of).
    accuracy: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    accuracy_n: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


class _SavedState(BaseModel):
    """tune.json's shape. Its settings are not checked here but resolved as a layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    settings: dict[Annotated[str, Field(max_length=40)],
                   _Text | int | float | bool | Annotated[list[_Text], Field(max_length=256)]
                   | None] = Field(max_length=100)
    workload: str = Field(max_length=40)
    batch: str = Field(max_length=200)
    input_len: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    output_len: int | None = Field(default=None, ge=1, le=MAX_COUNT)
    slo: list[Annotated[str, AfterValidator(check_goodput)]] = Field(max_length=3)
    rows: list[_SavedRow] = Field(max_length=100)


def _open(request: TuneRequest, results_dir: Path) -> tuple[Path, TuneRequest, list[Row]]:
    if request.resume is None:
        return new_tune_folder(results_dir), request, []
    tune_id = plain_name(request.resume, "Tune id")
    folder = results_dir / TUNE_DIR / tune_id
    try:
        raw = read_json(folder / STATE, MAX_STATE_BYTES, links_within=folder.parent)
    except Unreadable as err:
        if not (folder / STATE).exists():
            raise UsageError(f"No tune {tune_id!r} under {results_dir / TUNE_DIR}.") from None
        raise UsageError(f"{folder / STATE} cannot be read ({err}); start a new tune.") \
            from None
    try:
        state = _SavedState.model_validate(raw)
    except ValidationError as err:  # hand-edited, or from another version
        raise UsageError(f"{folder / STATE} is not a tune state this glmkit reads "
                         f"({validation_reason(err)}); start a new tune.") from None
    # The saved settings are a layer no more trusted than invoke.yaml, under the command
    # line given now: what only the command line may ask for (--privileged, an image of
    # anyone's, code-loading flags) must be asked for again. Which layer gave a value
    # then is not read back.
    saved = {k: v for k, v in state.settings.items() if k not in _INTERNAL}
    try:
        settings, _ = resolve_settings(request.flags, saved, {})
        resolve_workload(state.workload, state.input_len, state.output_len)
        parse_batches(state.batch)
    except UsageError as err:
        raise UsageError(f"tune {tune_id} (its saved settings read as invoke.yaml's): "
                         f"{err}") from None
    resumed = dataclasses.replace(
        request, settings=settings, workload=state.workload, batch=state.batch,
        input_len=state.input_len, output_len=state.output_len, slo=tuple(state.slo))
    return folder, resumed, [Row(**r.model_dump()) for r in state.rows]


def run_tune(request: TuneRequest, hw: Hardware, env: Mapping[str, str], root: Path,
         console: Console) -> TuneReport:
    """Serve, benchmark and rank each candidate (kit checkout at `root`: results/, compose/)
    in a project of the tune's own."""
    results_dir, compose_dir = root / "results", root / "compose"
    # The model and vendor `up` would serve, from its own plan; bad input is refused
    # before anything is written (a resumed tune plans its saved settings).
    base = deploy.plan_on_host(request.settings, hw, env).serving \
        if request.resume is None else None
    folder, request, rows = _open(request, results_dir)
    if base is None:
        try:
            base = deploy.plan_on_host(request.settings, hw, env).serving
        except UsageError as err:
            raise UsageError(f"tune {folder.name} (its saved settings read as invoke.yaml's): "
                             f"{err}") from None
    every = candidates_for(base.model, base.vendor)
    if unknown := sorted({r.candidate for r in rows} - {c.name for c in every}):
        raise UsageError(f"{folder / STATE} names a candidate this tune does not have "
                         f"({unknown[0][:60]!r}); start a new tune.")
    candidates = every[:request.max_candidates or None]
    done = {r.candidate for r in rows}
    project = tune_project(request.settings.project)
    console.print(f"candidates are served as project {project}: the server of project "
                  f"{request.settings.project} is left as it is", highlight=False,
                  markup=False)
    started = time.monotonic()
    try:
        for i, cand in enumerate(candidates):
            if cand.name in done:
                continue
            if rows and time.monotonic() - started > request.budget_min * 60:
                console.print(f"budget of {request.budget_min:g} min spent: {cand.name} and "
                              "later candidates not run", highlight=False, markup=False)
                break
            console.print(Text(f"candidate {i + 1}/{len(candidates)}: {cand.name}", "bold"))
            settings = dataclasses.replace(cand.apply(request.settings), project=project)
            try:
                deploy.up(deploy.plan_on_host(settings, hw, env), None, compose_dir, root,
                          console, env, smoke=False)
                outcome = run_bench(BenchRequest(
                    project=project, workload=request.workload, batch=request.batch,
                    input_len=request.input_len, output_len=request.output_len,
                    slo=request.slo, label=f"tune-{folder.name}-{i}"),
                    results_dir, root, hw, console)
                points = outcome.series.points
                result = points[max(points)] if points else {}
                row = _row(cand.name, outcome.series.run_id, result, request.slo)
                if request.eval_limit:
                    accuracy, asked = _accuracy(settings.project, request.eval_limit,
                                                f"tune-{folder.name}-{i}-eval", results_dir,
                                                root, hw, env, console)
                    row = dataclasses.replace(row, accuracy=accuracy, accuracy_n=asked)
                rows.append(row)
            except UsageError:
                raise
            except GlmkitError as err:  # a candidate that does not serve loses; the rest run
                rows.append(Row(cand.name, None, None, None, None, None,
                                str(err).splitlines()[0][:120]))
            _write_state(folder, request, rows)
    except KeyboardInterrupt:
        _write_state(folder, request, rows)
        raise Interrupted(f"tune interrupted: {len(rows)} candidate(s) kept; continue with "
                          f"`invoke tune --resume {folder.name}`") from None
    finally:
        deploy.down(project, request.settings.nodes)
    default = next((r for r in rows if r.candidate == "recipe default"), None)
    scored = [r for r in rows if r.goodput is not None]
    less_accurate = tuple(r.candidate for r in scored if not passes_accuracy(r, default))
    best = max((r for r in scored if r.candidate not in less_accurate),
               key=lambda r: (r.goodput or 0, r.throughput or 0), default=None)
    winner_file = None
    if best is not None:
        cand = next(c for c in every if c.name == best.candidate)
        winner_file = _winner_file(folder, cand.apply(request.settings))
    return TuneReport(folder, rows, best.candidate if best else None, winner_file,
                      less_accurate)
