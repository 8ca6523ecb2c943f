"""GSM8K's prompts and answer extraction (#34): glmkit's implementation held to
lm-eval's own verdicts (tests/unit/data/gsm8k_extraction.json, written by
scripts/lmeval_oracle.py from lm-eval's RegexFilter and exact_match) and to vLLM CI's
prompt format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from glmkit.measure.accuracy import (
    PROTOCOLS,
    Problem,
    chat_messages,
    completion_prompt,
    fewshot_block,
    flexible_extract,
    format_problem,
    judge,
    last_integer,
    protocol_named,
    strict_extract,
)

FIXTURE = Path(__file__).parent / "data" / "gsm8k_extraction.json"
CASES: list[dict[str, Any]] = json.loads(FIXTURE.read_text())["cases"]


def test_the_fixture_was_written_by_lm_eval_and_covers_its_quirks() -> None:
    data = json.loads(FIXTURE.read_text())
    assert data["lm_eval"] and data["task_version"] == 3.0
    notes = {c["note"] for c in CASES}
    for must in ("comma thousands", "dollar sign", "trailing period", "negative number",
                 "no number at all", "several ####, first wrong", "ellipsis at the end"):
        assert must in notes
    # Both verdicts vary across the cases: a fixture of all-true proves nothing.
    assert {c["strict_ok"] for c in CASES} == {True, False}
    assert {c["flexible_ok"] for c in CASES} == {True, False}


@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_extraction_matches_lm_eval(case: dict[str, Any]) -> None:
    verdict = judge(case["output"], Problem("q", case["answer"]))
    assert strict_extract(case["output"]) == case["strict"]
    assert flexible_extract(case["output"]) == case["flexible"]
    assert (verdict.strict_ok, verdict.flexible_ok) == (case["strict_ok"], case["flexible_ok"])
    assert last_integer(case["output"]) == case["last_integer"]


def test_vllm_ci_scorer_is_the_last_integer() -> None:
    problem = Problem("q", "So 1,000 + 250 = <<1000+250=1250>>1250.\n#### 1,250")
    assert judge(" it is 1,250 dollars", problem).last_integer_ok
    assert not judge(" it is 1,250.5 dollars", problem).last_integer_ok  # reads 5
    assert not judge(" no idea", problem).last_integer_ok


TRAIN = [Problem(f"q{i}?", f"a{i}\n#### {i}") for i in range(8)]


def test_the_completions_prompt_is_vllm_cis() -> None:
    block = fewshot_block(TRAIN, 5)
    assert block == "".join(f"Question: q{i}?\nAnswer: a{i}\n#### {i}\n\n" for i in range(5))
    prompt = completion_prompt(block, "How many?")
    assert prompt.endswith("\n\nQuestion: How many?\nAnswer:")
    assert prompt.startswith("Question: q0?\nAnswer: a0\n#### 0\n\nQuestion: q1?")
    assert fewshot_block(TRAIN, 0) == ""


def test_protocols_record_what_moves_the_score() -> None:
    default = PROTOCOLS["completions-5shot"].to_json()
    assert (default["shots"], default["max_tokens"], default["temperature"]) == (5, 256, 0.0)
    assert default["stop"] == ["Question", "Assistant:", "<|separator|>"]
    assert default["extraction"]["strict"] == r"#### (\-?[0-9\.\,]+)"
    chat = PROTOCOLS["chat-thinking"]
    assert chat.thinking and chat.endpoint == "chat"
    assert "####" in chat_messages(chat, "How many?")[0]["content"]


def test_an_unknown_protocol_is_one_line() -> None:
    from glmkit.errors import UsageError

    with pytest.raises(UsageError, match="choose completions-5shot or chat-thinking") as err:
        protocol_named("x" * 500)
    assert len(str(err.value)) < 120 and "\n" not in str(err.value)


def test_chat_format_failures() -> None:
    chat, completions = PROTOCOLS["chat-thinking"], PROTOCOLS["completions-5shot"]
    assert format_problem("<think>hm</think> #### 4", "", chat) == "think markup in content"
    assert format_problem("#### 4", "", chat) == "no reasoning returned apart from content"
    assert format_problem("#### 4", "2 + 2", chat) is None
    assert format_problem("<think>", "", completions) is None
