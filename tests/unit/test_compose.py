"""Every catalog model × vendor renders compose data that the Compose schema accepts,
with least privilege; `docker compose config` itself: tests/integration/test_compose_config.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from glmkit.errors import CommandFailed, UsageError
from glmkit.knowledge.catalog import CATALOG
from glmkit.render.compose import compose_dict, dump, write_compose

from .compose_schema import check_compose, schema_errors
from .helpers import plan_for, plan_for_largest_node

CASES = [(model_id, vendor) for model_id in CATALOG for vendor in ("cuda", "rocm", "cpu")]


@pytest.mark.parametrize(("model_id", "vendor"), CASES)
def test_every_model_and_vendor_fits_the_compose_schema(model_id: str, vendor: str) -> None:
    plan = plan_for_largest_node(model_id, vendor)
    if plan is None:
        return  # refused where the checkpoint cannot run, for the right reason
    service = check_compose(compose_dict(plan))["services"]["vllm"]
    assert service["command"][:1] == [plan.serve_args[0]]
    # Least privilege, on the data the file is made from.
    assert service["ports"][0]["host_ip"] == "127.0.0.1"
    assert not service.get("privileged")
    assert service.get("network_mode") in (None, "bridge") and service.get("pid") is None
    assert service["cap_drop"] == ["ALL"]
    assert set(service.get("cap_add", [])) <= {"SYS_PTRACE"}
    assert "no-new-privileges:true" in service["security_opt"]
    assert not any("/dev/mem" in d for d in service.get("devices", []))
    assert not any("docker.sock" in v["source"] for v in service["volumes"])
    for volume in service["volumes"]:
        if volume["target"].startswith(("/models", "/media")):
            assert volume.get("read_only") is True
    assert "healthcheck" in service
    assert service["labels"]["io.glmkit.managed"] == "true"
    volume_targets = {v["target"] for v in service["volumes"]}
    assert {"/root/.cache/huggingface", "/root/.cache/vllm"} <= volume_targets
    if vendor == "rocm":
        assert {d.partition(":")[0] for d in service["devices"]} == {"/dev/kfd", "/dev/dri"}
        assert service["security_opt"] == ["no-new-privileges:true", "seccomp=unconfined"]
        assert service["ipc"] == "host"
        assert "deploy" not in service
    elif vendor == "cuda":
        reservation = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert reservation["driver"] == "nvidia" and reservation["capabilities"] == ["gpu"]
        assert service["ipc"] == "host"
        assert "devices" not in service
    else:
        assert "deploy" not in service and "devices" not in service


def test_amd_glm46_as_in_the_issue_fits_the_schema() -> None:
    plan = plan_for(vendor="amd", model="zai-org/GLM-4.6")
    service = check_compose(compose_dict(plan))["services"]["vllm"]
    command = service["command"]
    assert command[command.index("--tensor-parallel-size") + 1] == "8"
    assert command.count("glm45") == 2
    assert service["group_add"] == ["44", "993"]
    assert "cap_add" in service and "SYS_ADMIN" not in service["cap_add"]


def test_the_schema_refuses_what_compose_refuses() -> None:
    """The vendored schema is Compose's: a key it lacks, a wrong type, are named."""
    data = compose_dict(plan_for())
    data["services"]["vllm"]["no_such_key"] = 1
    data["services"]["vllm"]["privileged"] = ["yes"]
    problems = schema_errors(data)
    assert len(problems) == 2, problems
    assert "'no_such_key' does not match" in problems[0] + problems[1]
    assert any(p.startswith("services.vllm.privileged: ['yes'] is not of type") for p in problems)


def test_secrets_are_named_never_valued(tmp_path: Path) -> None:
    token = "hf_" + "x" * 34
    plan = plan_for(env={"HF_TOKEN": token, "GLMKIT_HOME": str(tmp_path)})
    text = dump(compose_dict(plan))
    assert token not in text
    env = compose_dict(plan)["services"]["vllm"]["environment"]
    assert "HF_TOKEN" in env and "VLLM_API_KEY" in env


def test_hostile_values_stay_inside_their_field() -> None:
    nasty = "--chat-template-content-format=x: y\n'\"#{}"
    plan = plan_for(extra_args=("--override-generation-config", nasty))
    loaded = yaml.safe_load(dump(compose_dict(plan)))
    # A value that starts with `-` is joined to its flag, so vLLM cannot read it as one.
    assert loaded["services"]["vllm"]["command"][-1] == f"--override-generation-config={nasty}"


def test_rejected_file_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """`docker compose config` refusing the staged file (faked here; the real refusal is
    in tests/integration/test_compose_config.py) leaves the earlier file as it was, no
    temp file, and no secret in Compose's environment."""
    from glmkit.render import compose

    plan = plan_for(project="keep")
    first = write_compose(plan, tmp_path, check=False)
    before = first.read_text()
    seen: list[tuple[list[str], dict[str, str]]] = []

    def compose_refuses(argv: list[str], *, env: dict[str, str], **_: Any) -> Any:
        seen.append((argv, env))
        raise CommandFailed(argv, 15, "", "services.vllm additional properties 'no_such_key' "
                            "not allowed")

    monkeypatch.setenv("HF_TOKEN", "hf_not_for_compose")
    monkeypatch.setattr(compose, "run", compose_refuses)
    with pytest.raises(UsageError, match="docker compose rejected.*no_such_key"):
        write_compose(plan, tmp_path)
    assert first.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.yaml"]
    (argv, env), = seen
    assert argv[:2] == ["docker", "compose"] and argv[-2:] == ["config", "--quiet"]
    assert "HF_TOKEN" not in env and "VLLM_API_KEY" not in env


# --- #35, Low: the compile cache is a project's own ------------------------------------------

PROJECT_NAME = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)


def _volume_names(project: str, vendor: str = "cpu") -> set[str]:
    data = compose_dict(plan_for(vendor=vendor, project=project))
    return {volume["name"] for volume in data["volumes"].values()}


@settings(max_examples=30, deadline=None)
@given(first=PROJECT_NAME, second=PROJECT_NAME)
def test_no_two_projects_share_a_volume(first: str, second: str) -> None:
    """One compile-cache volume per vendor was mounted read-write by every project: what
    a container of one project wrote there (torch.compile and inductor artifacts are code,
    loaded as they are) ran in every later server of every project. And `docker compose
    down -v` removes the volumes a file declares: a test's clean-up removed the user's."""
    assume(first != second)
    assert _volume_names(first).isdisjoint(_volume_names(second))


@pytest.mark.parametrize("vendor", ["cpu", "cuda", "rocm"])
def test_no_project_inherits_the_old_shared_cache(vendor: str) -> None:
    # The default project's volume is a new one too: the shared one may hold what any
    # project ran.
    (volume,) = compose_dict(plan_for(vendor=vendor))["volumes"].values()
    assert volume["name"] != f"glmkit-vllm-cache-{vendor}"
    assert volume["name"] == f"glmkit_vllm-cache-{vendor}"
    assert volume["labels"]["io.glmkit.project"] == "glmkit"
