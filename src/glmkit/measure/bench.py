"""`invoke bench`: find the running server, open a new run or resume one, and drive the
sweep: every missing point, one progress bar over the matrix and a live line from the
running point. Stops cleanly on Ctrl-C or a dead server."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from glmkit.errors import BenchFailed, Interrupted, UsageError
from glmkit.host.hardware import Hardware
from glmkit.host.settings import BenchOptions, number
from glmkit.measure.bench_data import DatasetSource, locate_visionarena, stage
from glmkit.measure.point import PointOutcome, fit_lengths, run_point
from glmkit.measure.results import (
    HardwareMeta,
    Run,
    Series,
    number_of,
    open_run,
    plain_name,
    read_run_facts,
    start_run,
)
from glmkit.measure.workloads import (
    MAX_BATCH,
    SweepMode,
    Workload,
    check_request_rate,
    parse_batches,
    resolve_workload,
    sweep_points,
)
from glmkit.run.engine import log_tail, probe
from glmkit.run.server import RunningServer, running_server


def server_alive(container: Any, base_url: str) -> bool:
    # /health under benchmark load can be slow to answer: a longer wait than start-up's.
    return probe(container, base_url, timeout_s=5).healthy


@dataclass(frozen=True)
class SweepReport:
    run: Run
    outcomes: list[PointOutcome]
    missing: list[int]
    interrupted: bool


def run_sweep(run_: Run, target: RunningServer, workload: Workload, container: Any,
              console: Console) -> SweepReport:
    points = list(run_.meta.points)
    left = set(run_.missing())
    todo = [p for p in points if p.batch in left]
    if not server_alive(container, target.base_url):
        raise BenchFailed(f"The server in {target.container} is not healthy; refusing to "
                          "benchmark it. Check `invoke status` and `invoke logs`.")
    outcomes: list[PointOutcome] = []
    interrupted = False
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    with progress:
        overall = progress.add_task(f"{workload.name} sweep", total=len(points),
                                    completed=len(points) - len(todo))
        live = progress.add_task("", total=None)
        try:
            for point in todo:
                progress.update(overall, description=f"{workload.name}: batch {point.batch}")

                def show(line: str) -> None:
                    # `vllm bench serve` output, shown as text, never as markup.
                    progress.update(live, description=f"[dim]{escape(line[-110:])}[/dim]")

                outcome = run_point(target, workload, point, run_, show)
                outcomes.append(outcome)
                style = "green" if outcome.ok else "red"
                progress.console.print(f"batch {point.batch:>4}: [{style}]"
                                       f"{'ok' if outcome.ok else 'FAILED'}[/{style}] "
                                       f"{escape(outcome.detail)}", highlight=False)
                progress.advance(overall)
                if outcome.result is None and not server_alive(container, target.base_url):
                    missing = run_.missing()
                    raise BenchFailed(
                        f"The server died during batch {point.batch}. Kept "
                        f"{len(points) - len(missing)} finished point(s) in {run_.path}; "
                        f"missing: {missing}. Restart it (`invoke up`), then "
                        f"`invoke bench --resume {run_.run_id}`.\n"
                        f"--- container log (last lines) ---\n{log_tail(container)}")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            progress.remove_task(live)
    return SweepReport(run_, outcomes, run_.missing(), interrupted)


@dataclass(frozen=True, kw_only=True)
class BenchRequest:
    project: str
    workload: str = BenchOptions.workload
    batch: str | None = None  # "1,16,64" or "recipe"
    mode: str = BenchOptions.mode
    input_len: int | None = None
    output_len: int | None = None
    num_prompts: int | None = None
    request_rate: str = BenchOptions.request_rate
    label: str | None = None
    resume: str | None = None
    slo: tuple[str, ...] = ()  # `--goodput` bounds (workloads.parse_slo)
    dataset_path: str | None = None  # --workload visionarena: a local VisionArena folder
    hf_cache: Path | None = None  # where `invoke download --dataset` put it
    model: str | None = None  # a model group's member (default: the first)


@dataclass(frozen=True)
class BenchOutcome:
    series: Series
    report: SweepReport
    notes: tuple[str, ...]

    @property
    def path(self) -> Path:
        return self.report.run.path

    def check(self) -> None:
        """Raise when the sweep did not finish cleanly, after its table is shown."""
        run_id = self.report.run.run_id
        if self.report.interrupted:
            raise Interrupted(f"interrupted: missing batches {self.report.missing}; finish "
                              f"with `invoke bench --resume {run_id}`")
        failed = [o.batch for o in self.report.outcomes if o.result is None]
        failed_requests = [b for b, r in self.series.points.items()
                           if number_of(r, "failed") > 0]
        if failed or failed_requests:
            raise BenchFailed(f"points that failed: {failed}; points with failed requests: "
                              f"{failed_requests} (see {self.path}/failures; `invoke bench "
                              f"--resume {run_id}` runs the missing ones again)")


def parse_request(project: str, *, input_len: str | None, output_len: str | None,
                  num_prompts: str | None, request_rate: str | None, **options: Any
                  ) -> BenchRequest:
    """A request from `invoke bench`'s text options (None: not given, the table's default);
    numbers checked here."""
    request_rate = str(request_rate or BenchOptions.request_rate).strip()
    try:
        check_request_rate(request_rate)  # vLLM takes "inf" too; NaN and 0 are no rate
    except ValueError:
        raise UsageError(f"--request-rate {request_rate[:40]!r}: give requests per second "
                         "above 0, or inf.") from None
    prompts = number(num_prompts, int, "num-prompts", 1)
    if prompts is not None and prompts > 4 * MAX_BATCH:
        raise UsageError(f"--num-prompts must be at most {4 * MAX_BATCH:,}.")
    return BenchRequest(project=project, input_len=number(input_len, int, "input-len", 1),
                        output_len=number(output_len, int, "output-len", 1),
                        num_prompts=prompts, request_rate=request_rate,
                        **{k: v for k, v in options.items() if v is not None})


@dataclass(frozen=True)
class Sweep:
    """A new run's request, parsed once, before any server is looked up."""
    workload: Workload
    batches: tuple[int, ...]
    mode: SweepMode
    dataset: DatasetSource | None  # the VisionArena folder `--workload visionarena` reads


