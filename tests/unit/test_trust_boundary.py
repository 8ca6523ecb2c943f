"""Issue #17's defects, each through the kit's public entry points of before the fix
(build_plan, compose_dict/dump, resolve_settings, the tasks in-process), so every test
here can run against the commit before the trust boundary and show the defect."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from glmkit.errors import UsageError
from glmkit.host.settings import resolve_settings
from glmkit.knowledge.recipes import BUILTIN_ROOT
from glmkit.render.compose import compose_dict, dump
from tests.unit.helpers import file_args, plan_from

ROOT = Path(__file__).resolve().parents[2]


# --- 1. `$` is escaped for Compose ------------------------------------------------------------

@pytest.mark.parametrize("value", ["${HF_TOKEN}", "$HF_TOKEN", "a$$b", "${VLLM_API_KEY:-x}"])
def test_dollars_reach_the_container_as_written(env: dict[str, str], value: str) -> None:
    plan = plan_from(env, extra_args=("--chat-template-content-format", value))
    text = dump(compose_dict(plan))
    assert value.replace("$", "$$") in text
    assert file_args(plan)[-2:] == ["--chat-template-content-format", value]


def test_every_string_of_the_file_is_escaped(env: dict[str, str], tmp_path: Path) -> None:
    cache = tmp_path / "cache$HOME"
    cache.mkdir()
    plan = plan_from(env, hf_cache=str(cache))
    data = yaml.safe_load(dump(compose_dict(plan)))
    assert data["services"]["vllm"]["volumes"][0]["source"] == str(cache).replace("$", "$$")



# --- 2. the words after `--`, through the real task ------------------------------------------

def _render(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str],
            *extra: str) -> tuple[int, list[str]]:
    """`invoke render -- EXTRA` in this process, as the shell hands the words over."""
    from invoke import Collection, Program

    import tasks

    for name, value in {**env, "GLMKIT_HARDWARE": str(ROOT / "tests" / "cpu-host.json")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(tasks, "COMPOSE_DIR", tmp_path / "compose")
    argv = ["invoke", "render", "--no-check", "--", *extra]
    monkeypatch.setattr(sys, "argv", argv)
    code = 0
    try:
        Program(namespace=Collection.from_module(tasks)).run(argv, exit=True)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    path = tmp_path / "compose" / "glmkit.yaml"
    if not path.exists():
        return code, []
    return code, yaml.safe_load(path.read_text())["services"]["vllm"]["command"]


def test_a_json_argument_stays_one_word(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        env: dict[str, str]) -> None:
    config = '{"method": "ngram", "num_speculative_tokens": 1}'
    code, command = _render(monkeypatch, tmp_path, env, "--speculative-config", config)
    assert code == 0 and command[-2:] == ["--speculative-config", config]


def test_an_apostrophe_is_no_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       env: dict[str, str]) -> None:
    code, command = _render(monkeypatch, tmp_path, env, "--chat-template-content-format",
                            "it's")
    assert code == 0 and command[-1] == "it's"


# --- 3. flags decided on vLLM's own spelling -------------------------------------------

@pytest.mark.parametrize("words", [
    ["--api_key=x"], ["--api-key", "x"], ["--hf_token", "x"], ["--api-ke", "x"],
    ["--allowed_local_media_path=/"], ["--allowed-local-media-path", "/"], ["--port=9000"],
    ["--host", "0.0.0.0"], ["--served_model_name", "x"], ["--model", "other/model"],
    ["--uds", "/tmp/s"], ["--max-model", "4"], ["--tensor-parallel", "2"],
    ["--no-such-flag"], ["stray-word"], ["--enable-auto-tool-choice=yes"], ["--max-num-seqs"],
])
def test_reserved_secret_prefix_and_unknown_flags_are_refused(env: dict[str, str],
                                                              words: list[str]) -> None:
    with pytest.raises(UsageError):
        plan_from(env, extra_args=tuple(words))




# --- 4. code-loading flags and recipes ----------------------------------------------

def test_invoke_yaml_and_environment_cannot_ask_for_code(env: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="invoke.yaml"):
        plan_from(env, config={"extra_args": ["--trust-remote-code"]})
    with pytest.raises(UsageError, match="GLMKIT_EXTRA_ARGS"):
        plan_from({**env, "GLMKIT_EXTRA_ARGS": "--middleware evil.M"})
    assert "--trust-remote-code" in plan_from(env, extra_args=("--trust-remote-code",)).serve_args



def _synced(env: dict[str, str], edit: dict[str, Any]) -> None:
    """A synced copy of the recipes whose GLM-4.6 recipe carries `edit` in `model:`."""
    root = Path(env["GLMKIT_HOME"]) / "recipes"
    (root / "models" / "zai-org").mkdir(parents=True)
    shutil.copytree(BUILTIN_ROOT / "strategies", root / "strategies")
    shutil.copy(BUILTIN_ROOT / "taxonomy.yaml", root / "taxonomy.yaml")
    data = yaml.safe_load((BUILTIN_ROOT / "models/zai-org/GLM-4.6.yaml").read_text())
    data["model"].update(edit)
    (root / "models/zai-org/GLM-4.6.yaml").write_text(yaml.safe_dump(data))
    (root / "SYNCED.json").write_text('{"origin": "test", "commit": null}')


def test_a_synced_recipe_is_data_not_an_instruction(env: dict[str, str]) -> None:
    _synced(env, {"base_args": ["--api-key", "stolen", "--port", "1",
                                "--allowed-local-media-path", "/", "--trust-remote-code",
                                "--tool-parser-plugin", "/x.py", "--otlp-traces-endpoint",
                                "http://evil", "--tool-call-parser", "glm45"],
                  "base_env": {"LD_PRELOAD": "/x.so", "HF_ENDPOINT": "http://evil",
                               "VLLM_USE_DEEP_GEMM": "1"}})
    plan = plan_from(env, vendor="cuda", model="zai-org/GLM-4.6", gpu="h200", gpu_count=8)
    args = " ".join(plan.serve_args)
    for bad in ("stolen", "--api-key", "--port 1 ", "--trust-remote-code", "/x.py", "evil",
                "--allowed-local-media-path"):
        assert bad not in args
    assert "LD_PRELOAD" not in plan.environment and "HF_ENDPOINT" not in plan.environment
    assert plan.environment["VLLM_USE_DEEP_GEMM"] == "1"
    assert any("loads code" in n for n in plan.notes)
    # The person at the terminal may still ask for the repository's code.
    plan = plan_from(env, vendor="cuda", model="zai-org/GLM-4.6", gpu="h200", gpu_count=8,
                 extra_args=("--trust-remote-code",))
    assert "--trust-remote-code" in plan.serve_args


def test_built_in_recipes_keep_trust_remote_code(env: dict[str, str]) -> None:
    plan = plan_from(env, vendor="cuda", model="zai-org/GLM-4.6", gpu="h200", gpu_count=8)
    assert "--trust-remote-code" in plan.serve_args
    assert "--allowed-local-media-path" not in plan.serve_args



# --- 7. host mounts ---------------------------------------------------------------------

def test_hf_cache_and_media_dir_pass_the_mount_policy(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="system folder"):
        plan_from(env, hf_cache="/")
    with pytest.raises(UsageError, match="system folder"):
        plan_from({**env, "HF_HOME": str(Path.home())})
    with pytest.raises(UsageError, match="system folder"):
        plan_from(env, vendor="cuda", model="zai-org/GLM-4.6V", gpu="h200", gpu_count=8,
              media_dir="/")
    os.chdir(tmp_path)
    plan = plan_from(env, hf_cache="relative-cache")
    assert plan.mounts[0].source == str(tmp_path / "relative-cache")


def test_ifname_is_an_interface_name(env: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="ifname"):
        plan_from(env, ifname="eth0${HF_TOKEN}")


# --- found by a hostile review of the first fix ---------------------------------------------

def test_a_synced_recipe_cannot_choose_the_image(env: dict[str, str]) -> None:
    _synced(env, {"docker_image": "evil.example/pwn:v0.33.0"})
    plan = plan_from(env, vendor="cuda", model="zai-org/GLM-4.6", gpu="h200", gpu_count=8)
    assert plan.image.ref.startswith("vllm/vllm-openai:")
    assert "not an official vLLM image" in " ".join(plan.notes)


def test_synced_strategies_are_synced_data_too(env: dict[str, str]) -> None:
    _synced(env, {})
    strategy = Path(env["GLMKIT_HOME"]) / "recipes" / "strategies" / "single_node_tp.yaml"
    data = yaml.safe_load(strategy.read_text())
    data["vllm_args"] = ["--otlp-traces-endpoint", "http://203.0.113.9:4317",
                         "--enable-log-requests", "--tokenizer", "attacker/tok"]
    strategy.write_text(yaml.safe_dump(data))
    plan = plan_from(env, vendor="cuda", model="zai-org/GLM-4.5", gpu="h200", gpu_count=8)
    for bad in ("--otlp-traces-endpoint", "--enable-log-requests", "attacker/tok",
                "--trust-remote-code"):
        assert bad not in plan.serve_args


@pytest.mark.parametrize("extra", [
    "--kv-transfer-config.kv_connector_extra_config "
    """'{"connectors": [{"kv_connector_module_path": "evil.mod"}]}'""",
    """--compilation-config '{"backend": "evil.fn"}'""",
    """-cc '{"inductor_passes": {"x": "evil.P"}}'""",
])
def test_nested_code_keys_need_the_command_line(env: dict[str, str], extra: str) -> None:
    with pytest.raises(UsageError, match="loads code"):
        plan_from({**env, "GLMKIT_EXTRA_ARGS": extra})


@pytest.mark.parametrize("config", [{"privileged": True}, {"image": "-x"},
                                    {"image": "evil image"}])
def test_invoke_yaml_cannot_make_the_container_root_or_pass_options(
        env: dict[str, str], config: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        plan_from(env, config=config)


@pytest.mark.parametrize("path", ["/var/lib", "/home", "/var/spool/cron", "/var/lib/kubelet"])
def test_folders_that_hold_other_secrets_are_not_mounted(env: dict[str, str],
                                                         path: str) -> None:
    with pytest.raises(UsageError, match="system folder"):
        plan_from(env, hf_cache=path)


def test_a_symlink_loop_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    with pytest.raises(UsageError):
        plan_from(env, hf_cache=str(tmp_path / "loop-a"))


@pytest.mark.parametrize("flag", ["--master-addr", "--node-rank", "--nnodes",
                                  "--data-parallel-address"])
def test_where_nodes_meet_is_glmkits(env: dict[str, str], flag: str) -> None:
    with pytest.raises(UsageError, match="set by glmkit"):
        plan_from(env, extra_args=(flag, "1"))


# --- found by the independent review ----------------------------------------------------------

@pytest.mark.parametrize("flags", [
    {"vendor": "cuda", "gpu": "h200", "gpu_count": 0}, {"gpu": "foo", "gpu_mem": -3.0},
    {"gpu": "foo", "gpu_mem": 1e9}, {"nodes": "2", "pp": 0}, {"nodes": "2", "pp": -2},
    {"nodes": "2", "gpus_per_node": 0},
])
def test_every_task_checks_the_same_ranges(env: dict[str, str], flags: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="must be"):
        resolve_settings(flags, {}, env)


@pytest.mark.parametrize("words", [["--api_key=sk-SECRET1"], ["--api-ke", "sk-SECRET1"],
                                   ["--api-key", "sk-SECRET1"], ["--hf_token", "sk-SECRET1"]])
def test_secret_flags_in_any_spelling_are_masked_for_display(words: list[str]) -> None:
    from glmkit.errors import mask_argv

    assert "sk-SECRET1" not in " ".join(mask_argv(words))


def test_the_tune_winner_file_is_a_valid_invoke_config(tmp_path: Path,
                                                       env: dict[str, str]) -> None:
    from glmkit.measure.tune import _winner_file

    settings, _ = resolve_settings({"extra_args": ("--max-num-seqs", "8"), "mtp": True}, {},
                                   env)
    config = yaml.safe_load(_winner_file(tmp_path, settings).read_text())["glmkit"]
    again, sources = resolve_settings({}, config, env)
    assert again.extra_args == ("--max-num-seqs", "8") and again.mtp
    assert sources["extra_args"] == "invoke.yaml"


def test_mtp_tokens_reach_either_joined_form() -> None:
    from glmkit.plan.serve import _with_mtp_tokens

    assert _with_mtp_tokens(["--speculative-config.num_speculative_tokens=1"], 3) == [
        "--speculative-config.num_speculative_tokens", "3"]
    joined = _with_mtp_tokens(['--speculative-config={"method": "mtp"}'], 2)
    assert joined[0] == "--speculative-config" and '"num_speculative_tokens":2' in joined[1]


@pytest.mark.parametrize("pin", [{}, {"nvidia": {}}])
def test_an_empty_image_mapping_in_a_synced_recipe_is_no_pin(env: dict[str, str],
                                                              pin: dict[str, Any]) -> None:
    """The schema took an empty docker_image mapping, and choosing the CUDA image then
    raised StopIteration (a traceback) on every command for the model."""
    _synced(env, {"docker_image": pin})
    plan = plan_from(env, vendor="cuda", model="zai-org/GLM-4.6", gpu="h200", gpu_count=8)
    assert plan.image.ref.startswith("vllm/vllm-openai:")
