"""One node against two, on this machine: time to healthy and the same benchmark on each.

Starts the tiny model on the CPU vendor as one server, then as two simulated nodes
(tensor parallel 2 over vLLM's native multi-node runtime), runs the same `invoke bench`
sweep on each and prints both, with `invoke report --compare`.

    .venv/bin/python scripts/bench_nodes.py --batch 1,16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "glmkit-nodes-bench"


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"invoke {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def measure(nodes: int, args: argparse.Namespace) -> dict[str, object]:
    invoke("down", "--project", PROJECT)
    up = ["up", "--vendor", "cpu", "--project", PROJECT, "--port", str(args.port), "--no-smoke"]
    if nodes > 1:
        up += ["--nodes", str(nodes)]
    started = time.monotonic()
    invoke(*up)
    healthy = time.monotonic() - started
    label = f"{nodes}-node{'s' if nodes > 1 else ''}"
    bench = invoke("bench", "--project", PROJECT, "--workload", "custom", "--input-len",
                   str(args.input_len), "--output-len", str(args.output_len), "--batch",
                   args.batch, "--label", label)
    run_dir = Path(bench.stdout.split("saved ")[-1].split()[0])
    invoke("down", "--project", PROJECT)
    points = {p.stem: json.loads(p.read_text()) for p in sorted((run_dir / "points").glob("*"))}
    return {"nodes": nodes, "up_to_healthy_s": round(healthy, 1), "run": run_dir.name,
            "output_tok_s": {k: round(v["output_throughput"], 1) for k, v in points.items()},
            "mean_tpot_ms": {k: round(v["mean_tpot_ms"], 2) for k, v in points.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="1,16")
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--port", type=int, default=18095)
    args = parser.parse_args()
    one, two = measure(1, args), measure(2, args)
    out = ROOT / "results" / f"nodes-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps([one, two], indent=2) + "\n")
    print(json.dumps([one, two], indent=2))
    print(f"saved {out}")
    print(invoke("report", "--compare", "--runs", str(one["run"]), "--runs",
                 str(two["run"])).stdout)


if __name__ == "__main__":
    main()