def parse_sweep(request: BenchRequest) -> Sweep:
    """The label, mode, workload, batch sizes and data set asked for, checked once."""
    if request.label is not None:
        plain_name(request.label, "Label")
    if request.mode not in ("prompts", "concurrency"):
        raise UsageError(f"--mode {request.mode[:40]!r}: choose prompts or concurrency.")
    mode: SweepMode = "prompts" if request.mode == "prompts" else "concurrency"
    wl = resolve_workload(request.workload, request.input_len, request.output_len)
    batches = parse_batches(request.batch or str(request.num_prompts or BenchOptions.batch))
    if request.workload != "visionarena":
        if request.dataset_path is not None:
            raise UsageError("--dataset-path is for --workload visionarena.")
        return Sweep(wl, batches, mode, None)
    return Sweep(wl, batches, mode, locate_visionarena(
        request.dataset_path, request.hf_cache or Path("/nonexistent")))


def _new_run(request: BenchRequest, sweep: Sweep, target: RunningServer, results_dir: Path,
             repo_root: Path, hw: Hardware, notes: list[str], container: Any = None) -> Run:
    wl = sweep.workload
    if wl.vision and not target.facts.vision:
        raise UsageError(f"--workload {wl.name} needs a vision model; {request.project} serves "
                         f"{target.served_model}.")
    if (source := sweep.dataset) is not None:
        wl = replace(wl, dataset_path=stage(source, container),
                     dataset_revision=source.revision)
        notes.append(f"VisionArena from {source.origin}: {source.folder} "
                     f"(revision {source.revision})")
    fitted_in, fitted_out, fitted = fit_lengths(wl.input_len, wl.output_len,
                                                target.max_model_len)
    if fitted:
        notes.append(f"{wl.input_len}+{wl.output_len} tokens exceed the served context "
                     f"({target.max_model_len}); using {fitted_in}/{fitted_out}.")
        wl = replace(wl, input_len=fitted_in, output_len=fitted_out)
    points = sweep_points(sweep.batches, sweep.mode,
                          request.num_prompts if request.batch else None, request.request_rate,
                          request.slo)
    return start_run(results_dir, target, wl, sweep.mode, points, HardwareMeta.of(hw),
                     read_run_facts(target, repo_root), request.label)


def run_bench(request: BenchRequest, results_dir: Path, repo_root: Path, hw: Hardware,
              console: Console) -> BenchOutcome:
    """Benchmark the project's running server; a new run, or the rest of `resume`."""
    sweep, resumed = None, None
    if request.resume:  # checked before any server is looked up
        resumed = open_run(results_dir, plain_name(request.resume, "Run id"))
        if resumed.meta.dropped:
            # Its points are what `vllm bench serve` would run with: never a guess.
            raise UsageError(f"Run {resumed.run_id} cannot be resumed: its meta.json "
                             f"{resumed.meta.dropped[0]}. Start a new run.")
    else:
        sweep = parse_sweep(request)
    container, target = running_server(request.project, request.model)
    notes: list[str] = []
    if resumed is not None:
        run_ = resumed
        if run_.meta.model != target.served_model or run_.meta.workload is None:
            raise UsageError(f"Run {run_.run_id} benchmarked {run_.meta.model[:100]!r}, but "
                             f"{request.project} serves {target.served_model}.")
        notes.append(f"resuming {run_.run_id}: missing batches {run_.missing()}")
    else:
        assert sweep is not None
        run_ = _new_run(request, sweep, target, results_dir, repo_root, hw, notes, container)
    assert run_.meta.workload is not None
    if target.prefix_caching:
        notes.append("warning: prefix caching is on; the recipes benchmark with `invoke up "
                     "--bench-mode` (--no-enable-prefix-caching).")
    for note in notes:
        console.print(note, highlight=False, markup=False)
    report = run_sweep(run_, target, run_.meta.workload, container, console)
    series = Series(run_.run_id, run_.meta, run_.points(), tuple(run_.missing()),
                    run_.metrics())
    return BenchOutcome(series, report, tuple(notes))
