"""Time to healthy (#18): where the seconds of `invoke up --vendor cpu` go, step by step.

Each run is a plain `invoke up` of the tiny model (its tool-call check included: that is
the headline number), timed on the host from launch to exit 0. The container's own log
(`docker logs --timestamps`, the same host clock) then splits the start-up into steps:

    container started → API server banner → engine core → worker → weights loaded
    → compile/warm-up done (loaded from the AOT cache, or compiled again?) → API up
    → first /health 200 → tool-call check done (last chat request) → `invoke up` exits

and the project is taken down again before the next run. The first run warms the
compile-cache volume; the second is "a new container with warm volumes".

    .venv/bin/python scripts/time_up.py --runs 2
    .venv/bin/python scripts/time_up.py --runs 1 --json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
INVOKE = str(ROOT / ".venv" / "bin" / "invoke")

# (step, pattern of the first log line that marks its end), in start-up order.
STEPS: list[tuple[str, re.Pattern[str]]] = [
    ("API server banner", re.compile(r"\(APIServer pid=\d+\)")),
    ("engine core spawned", re.compile(r"\(EngineCore pid=\d+\)")),
    ("worker spawned", re.compile(r"\((?:Vllm)?Worker(?:-\d+)? pid=\d+\)")),
    ("weights loaded", re.compile(r"Loading weights took|Model loading took")),
    ("warm-up started", re.compile(r"Warming up model")),
    ("compile + warm-up done", re.compile(r"Warming up done|init engine .* took")),
    ("API server up", re.compile(r"Application startup complete")),
    ("first /health 200", re.compile(r'"GET /health HTTP/1\.1" 200')),
]
CHAT = re.compile(r'"POST /v1/chat/completions HTTP/1\.1"')
CACHE_EVENTS = {
    "loaded from AOT cache": re.compile(r"Directly load AOT compilation"),
    "compiled again (load failure)": re.compile(r"Compiling model again due to a load failure"),
    "saved new AOT entry": re.compile(r"saved AOT compiled function"),
    "loaded compiled graphs": re.compile(r"Directly load the compiled graph"),
}
LOAD_FAILURE = re.compile(r"Compiling model again due to a load failure.*reason: (.*)")


@dataclass
class Run:
    index: int
    exit_code: int
    wall_s: float  # `invoke up` launch → exit
    image: str = ""
    container_wait_s: float | None = None  # launch → container started
    steps: list[tuple[str, float | None]] = field(default_factory=list)  # since container start
    cache: list[str] = field(default_factory=list)
    load_failure: str | None = None
    invoke_tail: str = ""


def parse_ts(stamp: str) -> float:
    """Docker's RFC 3339 with nanoseconds → epoch seconds."""
    stamp = stamp.rstrip("Z")
    whole, _, frac = stamp.partition(".")
    parsed = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc)
    return parsed.timestamp() + (float("0." + frac) if frac else 0.0)


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True,
                          text=True).stdout


def container_of(project: str) -> str | None:
    ids = docker("ps", "-aq", "--filter",
                 f"label=com.docker.compose.project={project}").split()
    return ids[0] if ids else None


def timed_log(cid: str) -> list[tuple[float, str]]:
    out = subprocess.run(["docker", "logs", "--timestamps", cid], capture_output=True,
                         text=True, check=True)
    lines = []
    for raw in (out.stdout + out.stderr).splitlines():
        stamp, _, text = raw.partition(" ")
        try:
            lines.append((parse_ts(stamp), text))
        except ValueError:
            continue
    return sorted(lines, key=lambda item: item[0])


