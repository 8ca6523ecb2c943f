"""The trust boundary (glmkit.policy): every flag, environment entry and host mount that
reaches a container passes one policy, decided on the name vLLM's parser acts on; one
escaping step writes the compose file. Pure: no Docker, files only under tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glmkit.errors import UsageError
from glmkit.host.settings import remainder_words, resolve_settings
from glmkit.policy import Source, admit_args, admit_env, admit_mount, merge_args, vllm_flags
from glmkit.render.compose import compose_dict, dump
from tests.unit.helpers import NO_GPU, SECRET, file_args, plan_here

# --- 2. arguments after `--` keep their words ---------------------------------------------------

def test_words_after_dashes_are_the_shells_words() -> None:
    config = '{"method": "mtp", "num_speculative_tokens": 1}'
    argv = ["invoke", "render", "--", "--speculative-config", config]
    assert remainder_words(f"--speculative-config {config}", argv) == (
        "--speculative-config", config)
    argv = ["invoke", "up", "--", "--chat-template-content-format", "it's"]
    assert remainder_words("--chat-template-content-format it's", argv)[-1] == "it's"


def test_unsplittable_text_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="do not split"):
        remainder_words("--x it's", ["python"])
    with pytest.raises(UsageError, match="extra_args"):
        resolve_settings({}, {}, {"GLMKIT_EXTRA_ARGS": "--x 'open"})


# --- 3. flags decided on vLLM's own spelling ----------------------------------------------------

def test_flags_are_written_in_their_canonical_spelling() -> None:
    admitted = admit_args(["-tp", "2", "--max_num_seqs=8", "--gpu_memory_utilization", "0.5",
                           "--speculative_config.num_speculative_tokens", "2"],
                          Source.COMMAND_LINE)
    assert list(admitted.args) == ["--tensor-parallel-size", "2", "--max-num-seqs=8",
                                   "--gpu-memory-utilization", "0.5",
                                   "--speculative-config.num_speculative_tokens", "2"]


def test_another_spelling_overrides_the_same_option() -> None:
    assert merge_args(["--max-model-len", "2048", "--enable-prefix-caching"],
                      ["--max-model-len=4096", "--no-enable-prefix-caching"]) == [
        "--max-model-len=4096", "--no-enable-prefix-caching"]


def test_a_value_that_starts_with_a_dash_stays_the_flags_value() -> None:
    admitted = admit_args(["--chat-template-content-format", "--port"], Source.COMMAND_LINE)
    assert admitted.args == ("--chat-template-content-format=--port",)


def test_flag_table_is_vllms_own() -> None:
    table = vllm_flags()
    assert table.lookup("-tp").name == "--tensor-parallel-size"  # type: ignore[union-attr]
    assert table.lookup("--enable-prefix-caching").dest == \
        table.lookup("--no-enable-prefix-caching").dest  # type: ignore[union-attr]
    assert len({o.name for o in table.options.values()}) > 150


# --- 4. code-loading flags and recipes ----------------------------------------------------------

CODE_WORDS = [["--trust-remote-code"], ["--tool-parser-plugin", "/x.py"],
              ["--middleware", "evil.Mw"], ["--logits-processors", "evil:P"],
              ["--worker-extension-cls", "evil.W"], ["--config", "/x.yaml"],
              ["--kv-transfer-config.kv_connector_module_path", "evil"],
              ["--kv_transfer_config", '{"kv_connector": "X", "kv_connector_module_path": "e"}']]


@pytest.mark.parametrize("words", CODE_WORDS)
def test_code_loading_flags_need_the_command_line(words: list[str]) -> None:
    assert admit_args(words, Source.COMMAND_LINE).args
    for source in (Source.INVOKE_YAML, Source.ENVIRONMENT):
        with pytest.raises(UsageError, match="loads code"):
            admit_args(words, source)
    left = admit_args(words, Source.SYNCED_RECIPE)
    assert left.args == () and "loads code" in left.notes[0]


def test_recipe_environment_is_an_allow_list_of_exact_names() -> None:
    hostile = {"LD_PRELOAD": "/x.so", "HF_ENDPOINT": "http://evil", "VLLM_PLUGINS": "evil",
               "VLLM_SERVER_DEV_MODE": "1", "VLLM_ALLOW_INSECURE_SERIALIZATION": "1",
               "VLLM_API_KEY": "x", "NCCL_NET_PLUGIN": "evil", "PYTHONPATH": "/x",
               "VLLM_ROCM_USE_AITER": "1"}
    admitted = admit_env(hostile, Source.SYNCED_RECIPE)
    assert admitted.args == ("VLLM_ROCM_USE_AITER=1",)
    assert len(admitted.notes) == len(hostile) - 1
    with pytest.raises(UsageError):
        admit_env({"X": "a\nb"}, Source.SYNCED_RECIPE)
    with pytest.raises(UsageError):
        admit_env({"BAD NAME": "1"}, Source.SYNCED_RECIPE)


# --- 7. host mounts ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/var/run", "/var", "/run", "/etc", "/proc/1", "~",
                                  "~/.ssh", "~/.aws/x", "/var/lib/docker", "/dev"])
def test_host_folders_that_are_not_the_kits_are_refused(path: str) -> None:
    with pytest.raises(UsageError, match="system folder"):
        admit_mount(path, "--hf-cache", Path.home())


def test_mount_checks_see_through_symlinks_and_relative_paths(tmp_path: Path) -> None:
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    with pytest.raises(UsageError):
        admit_mount(link, "--hf-cache", Path.home())
    assert admit_mount("rel/cache", "--hf-cache", Path.home(), tmp_path) == \
        tmp_path / "rel" / "cache"


# --- properties: any text through render ---------------------------------------------------------

TEXT = st.text(alphabet=st.sampled_from(list("$ {}()'\"\\=_-\n\t\x1b\x7fé中aZ09./:")),
               max_size=24)
FLAGS = st.sampled_from(["--chat-template-content-format", "--max-num-seqs", "--seed",
                         "--kv-cache-dtype", "--api-key", "--port", "--trust_remote_code",
                         "--speculative-config", "--speculative-config.method", "-tp",
                         "--middleware", "--max_model_len", "--api-ke", "--generation-config"])
ARGS = st.lists(st.one_of(FLAGS, TEXT), max_size=8)


ENV_TEXT = st.dictionaries(
    st.sampled_from(["GLMKIT_EXTRA_ARGS", "GLMKIT_PROJECT", "GLMKIT_MODEL", "GLMKIT_HOST",
                     "GLMKIT_MAX_MODEL_LEN", "GLMKIT_HF_CACHE"]), TEXT, max_size=3)


def renders_as_written_or_fails_with_one_line(env: dict[str, str], words: list[str],
                                              host_env: dict[str, str]) -> None:
    """The property: any argument list and GLMKIT_* values through render either give a
    one-line UsageError or a file with the user's words as given and no secret."""
    try:
        settings_, _ = resolve_settings({"extra_args": tuple(words)}, {}, {**env, **host_env})
        plan = plan_here(settings_, NO_GPU, {**env, **host_env})
    except UsageError as err:
        assert str(err).strip(), "an error says what happened"
        return
    text = dump(compose_dict(plan))
    assert SECRET not in text
    # Every word the user gave is in the command as given (canonical flag spelling aside).
    command = file_args(plan)
    admitted = merge_args(admit_args(words, Source.COMMAND_LINE).args)
    for word in admitted:
        assert word in command
    assert "--api-key" not in command


# 100 examples here; tests/integration/test_policy_examples.py runs 1000 of the same.
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=ARGS, host_env=ENV_TEXT)
def test_any_arguments_render_as_written_or_fail_with_one_line(
        env: dict[str, str], words: list[str], host_env: dict[str, str]) -> None:
    renders_as_written_or_fails_with_one_line(env, words, host_env)
