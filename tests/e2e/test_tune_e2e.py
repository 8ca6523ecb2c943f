"""`invoke tune` on the real engine: two candidates of the tiny model, benchmarked under
an SLO in one tune, a winner written, and `invoke up` serving that winner."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .common import ROOT, invoke, port, project

pytestmark = pytest.mark.e2e

PROJECT = project("tune")
PORT = port("tune")


def test_tune_picks_a_winner_that_up_starts() -> None:
    before = set((ROOT / "results" / "tune").glob("*"))
    try:
        done = invoke("tune", "--vendor", "cpu", "--project", PROJECT, "--port", str(PORT),
                      "--enforce-eager", "--candidates", "2", "--batch", "4",
                      "--slo", "ttft-p99=60000,tpot-p99=2000", timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "goodput against the recipe default" in done.stdout
        (folder,) = set((ROOT / "results" / "tune").glob("*")) - before
        rows = json.loads((folder / "tune.json").read_text())["rows"]
        assert [r["candidate"] for r in rows] == ["recipe default", "max-num-seqs 8"]
        assert all(r["goodput"] and r["goodput"] > 0 and not r["error"] for r in rows)
        for row in rows:  # each candidate's run holds its goodput bound and metrics
            run = ROOT / "results" / row["run_id"]
            assert "--goodput" in json.loads((run / "points" / "batch-0004.json").read_text(
                ))["glmkit"]["argv"]
            assert (run / "metrics" / "batch-0004.json").is_file()
        winner = folder / "invoke.yaml"
        up = invoke("-f", str(winner), "up", "--project", PROJECT, "--port", str(PORT),
                    "--no-smoke", timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        cmd = subprocess.run(["docker", "inspect", "--format", "{{json .Config.Cmd}}",
                              f"{PROJECT}-vllm-1"], capture_output=True, text=True,
                             check=True).stdout
        best = max(rows, key=lambda r: r["goodput"])
        assert ("--max-num-seqs" in cmd) == (best["candidate"] == "max-num-seqs 8")
        assert "--enforce-eager" in cmd
    finally:
        invoke("down", "--project", PROJECT, timeout=120)
        Path(ROOT / "compose" / f"{PROJECT}.yaml").unlink(missing_ok=True)
