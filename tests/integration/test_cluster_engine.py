"""A deployment's part states read from the engine itself, whatever Compose's version prints."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

# --- from tests/unit/test_deploy.py -------------------------------------------------------

def test_node_states_do_not_depend_on_composes_output_format(
        monkeypatch: pytest.MonkeyPatch, compose_cli: None) -> None:
    """Compose before 2.21 prints `ps --format json` as one array, later as JSON lines:
    node states come from the engine itself, so both read the same."""
    from glmkit import process
    from glmkit.plan.cluster import build_cluster, parse_nodes
    from glmkit.run import lifecycle
    from tests.unit.helpers import plan_for

    project = "glmkit-ps-format"
    base = plan_for(vendor="cpu", project=project, nodes="2")
    cluster = build_cluster(base, parse_nodes("2"), "mp", tp=None, pp=None, gpus_per_node=1)
    real_run = process.run

    def old_compose(argv: list[str], **kwargs: Any) -> Any:
        done = real_run(argv, **kwargs)
        if argv[:2] == ["docker", "compose"] and "ps" in argv:  # the pre-2.21 array
            items = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
            done = subprocess.CompletedProcess(argv, 0, json.dumps(items), done.stderr)
        return done

    for module in (process, lifecycle):
        monkeypatch.setattr(module, "run", old_compose, raising=False)
    image = "debian:bookworm-slim"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip(f"{image} is not on this engine (scripts/setup.sh makes it)")
    try:
        for node in ("head", "worker1"):
            subprocess.run(["docker", "run", "-d", "--name", f"{project}-{node}-1",
                            "--label", f"com.docker.compose.project={project}",
                            "--label", f"com.docker.compose.service={node}", image,
                            "sleep", "60"], check=True, capture_output=True)
        states = lifecycle.part_states(cluster)
        assert [(s.part.service, s.state) for s in states] == [("head", "running"),
                                                               ("worker1", "running")]
    finally:
        for node in ("head", "worker1"):
            subprocess.run(["docker", "rm", "-f", f"{project}-{node}-1"], capture_output=True,
                           check=False)
