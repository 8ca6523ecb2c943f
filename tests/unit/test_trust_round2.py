"""Issue #27, the trust boundary's second round: each line's input through the real CLI
(invoke's Program in this process, as tests/unit/test_cli_trust.py runs it) or the
library entry point the line names. Every test here failed on main at 3910b6e."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_cli_trust import one_line_error, run_task
from tests.unit.test_recipe_trust import (  # noqa: F401 (no_git_commit: autouse)
    checkout,
    env_for,
    glm46,
    no_git_commit,
    plant,
    synced,
)

ATTACKER = "attacker/backdoored-vllm:1"


def compose_text(tmp_path: Path, project: str = "glmkit") -> str:
    path = tmp_path / "compose" / f"{project}.yaml"
    return path.read_text() if path.exists() else ""


# --- H1: an image is code ------------------------------------------------------------------

def test_an_image_from_the_environment_must_be_official(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                            env={"GLMKIT_IMAGE": ATTACKER})
    one_line_error(code, err, "GLMKIT_IMAGE 'attacker/backdoored-vllm:1' is not one of vLLM's")
    assert not (tmp_path / "compose").exists()


def test_an_image_from_invoke_yaml_must_be_official(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    config = tmp_path / "invoke.yaml"
    config.write_text(f"glmkit:\n  image: {ATTACKER}\n")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "-f", str(config), "render",
                            "--no-check")
    one_line_error(code, err, "invoke.yaml's image 'attacker/backdoored-vllm:1'")
    assert not (tmp_path / "compose").exists()


@pytest.mark.parametrize("image", ["glmkit/vllm-cpu:evil", "glmkit/vllm-cpu:0.32.0-pwn"])
def test_a_glmkit_name_glmkit_does_not_build_needs_the_command_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        image: str) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                            env={"GLMKIT_IMAGE": image})
    one_line_error(code, err, "is not an image glmkit builds")


def test_the_command_line_may_name_any_image_and_the_note_says_so(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                              "--image", ATTACKER)
    assert code == 0, err
    assert f"image: {ATTACKER}" in compose_text(tmp_path)


@pytest.mark.parametrize("env", [{"GLMKIT_IMAGE": "glmkit/vllm-cpu:0.32.0"},
                                 {"GLMKIT_IMAGE": "vllm/vllm-openai:v0.33.0",
                                  "GLMKIT_VENDOR": "cuda", "GLMKIT_GPU": "h200",
                                  "GLMKIT_GPU_COUNT": "8", "GLMKIT_MODEL": "zai-org/GLM-4.6"}])
def test_official_and_glmkit_images_still_come_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        env: dict[str, str]) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", env=env)
    assert code == 0, err
    assert f"image: {env['GLMKIT_IMAGE']}" in compose_text(tmp_path)


@pytest.mark.parametrize("version", ["0.33.0 --x", "1;id", "\x1b]8;;http://x\x07a", "v" * 50])
def test_a_vllm_version_is_a_version(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     version: str) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check",
                            "--vendor", "cuda", "--gpu", "h200", "--vllm-version", version)
    one_line_error(code, err, "is not a vLLM version")
    assert "\x1b" not in err


# --- H2, M8: synced numbers --------------------------------------------------------------

BAD_NUMBERS: list[tuple[str, dict[str, Any]]] = [
    ("parameter_count", {"parameter_count": "1.2.3B"}),
    ("parameter_count", {"parameter_count": int("9" * 311)}),
    ("parameter_count", {"parameter_count": "9" * 311 + "B"}),
    ("active_parameters", {"active_parameters": "1e400B"}),
    ("precision", {"precision": "int4"}),
    ("vram_minimum_gb", {"vram_minimum_gb": 1.7e308}),
    ("model_id", {"model_id": "--tokenizer=attacker/GLM-4.6"}),
]


def _with_variant(change: dict[str, Any]) -> dict[str, Any]:
    data = glm46()
    first = next(iter(data["variants"]))
    data["variants"][first].update(change)
    return data


@pytest.mark.parametrize(("key", "change"), BAD_NUMBERS)
def test_a_bad_synced_value_is_refused_at_sync(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, key: str,
                                               change: dict[str, Any]) -> None:
    folder = checkout(tmp_path)
    (folder / "models/zai-org/GLM-4.6.yaml").write_text(yaml.safe_dump(_with_variant(change)))
    _, out, err = run_task(monkeypatch, capsys, tmp_path, "recipes", "sync", "--from",
                              str(folder), env=env_for(tmp_path))
    assert "Traceback" not in err + out
    assert "GLM-4.6.yaml" in out + err and key in out + err


@pytest.mark.parametrize(("key", "change"), BAD_NUMBERS)
@pytest.mark.parametrize("command", [["models"], ["render", "--no-check"],
                                     ["plan", "--gpu", "h200"],
                                     ["plan", "--gpu", "h200", "--model", "zai-org/GLM-4.6"],
                                     ["render", "--no-check", "--model", "zai-org/GLM-4.6",
                                      "--vendor", "cuda", "--gpu", "h200"]])
def test_a_bad_synced_value_is_skipped_at_load(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path, key: str,
                                               change: dict[str, Any],
                                               command: list[str]) -> None:
    env, _ = synced(tmp_path)
    plant(env, "models/zai-org/GLM-4.6.yaml", yaml.safe_dump(_with_variant(change)))
    code, out, err = run_task(monkeypatch, capsys, tmp_path, *command, env=env)
    assert code == 0, err
    assert "Traceback" not in err + out


def test_a_taxonomy_gpu_of_absurd_memory_is_dropped(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    path = Path(env["GLMKIT_HOME"]) / "recipes/taxonomy.yaml"
    data = yaml.safe_load(path.read_text())
    data["hardware_profiles"]["h200"]["vram_gb"] = 1.7e308
    plant(env, "taxonomy.yaml", yaml.safe_dump(data))
    code, out, err = run_task(monkeypatch, capsys, tmp_path, "plan", "--model",
                              "zai-org/GLM-4.6", "--vendor", "cuda", "--gpu", "h200", env=env)
    assert "Traceback" not in err + out
    assert code == 0 and "H200 (141 GB" in out, err


def test_the_schema_sizes_every_precision_sizing_knows() -> None:
    from glmkit.knowledge.recipe_schema import PRECISIONS
    from glmkit.knowledge.sizing import BYTES

    assert set(PRECISIONS) == set(BYTES)


@pytest.mark.parametrize(("text", "billions"), [("358B", 358.0), ("12.5B", 12.5),
                                               ("300K", 3e-4), (32, 32.0), ("1.5T", 1500.0),
                                               (None, 0.0), ("  7b ", 7.0)])
def test_counts_the_recipes_write_still_parse(text: Any, billions: float) -> None:
    from glmkit.knowledge.recipe_schema import parse_count

    assert parse_count(text) == pytest.approx(billions)
