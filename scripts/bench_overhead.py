"""What glmkit costs over doing it by hand, measured side by side on one machine.

(a) start-up: `invoke up` (render, validate, compose up, wait for /health) against the
    same image, flags and volumes started with a plain `docker run`, both timed until
    /health answers 200;
(b) benchmarking: `invoke bench` against `docker exec ... vllm bench serve` with the
    same arguments, on the same running server; output tokens/s compared.

Rounds alternate A, B, A, B … after one warm-up round of each (so both use a warm
compile cache), and the medians are compared. Targets: (a) ≤ 1.05, (b) ≥ 0.98.

    .venv/bin/python scripts/bench_overhead.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from glmkit.endpoints import CONTAINER_PORT  # noqa: E402
from glmkit.host import hardware  # noqa: E402
from glmkit.host.facts import read_host_facts  # noqa: E402
from glmkit.host.settings import Settings  # noqa: E402
from glmkit.knowledge.recipes import load_book  # noqa: E402
from glmkit.measure.point import bench_argv  # noqa: E402
from glmkit.measure.workloads import Point, resolve_workload  # noqa: E402
from glmkit.plan.serve import build_plan  # noqa: E402
from glmkit.run.engine import client, find_container  # noqa: E402
from glmkit.run.server import server_from_container  # noqa: E402

PROJECT = "glmkit-overhead"
HAND = "glmkit-overhead-by-hand"


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return sh(sys.executable, "-m", "invoke", *args)


def wait_health(port: int, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no /health on port {port} after {timeout} s")


def up_with_glmkit(port: int, eager: bool) -> float:
    invoke("down", "--project", PROJECT)
    args = ["up", "--vendor", "cpu", "--project", PROJECT, "--port", str(port), "--no-smoke"]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "invoke", *args,
                           *(["--enforce-eager"] if eager else [])],
                          capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"invoke up failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def up_by_hand(port: int, eager: bool) -> float:
    """The same image, command, environment and volumes, as one `docker run`."""
    sh("docker", "rm", "-f", HAND, check=False)
    settings = Settings(vendor="cpu", project=PROJECT, port=port, enforce_eager=eager)
    facts = read_host_facts(settings, os.environ, hardware.detect())
    plan = build_plan(settings, facts, load_book(os.environ))
    argv = ["docker", "run", "-d", "--name", HAND, "--entrypoint", "vllm",
            "-p", f"127.0.0.1:{port}:{CONTAINER_PORT}"]
    if plan.shm_size:
        argv += ["--shm-size", plan.shm_size]
    for key, value in plan.environment.items():
        argv += ["-e", f"{key}={value}"]
    for mount in plan.mounts:
        argv += ["-v", f"{mount.source}:{mount.target}{':ro' if mount.read_only else ''}"]
    argv += [plan.image.ref, "serve", *plan.serve_args]
    started = time.monotonic()
    sh(*argv)
    wait_health(port)
    return time.monotonic() - started


def bench_once(use_glmkit: bool, args: argparse.Namespace) -> float:
    container = find_container(client(), PROJECT)
    target = server_from_container(container)
    workload = resolve_workload("custom", args.input_len, args.output_len)
    point = Point(batch=args.prompts, num_prompts=args.prompts, max_concurrency=None,
                  request_rate="inf")
    if use_glmkit:
        done = invoke("bench", "--project", PROJECT, "--workload", "custom",
                      "--input-len", str(args.input_len), "--output-len", str(args.output_len),
                      "--batch", str(args.prompts), "--request-rate", "inf",
                      "--label", "overhead")
        run_dir = Path(done.stdout.split("saved ")[-1].split()[0])
        result = json.loads((run_dir / "points" / f"batch-{args.prompts:04d}.json").read_text())
        return float(result["output_throughput"])
    argv = bench_argv(target, workload, point, "by-hand.json")
    sh("docker", "exec", target.container, *argv)
    out = sh("docker", "exec", target.container, "cat", "/tmp/glmkit-bench/by-hand.json").stdout
    return float(json.loads(out)["output_throughput"])


def alternate(rounds: int, a, b) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    a(), b()  # warm-up, not counted
    xs, ys = [], []
    for _ in range(rounds):
        xs.append(a())
        ys.append(b())
    return xs, ys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--input-len", type=int, default=256)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--enforce-eager", action="store_true")
    args = parser.parse_args()

    try:
        def glmkit_up() -> float:
            sh("docker", "rm", "-f", HAND, check=False)
            return up_with_glmkit(args.port, args.enforce_eager)

        def hand_up() -> float:
            invoke("down", "--project", PROJECT)
            return up_by_hand(args.port, args.enforce_eager)

        up_a, up_b = alternate(args.rounds, glmkit_up, hand_up)
        sh("docker", "rm", "-f", HAND, check=False)
        up_with_glmkit(args.port, args.enforce_eager)
        bench_a, bench_b = alternate(args.rounds, lambda: bench_once(True, args),
                                     lambda: bench_once(False, args))
    finally:
        invoke("down", "--project", PROJECT)
        sh("docker", "rm", "-f", HAND, check=False)

    up_ratio = statistics.median(up_a) / statistics.median(up_b)
    bench_ratio = statistics.median(bench_a) / statistics.median(bench_b)
    report = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rounds": args.rounds,
        "startup_s": {"invoke_up": up_a, "docker_run": up_b},
        "output_tok_s": {"invoke_bench": bench_a, "vllm_bench_by_hand": bench_b},
        "startup_ratio": round(up_ratio, 4), "bench_ratio": round(bench_ratio, 4),
        "targets": {"startup_ratio_max": 1.05, "bench_ratio_min": 0.98},
    }
    out = ROOT / "results" / f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"start-up to healthy (s): invoke up {up_a}  docker run {up_b}")
    print(f"output tok/s: invoke bench {bench_a}  by hand {bench_b}")
    print(f"(a) invoke up / docker run, medians:        {up_ratio:.3f}  (target <= 1.05)")
    print(f"(b) invoke bench / vllm bench by hand:      {bench_ratio:.3f}  (target >= 0.98)")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
