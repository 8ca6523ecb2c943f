"""Pointing an agent at the server: `--aliases` through the input policy into
`--served-model-name`, and the environment `up` and `status` print for Claude Code and
Codex (the key named, never shown)."""

from __future__ import annotations

import shlex

import pytest

from glmkit.errors import UsageError
from glmkit.policy import MAX_ALIASES, admit_aliases
from glmkit.run.agents import served_names, setups

from .helpers import plan_for


def test_aliases_follow_the_served_name() -> None:
    plan = plan_for(vendor="cpu", aliases="claude-sonnet-4-5, gpt-5-codex")
    args = list(plan.serve_args)
    i = args.index("--served-model-name")
    assert args[i + 1:i + 4] == ["glmkit/glm-tiny", "claude-sonnet-4-5", "gpt-5-codex"]
    assert args[i + 4].startswith("--")
    assert served_names(args) == ["glmkit/glm-tiny", "claude-sonnet-4-5", "gpt-5-codex"]
    assert plan.aliases == ("claude-sonnet-4-5", "gpt-5-codex")
    assert "--served-model-name" not in list(plan_for(vendor="cpu").serve_args)[
        args.index("--served-model-name") + 2:]


@pytest.mark.parametrize("value", [
    "", ",", "a,,b", "-x", "--api-key=sk", "a b", "a$b", "a;rm -rf /", "${HF_TOKEN}",
    "a\nb", "x" * 129, "é", "glmkit/glm-tiny", "a,a", ",".join(["m"] * (MAX_ALIASES + 1)),
])
def test_hostile_aliases_are_refused_in_one_line(value: str) -> None:
    with pytest.raises(UsageError) as err:
        admit_aliases(value, "glmkit/glm-tiny")
    assert "\n" not in str(err.value) and str(err.value).startswith("--aliases")


def test_hostile_aliases_fail_the_plan_too() -> None:
    with pytest.raises(UsageError, match="--aliases"):
        plan_for(vendor="cpu", aliases="--model=/etc")


def test_agent_environment_names_the_key_variable_never_its_value() -> None:
    claude, codex = setups("http://127.0.0.1:8000", ["glmkit/glm-tiny", "claude-x",
                                                     "gpt-y"], keyed=True, context=65536)
    env = dict(claude.env)
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8000"
    assert env["ANTHROPIC_AUTH_TOKEN"] == '"$VLLM_API_KEY"'  # Bearer: what vLLM reads
    assert "ANTHROPIC_API_KEY" not in env  # x-api-key: refused by vLLM 0.32
    assert env["ANTHROPIC_MODEL"] == env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] == "claude-x"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert int(env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"]) <= 65536 // 4
    assert dict(codex.env) == {"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1",
                               "OPENAI_API_KEY": '"$VLLM_API_KEY"'}
    words = shlex.split(codex.command)
    assert words[:2] == ["codex", "exec"] and words[words.index("-m") + 1] == "gpt-y"
    assert "model_provider=glmkit" in words
    # Every line is shell: `export NAME=VALUE` reads back as one word.
    for line in claude.lines()[:-1] + codex.lines()[:-1]:
        assert len(shlex.split(line)) == 2


def test_without_a_key_any_token_serves_and_the_served_name_is_used() -> None:
    claude, codex = setups("http://h:1", ["org/model"], keyed=False, context=2048)
    assert dict(claude.env)["ANTHROPIC_AUTH_TOKEN"] == "none"
    assert dict(claude.env)["ANTHROPIC_MODEL"] == "org/model"
    assert dict(claude.env)["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] == "512"
    assert "org/model" in codex.command
