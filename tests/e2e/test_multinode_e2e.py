"""Two "nodes" (containers, one CPU core each) on one engine, serving the tiny model with
tensor parallel 2 over vLLM's native multi-node runtime; then a node dies."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .common import invoke, port, project, serving

pytestmark = pytest.mark.e2e

PROJECT = project("mn")
PORT = port("mn")


UP = ("--vendor", "cpu", "--nodes", "2", "--port", str(PORT))


@pytest.fixture(scope="module")
def cluster() -> Iterator[subprocess.CompletedProcess[str]]:
    with serving(PROJECT, *UP) as done:
        yield done


def test_two_nodes_serve_with_tensor_parallel(cluster: subprocess.CompletedProcess[str]
                                              ) -> None:
    assert "2 nodes, every node running and a real request served" in cluster.stdout
    assert "tool call (auto, not streamed, thinking off): ok" in cluster.stdout
    cmd = json.loads(subprocess.run(
        ["docker", "inspect", "--format", "{{json .Config.Cmd}}", f"{PROJECT}-worker1-1"],
        capture_output=True, text=True, check=True).stdout)
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2"
    assert cmd[cmd.index("--node-rank") + 1] == "1" and "--headless" in cmd
    reply = requests.post(f"http://127.0.0.1:{PORT}/v1/chat/completions", timeout=120, json={
        "model": "glmkit/glm-tiny", "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": "hello"}]})
    assert reply.status_code == 200


def test_bench_on_the_head(cluster: object) -> None:
    done = invoke("bench", "--project", PROJECT, "--workload", "custom", "--input-len", "32",
                  "--output-len", "16", "--batch", "16", "--label", "two-nodes", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = Path(done.stdout.split("saved ")[-1].split()[0])
    result = json.loads((run_dir / "points" / "batch-0016.json").read_text())
    assert result["completed"] == 16 and result["output_throughput"] > 0


def test_a_dead_worker_is_reported_and_up_fails_cleanly(cluster: object) -> None:
    subprocess.run(["docker", "kill", f"{PROJECT}-worker1-1"], check=True, capture_output=True)
    time.sleep(1)
    status = invoke("status", "--json", timeout=60)
    assert status.returncode == 0, status.stderr
    rows = {row["node"]: row for row in json.loads(status.stdout) if row["project"] == PROJECT}
    assert rows["worker1"]["state"].startswith("exited")
    assert rows["head"]["state"] == "running"
    assert rows["head"]["api"] == "DEGRADED: worker1 down"
    table = invoke("status", timeout=60)
    assert "DEGRADED" in table.stdout
    again = invoke("up", "--project", PROJECT, *UP, timeout=300)
    assert again.returncode == 3, again.stdout + again.stderr
    assert "is broken: worker1 (exit 137) stopped while head still run" in again.stderr
    assert "Traceback" not in again.stderr
