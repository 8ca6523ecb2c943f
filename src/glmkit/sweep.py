"""Drive a sweep: every missing point of a run, one progress bar over the matrix and a
live line from the running point. Stops cleanly on Ctrl-C or a dead server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from glmkit.bench import Point, PointOutcome, Target, run_point
from glmkit.errors import BenchFailed
from glmkit.lifecycle import log_tail, probe
from glmkit.results import Run
from glmkit.workloads import Workload


def server_alive(container: Any, base_url: str) -> bool:
    # /health under benchmark load can be slow to answer: a longer wait than start-up's.
    return probe(container, base_url, timeout_s=5).healthy


@dataclass(frozen=True)
class SweepReport:
    run: Run
    outcomes: list[PointOutcome]
    missing: list[int]
    interrupted: bool


def run_sweep(run_: Run, target: Target, workload: Workload, container: Any,
              console: Console) -> SweepReport:
    points = [Point(**p) for p in run_.meta["points"]]
    todo = [p for p in points if p.batch in set(run_.missing())]
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
                    progress.update(live, description=f"[dim]{line[-110:]}[/dim]")

                outcome = run_point(target, workload, point, run_, show)
                outcomes.append(outcome)
                style = "green" if outcome.ok else "red"
                progress.console.print(f"batch {point.batch:>4}: [{style}]"
                                       f"{'ok' if outcome.ok else 'FAILED'}[/{style}] "
                                       f"{outcome.detail}", highlight=False)
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
