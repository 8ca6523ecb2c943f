"""Every file glmkit renders is one `docker compose config` accepts, read back as Compose
reads it: each catalog model × vendor, the multi-node layouts, a stale file rewritten,
and a file Compose refuses leaving nothing behind. (The unit layer checks the same data
against the Compose schema in-process: tests/unit/test_compose.py.)"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from glmkit.errors import UsageError
from glmkit.knowledge.catalog import CATALOG
from glmkit.plan.cluster import build_cluster, parse_nodes
from glmkit.render.cluster_compose import cluster_compose
from glmkit.render.compose import write_compose, write_compose_data
from tests.unit.helpers import plan_for, plan_for_largest_node
from tests.unit.test_cluster import BIG, REMOTE

pytestmark = pytest.mark.usefixtures("compose_cli")


# --- from tests/unit/test_compose.py ------------------------------------------------------

CASES = [(model_id, vendor) for model_id in CATALOG for vendor in ("cuda", "rocm", "cpu")]


def compose_config(path: Path) -> dict[str, Any]:
    done = subprocess.run(["docker", "compose", "-f", str(path), "config", "--format", "json"],
                          capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    data: dict[str, Any] = json.loads(done.stdout)
    return data


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory
            ) -> dict[tuple[str, str], Future[dict[str, Any]]]:
    """Every case's file as Compose reads it, read by `docker compose config` four at a
    time: a process start each was most of this module's time (23 s, now 9-15 s on two
    busy cores), and each file was also validated once more as it was written. Every file
    is still validated on its own; a case whose file Compose rejects fails in its test."""
    folder = tmp_path_factory.mktemp("every-model")
    paths = {}
    for n, case in enumerate(CASES):
        try:
            plan = plan_for_largest_node(*case)
        except (Exception, pytest.fail.Exception):  # its test calls it again and says why
            continue
        if plan is not None:
            paths[case] = write_compose(plan, folder / str(n), check=False)
    with ThreadPoolExecutor(max_workers=4) as pool:
        return {case: pool.submit(compose_config, path) for case, path in paths.items()}


@pytest.mark.parametrize(("model_id", "vendor"), CASES)
def test_every_model_and_vendor_validates(
        model_id: str, vendor: str, configs: dict[tuple[str, str], Future[dict[str, Any]]]
        ) -> None:
    plan = plan_for_largest_node(model_id, vendor)
    if plan is None:
        return  # refused where the checkpoint cannot run, for the right reason
    config = configs[(model_id, vendor)].result()  # `docker compose config` of its file
    service = config["services"]["vllm"]
    assert service["command"][:1] == [plan.serve_args[0]]
    # Least privilege, on the file as Compose reads it.
    assert service["ports"][0]["host_ip"] == "127.0.0.1"
    assert not service.get("privileged")
    assert service.get("network_mode") in (None, "bridge") and service.get("pid") is None
    assert service["cap_drop"] == ["ALL"]
    assert set(service.get("cap_add", [])) <= {"SYS_PTRACE"}
    assert "no-new-privileges:true" in service["security_opt"]
    assert not any("/dev/mem" in d["source"] for d in service.get("devices", []))
    assert not any("docker.sock" in v["source"] for v in service["volumes"])
    for volume in service["volumes"]:
        if volume["target"].startswith(("/models", "/media")):
            assert volume.get("read_only") is True
    assert "healthcheck" in service
    assert service["labels"]["io.glmkit.managed"] == "true"
    volume_targets = {v["target"] for v in service["volumes"]}
    assert {"/root/.cache/huggingface", "/root/.cache/vllm"} <= volume_targets
    if vendor == "rocm":
        devices = {d["source"] for d in service["devices"]}
        assert devices == {"/dev/kfd", "/dev/dri"}
        assert service["security_opt"] == ["no-new-privileges:true", "seccomp=unconfined"]
        assert service["ipc"] == "host"
        assert service["environment"]["SAFETENSORS_FAST_GPU"] == "1"
        assert "deploy" not in service
    elif vendor == "cuda":
        reservation = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert reservation["driver"] == "nvidia" and reservation["capabilities"] == ["gpu"]
        assert service["ipc"] == "host"
        assert "devices" not in service
    else:
        assert "deploy" not in service and "devices" not in service


def test_amd_glm46_rendered_as_in_the_issue(tmp_path: Path) -> None:
    plan = plan_for(vendor="amd", model="zai-org/GLM-4.6")
    service = compose_config(write_compose(plan, tmp_path))["services"]["vllm"]
    command = service["command"]
    assert command[command.index("--tensor-parallel-size") + 1] == "8"
    assert command.count("glm45") == 2
    assert service["group_add"] == ["44", "993"]
    assert "cap_add" in service and "SYS_ADMIN" not in service["cap_add"]


def test_rejected_file_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    plan = plan_for(project="keep")
    first = write_compose(plan, tmp_path)
    before = first.read_text()
    # A file compose refuses (here: a key its schema lacks) fails after the temp write.
    from glmkit.render import compose

    real = compose.compose_dict

    def broken(p):  # type: ignore[no-untyped-def]
        data = real(p)
        data["services"]["vllm"]["no_such_key"] = 1
        return data

    monkeypatch.setattr(compose, "compose_dict", broken)
    with pytest.raises(UsageError, match="docker compose rejected.*no_such_key"):
        write_compose(plan, tmp_path)
    assert first.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.yaml"]


# --- from tests/unit/test_cluster.py ------------------------------------------------------

@pytest.mark.parametrize("engine", ["mp", "dp", "ray"])
@pytest.mark.parametrize("model_id", BIG)
def test_multi_node_layouts_validate(model_id: str, engine: str, tmp_path: Path) -> None:
    base = plan_for(vendor="cuda", model=model_id, tp=1, nodes="2")
    cluster = build_cluster(base, parse_nodes(REMOTE), engine, tp=8,
                            pp=None, gpus_per_node=8)
    for name, data in cluster_compose(cluster).items():
        # Validated by the `docker compose config` that reads it back.
        path = write_compose_data(data, tmp_path, name, check=False)
        service = next(iter(compose_config(path)["services"].values()))
        assert service["network_mode"] == "host"


# --- from tests/unit/test_hardening.py ----------------------------------------------------

def test_stale_compose_file_is_regenerated(tmp_path: Path) -> None:
    stale = tmp_path / "glmkit.yaml"
    stale.write_text("# written by glmkit 0.0.1\nservices:\n  vllm:\n    image: old\n"
                     "    privileged: true\n")
    write_compose(plan_for(), tmp_path)
    fresh = yaml.safe_load(stale.read_text())
    assert fresh["services"]["vllm"]["image"] == "glmkit/vllm-cpu:0.32.0"
    assert "privileged" not in fresh["services"]["vllm"]
