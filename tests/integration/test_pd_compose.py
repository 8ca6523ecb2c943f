"""pd_cluster files as `docker compose config` reads them: the tiny model on CPU, and
GLM-5.2-FP8 on 8 × H200 nodes, two simulated on this engine and two real machines."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from glmkit.render.compose import write_compose_data
from glmkit.render.pd_compose import pd_compose
from tests.integration.test_compose_config import compose_config
from tests.unit.helpers import NO_GPU
from tests.unit.test_pd import H200, pd

pytestmark = pytest.mark.usefixtures("compose_cli")


@pytest.mark.parametrize("settings", [
    {"vendor": "cpu"},
    {"vendor": "cuda", "model": "zai-org/GLM-5.2-FP8", "nodes": "2"},
    {"vendor": "cuda", "model": "zai-org/GLM-5.2-FP8",
     "nodes": "head=ssh://10.0.0.1,w1=ssh://10.0.0.2"},
], ids=["cpu-tiny", "glm52-h200-2-simulated", "glm52-h200-2-machines"])
def test_pd_files_validate(tmp_path: Path, settings: dict[str, str]) -> None:
    plan = pd(H200 if settings["vendor"] == "cuda" else NO_GPU, **settings)
    files = pd_compose(plan)
    services: dict[str, dict[str, object]] = {}
    for name, data in files.items():
        path = write_compose_data(data, tmp_path, name, check=True)
        services.update(compose_config(path)["services"])
    assert {"prefill", "decode", "router"} <= set(services)
    published = [s for s, svc in services.items() if svc.get("ports")]
    assert published in (["router"], [])  # [] on real machines: the host network


@pytest.mark.parametrize(("environment", "key"), [
    ({"OPENAI_API_KEY": "sk-the-users-own", "VLLM_API_KEY": "deployment-key"},
     "deployment-key"),
    ({"OPENAI_API_KEY": "sk-the-users-own"}, "")])
def test_the_router_forwards_with_the_deployments_key_whoever_runs_compose(
        tmp_path: Path, environment: dict[str, str], key: str) -> None:
    """`docker compose up` of the file by hand, from a shell holding the user's own
    OpenAI key: the router forwards the deployment's key (empty without one), never it."""
    (name, data), = pd_compose(pd(NO_GPU, vendor="cpu")).items()
    path = write_compose_data(data, tmp_path, name, check=True)
    done = subprocess.run(["docker", "compose", "-f", str(path), "config", "--format", "json"],
                          capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin", **environment})
    router = json.loads(done.stdout)["services"]["router"]
    assert router["environment"] == {"OPENAI_API_KEY": key}