def analyse(run: Run, cid: str, launched: float, exited: float,
            keep: Path | None = None) -> None:
    info = json.loads(docker("inspect", cid))[0]
    run.image = info["Image"][:19]
    started = parse_ts(info["State"]["StartedAt"])
    run.container_wait_s = started - launched
    log = timed_log(cid)
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        (keep / f"run{run.index}.log").write_text(
            "".join(f"{t:.3f} {text}\n" for t, text in log))
    for name, pattern in STEPS:
        hit = next((t for t, text in log if pattern.search(text)), None)
        run.steps.append((name, None if hit is None else hit - started))
    chats = [t for t, text in log if CHAT.search(text) and t <= exited + 1]
    run.steps.append(("tool-call check done", chats[-1] - started if chats else None))
    run.steps.append(("`invoke up` exited", exited - started))
    for label, pattern in CACHE_EVENTS.items():
        count = sum(1 for _, text in log if pattern.search(text))
        if count:
            run.cache.append(f"{label} ×{count}" if count > 1 else label)
    failure = next((m.group(1) for _, text in log if (m := LOAD_FAILURE.search(text))), None)
    run.load_failure = failure


def one_run(index: int, args: argparse.Namespace, console: Console) -> Run:
    argv = [INVOKE, "up", "--vendor", "cpu", "--project", args.project, "--port",
            str(args.port), "--restart", "no", *args.extra]
    console.print(f"[bold]run {index}[/bold]: {' '.join(argv[1:])}", highlight=False)
    launched = time.time()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    exited = time.time()
    run = Run(index, proc.returncode, exited - launched,
              invoke_tail="\n".join((proc.stdout + proc.stderr).splitlines()[-15:]))
    try:
        cid = container_of(args.project)
        if cid:
            analyse(run, cid, launched, exited, args.keep_logs)
    finally:
        subprocess.run([INVOKE, "down", "--project", args.project], cwd=ROOT,
                       capture_output=True, text=True)
    if proc.returncode:
        console.print(f"[red]invoke up exited {proc.returncode}[/red]\n{run.invoke_tail}",
                      highlight=False, markup=False)
    return run


def table(runs: list[Run]) -> Table:
    out = Table(title="invoke up --vendor cpu (tiny model): seconds since container start",
                show_lines=False)
    out.add_column("step")
    for run in runs:
        out.add_column(f"run {run.index}", justify="right")
        out.add_column("Δ", justify="right", style="dim")

    def cell(value: float | None, prev: float | None) -> tuple[str, str]:
        if value is None:
            return "-", ""
        return f"{value:.1f}", "" if prev is None else f"+{value - prev:.1f}"

    out.add_row("invoke up → container started",
                *[c for run in runs for c in (f"{run.container_wait_s or 0:.1f}", "")])
    names = [name for name, _ in runs[0].steps] if runs and runs[0].steps else []
    for i, name in enumerate(names):
        row: list[str] = []
        for run in runs:
            value = run.steps[i][1] if i < len(run.steps) else None
            prev = next((v for _, v in reversed(run.steps[:i]) if v is not None), 0.0)
            row += cell(value, prev)
        out.add_row(name, *row)
    out.add_row("invoke up wall time (launch → exit)",
                *[c for run in runs for c in (f"{run.wall_s:.1f}", f"exit {run.exit_code}")])
    out.add_row("compile cache", *[c for run in runs for c in (", ".join(run.cache) or "-", "")])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2,
                        help="starts to time (default 2: warms the compile cache, then a "
                             "new container with warm volumes)")
    parser.add_argument("--project", default="glmkit-speed")
    parser.add_argument("--port", type=int, default=18601)
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR",
                        help="write each run's container log (epoch-stamped) here")
    parser.add_argument("extra", nargs="*", help="more `invoke up` options, after --")
    args = parser.parse_args()
    console = Console(stderr=args.json, width=110)
    runs = [one_run(i + 1, args, console) for i in range(args.runs)]
    if args.json:
        print(json.dumps([asdict(run) for run in runs], indent=2))
    else:
        console.print(table(runs))
        for run in runs:
            if run.load_failure:
                console.print(f"run {run.index}: AOT cache load failure: {run.load_failure}",
                              highlight=False, markup=False)
    return 0 if all(run.exit_code == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
