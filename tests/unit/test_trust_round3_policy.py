"""Issue #35, the trust boundary's third round, the policy's part: code-loading as a
combination (High 1), remote engines (High 2), mounts by ownership (Medium 7) and the
settings' Lows. Each input goes through the real CLI (invoke's Program in this process, as
tests/unit/test_cli_trust.py runs it) or the library entry point the issue names; every
test here failed on main at dedf86a."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.helpers import NO_GPU
from tests.unit.test_cli_trust import one_line_error, run_task

GLM_H200 = ("--vendor", "cuda", "--gpu", "h200", "--model", "zai-org/GLM-4.7-FP8")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def compose_text(tmp_path: Path, name: str = "glmkit.yaml") -> str:
    path = tmp_path / "compose" / name
    return path.read_text() if path.exists() else ""


def with_config(tmp_path: Path, text: str) -> tuple[str, str]:
    config = tmp_path / "invoke.yaml"
    config.write_text(text)
    return "-f", str(config)


def yaml_args(tmp_path: Path, *words: str) -> tuple[str, str]:
    import json

    return with_config(tmp_path, f"glmkit:\n  extra_args: {json.dumps(list(words))}\n")


# --- High 1: code-loading is a combination ----------------------------------------------

def test_the_issues_reproduction_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    config = yaml_args(tmp_path, "--code-revision", "refs/pr/1", "--hf-config-path",
                       "attacker/cfg")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "render", "--no-check",
                            *GLM_H200)
    one_line_error(code, err, "--code-revision 'refs/pr/1' from the invoke.yaml")
    assert not compose_text(tmp_path)


SELECTORS = [
    ["--tokenizer", "attacker/tok"],
    ["--hf-config-path", "attacker/cfg"],
    ["--generation-config", "attacker/gen"],
    ["--spec-model", "attacker/draft"],
    ["--speculative-config", '{"method": "eagle", "model": "attacker/draft", '
     '"num_speculative_tokens": 1}'],
    ["--speculative-config.model", "attacker/draft"],
    ["--hf-overrides", '{"auto_map": {"AutoConfig": "attacker/x--m.C"}}'],
    ["--hf-overrides.auto_map.AutoConfig", "attacker/x--m.C"],
    ["--revision", "main"],
    ["--code-revision", "refs/pr/1"],
    ["--tokenizer-revision", "v1.0"],
    ["--revision", COMMIT[:12]],
    ["--speculative-config.revision", "main"],
]


@pytest.mark.parametrize("words", SELECTORS, ids=lambda w: w[0])
@pytest.mark.parametrize("source", ["invoke.yaml", "environment"])
def test_what_chooses_the_trusted_code_needs_the_command_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        words: list[str], source: str) -> None:
    import shlex

    if source == "invoke.yaml":
        argv: tuple[str, ...] = (*yaml_args(tmp_path, *words), "render", "--no-check",
                                 *GLM_H200)
        env = {}
    else:
        argv, env = ("render", "--no-check", *GLM_H200), {
            "GLMKIT_EXTRA_ARGS": shlex.join(words)}
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *argv, env=env)
    one_line_error(code, err, "--trust-remote-code")
    assert not compose_text(tmp_path)


@pytest.mark.parametrize("words", [
    ["--revision", COMMIT], ["--code-revision", COMMIT], ["--tokenizer-revision", COMMIT],
    ["--generation-config", "vllm"], ["--no-trust-remote-code", "--tokenizer", "org/tok"]])
def test_a_pinned_commit_and_what_loads_no_code_pass_from_invoke_yaml(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        words: list[str]) -> None:
    config = yaml_args(tmp_path, *words)
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "render", "--no-check",
                            *GLM_H200)
    assert code == 0, err
    assert words[-1] in compose_text(tmp_path)


@pytest.mark.parametrize("words", SELECTORS[:3])
def test_the_command_line_may_choose(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     words: list[str]) -> None:
    code, _, err = run_task(monkeypatch, capsys, tmp_path, "render", "--no-check", *GLM_H200,
                            "--", *words)
    assert code == 0, err
    assert words[-1] in compose_text(tmp_path)


def test_without_remote_code_invoke_yaml_may_name_a_tokenizer(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    # A model whose command holds no --trust-remote-code: nothing of the repository runs.
    config = yaml_args(tmp_path, "--tokenizer", "org/tok", "--revision", "main")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "render", "--no-check",
                            "--vendor", "cpu", "--model", "Qwen/Qwen3-0.6B")
    assert code == 0, err


def test_export_k8s_refuses_it_too(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = yaml_args(tmp_path, "--hf-config-path", "attacker/cfg")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "export", "k8s", *GLM_H200)
    one_line_error(code, err, "--hf-config-path from the invoke.yaml")
    assert not list((tmp_path / "compose").glob("*.k8s.yaml"))


@pytest.mark.parametrize("layout", [("--nodes", "2"), ("--strategy", "pd_cluster")])
def test_clusters_and_pools_refuse_it_too(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          layout: tuple[str, str]) -> None:
    config = yaml_args(tmp_path, "--tokenizer", "attacker/tok")
    code, _, err = run_task(monkeypatch, capsys, tmp_path, *config, "render", "--no-check",
                            *GLM_H200, "--gpu-count", "8", *layout)
    one_line_error(code, err, "--tokenizer from the invoke.yaml")


def test_a_pool_block_with_remote_code_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool block of the recipe adds flags the one server lacks: its
    --trust-remote-code combines with invoke.yaml's tokenizer as well."""
    from glmkit.errors import UsageError
    from glmkit.host.facts import read_host_facts
    from glmkit.host.settings import Settings
    from glmkit.knowledge.recipes import load_book
    from glmkit.plan.pd import plan_pd
    from tests.unit.test_pd import ENV

    book = load_book(ENV)
    strategy = book.strategies["pd_cluster"]
    decode = strategy.decode
    monkeypatch.setitem(book.strategies, "pd_cluster", strategy.model_copy(update={
        "decode": decode.model_copy(update={"vllm_args": [*(decode.vllm_args or ()),
                                                          "--trust-remote-code"]})}))
    for source, refused in (("invoke.yaml", True), ("flag", False)):
        s = Settings(strategy="pd_cluster", project="pdt", vendor="cpu",
                     extra_args=("--tokenizer", "x/tok"), extra_args_source=source)
        if refused:
            with pytest.raises(UsageError, match="--tokenizer from the invoke.yaml"):
                plan_pd(s, read_host_facts(s, ENV, NO_GPU), book)
        else:
            plan = plan_pd(s, read_host_facts(s, ENV, NO_GPU), book)
            assert "--trust-remote-code" in plan.pool("decode")[0].args
