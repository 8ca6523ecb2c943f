"""Least privilege and hostile input: what the compose file grants, what is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from glmkit.errors import UsageError
from glmkit.render.compose import compose_dict, dump, write_compose

from .helpers import plan_for


def test_privileged_is_an_explicit_opt_in() -> None:
    service = compose_dict(plan_for(vendor="rocm", model="zai-org/GLM-4.6",
                                    privileged=True))["services"]["vllm"]
    assert service["privileged"] is True
    assert "/dev/mem:/dev/mem" in service["devices"]
    assert "SYS_ADMIN" in service["cap_add"]
    assert "cap_drop" not in service
    default = compose_dict(plan_for(vendor="rocm", model="zai-org/GLM-4.6"))["services"]["vllm"]
    assert "privileged" not in default and default["cap_drop"] == ["ALL"]
    assert default["cap_add"] == ["SYS_PTRACE"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown the test folder")
def test_dac_override_only_for_a_writable_user_owned_cache(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    cache = tmp_path / "hf"
    cache.mkdir()
    env = {"GLMKIT_HOME": str(tmp_path), "HF_HOME": str(cache)}
    assert "DAC_OVERRIDE" not in plan_for(env=env, vendor="cuda",
                                          model="zai-org/GLM-4.6").cap_add
    os.chown(cache, 1000, 1000)
    monkeypatch.setattr(os, "getuid", lambda: 1000)  # the invoking user owns the cache
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-4.6")
    assert plan.cap_add == ("DAC_OVERRIDE",)
    assert any("DAC_OVERRIDE" in note for note in plan.notes)


def test_complete_download_mounts_the_cache_read_only_and_offline(tmp_path: Path) -> None:
    import json

    cache = tmp_path / "hf"
    snapshot = cache / "hub" / "models--zai-org--GLM-4.6" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (cache / "glmkit-complete").mkdir()
    (cache / "glmkit-complete" / "zai-org--GLM-4.6.json").write_text(
        json.dumps({"path": str(snapshot)}))
    plan = plan_for(env={"HF_HOME": str(cache), "GLMKIT_HOME": str(tmp_path)}, vendor="cuda",
                    model="zai-org/GLM-4.6")
    assert plan.environment["HF_HUB_OFFLINE"] == "1"
    assert plan.mounts[0].read_only
    assert "DAC_OVERRIDE" not in plan.cap_add


@pytest.mark.parametrize(("settings", "message"), [
    ({"port": 80}, "privileged port"),
    ({"port": 0}, "must be a whole number from 1 to 65535"),
    ({"image": "evil\nimage"}, "line break"),
    ({"host": "0.0.0.0; rm -rf /"}, "not an IP address"),
    ({"extra_args": ("--api-key", "sk-123")}, "would write a secret"),
    ({"extra_args": ("--api-key=sk-123",)}, "would write a secret"),
    ({"extra_args": ("--allowed-local-media-path", "/")}, "is set by glmkit"),
    ({"max_model_len": 70000}, "above glmkit/glm-tiny's context limit"),
    ({"model": "/no/such/model"}, "not a model folder"),
])
def test_validation_table(settings: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan_for(**settings)  # type: ignore[arg-type]


def test_shell_metacharacters_stay_one_argument() -> None:
    hostile = "$(touch /tmp/pwned); `id` | cat && echo 'x: y' # \"q\""
    plan = plan_for(extra_args=("--chat-template-content-format", hostile))
    command = yaml.safe_load(dump(compose_dict(plan)))["services"]["vllm"]["command"]
    # Compose reads `$$` as a literal `$`: the container gets `hostile` as written.
    assert command[-1] == hostile.replace("$", "$$")
    assert command[-2] == "--chat-template-content-format"
    assert "entrypoint" in compose_dict(plan)["services"]["vllm"]  # exec form, no shell


def test_stale_compose_file_is_regenerated(tmp_path: Path) -> None:
    # With `docker compose config`: tests/integration/test_compose_config.py.
    stale = tmp_path / "glmkit.yaml"
    stale.write_text("# written by glmkit 0.0.1\nservices:\n  vllm:\n    image: old\n"
                     "    privileged: true\n")
    write_compose(plan_for(), tmp_path, check=False)
    fresh = yaml.safe_load(stale.read_text())
    assert fresh["services"]["vllm"]["image"] == "glmkit/vllm-cpu:0.32.0"
    assert "privileged" not in fresh["services"]["vllm"]
