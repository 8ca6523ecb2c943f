"""Measure `invoke report` over ten worst-case runs: its peak memory and its time.

Issue #35 bounds what a report may cost: a few MiB per points/metrics file, at most 1,000
points per run, and a report over ten such runs under 500 MB RSS and 30 s. This script
builds ten runs in a temporary results folder, each as large as those limits let a run
be, plus the issue's own cases, then runs `invoke report` on them in a fresh Python
process and reads that process's peak RSS (resource.getrusage) and wall time.

Each of the ten runs holds:
  meta.json           1,000 points with goodput bounds, padded to just under 1 MiB
  points/             1,000 files of ~10 KiB: 206 numbers and a nested list each
                      (batch 1 is the issue's 16 MiB point file instead)
  metrics/            1,000 files of ~19 KiB of 110 samples (batch 2: ~1.9 MiB, just under
                      the 2 MiB a file may have)
and beside them an 11th folder whose 1.5 MB meta.json lists 200,000 batches (the issue's
other case). A run's files together pass the 16 MiB a report reads of one run
(glmkit.measure.results.RUN_READ_BYTES), so that note shows too.

    python scripts/report_bounds.py [--keep] [--src DIR] [--timeout S]

--src runs another checkout's library (e.g. an older commit unpacked with `git archive`)
against the same runs, to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS, POINTS = 10, 1000
LIMIT_RSS_MB, LIMIT_SECONDS = 500, 30


def _point(batch: int) -> dict[str, object]:
    result: dict[str, object] = {
        "completed": batch, "failed": 0, "output_throughput": 10.0 * batch,
        "mean_ttft_ms": 50.0, "mean_tpot_ms": 5.0, "request_throughput": 1.5}
    result.update({f"p{i}_latency_ms": 1000.0 + i + batch for i in range(200)})
    result["itls"] = [[0.01] * 40] * 20
    return result


def _samples(count: int, start: float = 0.0) -> list[dict[str, float]]:
    return [{"t": start + i * 0.25, "kv_cache_usage": 0.5, "running": 4.0, "waiting": 1.0,
             "requests_finished": float(i), "prefix_queries": 0.0, "generation_tokens": i * 9.0,
             "preemptions": 0.0} for i in range(count)]


def build(results: Path) -> tuple[int, int]:
    """Ten worst-case runs and the 200,000-batch meta.json: (files, bytes) written."""
    files = size = 0

    def write(path: Path, data: object) -> None:
        nonlocal files, size
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(data)
        path.write_text(text)
        files, size = files + 1, size + len(text)

    points = [{"batch": b, "num_prompts": b, "max_concurrency": None, "request_rate": "inf",
               "goodput": ["ttft:2000", "tpot:50"]} for b in range(1, POINTS + 1)]
    small_metrics = {"summary": {"kv_cache_usage_peak": 50.0, "running_peak": 4.0},
                     "samples": _samples(110)}
    for r in range(RUNS):
        run = results / f"20260101-0000{r:02d}-worst"
        meta = {"version": 2, "label": f"=HYPERLINK(\"x\",\"{r}\")", "model": "glm",
                "vendor": "cpu", "workload": {"name": "balanced"}, "mode": "prompts",
                "batches": list(range(1, POINTS + 1)), "points": points}
        pad = 1024 * 1024 - len(json.dumps(meta)) - 200
        write(run / "meta.json", {**meta, "provenance": {"pad": "x" * pad}})
        for b in range(1, POINTS + 1):
            write(run / "points" / f"batch-{b:04d}.json",
                  {"pad": "y" * (16 * 1024 * 1024)} if b == 1 else _point(b))
            write(run / "metrics" / f"batch-{b:04d}.json",
                  {**small_metrics, "samples": _samples(11_000)} if b == 2 else small_metrics)
    huge = results / "20260101-999999-200k-batches"
    write(huge / "meta.json", {"label": "huge", "model": "glm", "vendor": "cpu",
                               "workload": "balanced", "batches": list(range(1, 200_001))})
    return files, size


# The child: `invoke report` in this process, on the temporary results folder.
CHILD = """
import sys
sys.path.insert(0, {src!r})
sys.path.insert(0, {root!r})
import glmkit  # from --src: tasks.py puts this checkout's src/ first when imported
from pathlib import Path
from invoke import Collection, Program
import tasks
tasks.RESULTS_DIR = Path({results!r})
Program(namespace=Collection.from_module(tasks)).run(
    ["invoke", "report", "--out", {out!r}], exit=True)
"""


def measure(results: Path, out: Path, src: Path, timeout: float
            ) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in MB, exit code, last lines) of `invoke report` in a child;
    a child past `timeout` is killed (exit code -9)."""
    code = CHILD.format(src=str(src), root=str(ROOT), results=str(results), out=str(out))
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(src)}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, check=False, timeout=timeout)
        output, returncode = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as err:
        stdout = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) \
            else err.stdout or ""
        output, returncode = f"{stdout}\nkilled after {timeout:g} s", -9
    seconds = time.monotonic() - started
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    lines = output.strip().splitlines()
    tail = "\n".join(line[:160] for line in [*lines[:8], "…", *lines[-6:]])
    return seconds, rss_mb, returncode, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the library to run (default: this checkout's src/)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds before the report is killed (default 600)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="glmkit-report-bounds-"))
    try:
        files, size = build(tmp / "results")
        print(f"built {RUNS} runs + 1 in {tmp}: {files:,} files, {size / 2**20:,.0f} MiB")
        seconds, rss_mb, code, tail = measure(tmp / "results", tmp / "report", args.src,
                                              args.timeout)
        print(tail)
        print(f"invoke report: exit {code}, {seconds:.1f} s, peak RSS {rss_mb:.0f} MB "
              f"(bounds: {LIMIT_SECONDS} s, {LIMIT_RSS_MB} MB; {os.cpu_count()} CPUs)")
        ok = code == 0 and seconds < LIMIT_SECONDS and rss_mb < LIMIT_RSS_MB
        print("within bounds" if ok else "OUT OF BOUNDS")
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
