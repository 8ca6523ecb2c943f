"""GSM8K as the published accuracy gates run it: the prompts, the answer extraction and
the scoring, as plain functions over text (#34).

Why the kit implements the protocol instead of running lm-evaluation-harness: lm-eval
needs torch, datasets and transformers on the host (the host side stays without torch),
and run from a container it would change what the user's server runs next to, or need
the network at eval time. The protocol itself is a few lines that the published numbers
name exactly, and those lines are here:

* the prompt is vLLM CI's (`tests/evals/gsm8k/gsm8k_eval.py`): the first five train
  examples as "Question: {q}\\nAnswer: {a}", each followed by a blank line, then
  "Question: {q}\\nAnswer:"; temperature 0, at most 256 new tokens, its stop words;
* the answer is read three ways: lm-eval's `strict-match` (the first "#### N") and
  `flexible-extract` (the last number-like run of characters) from its gsm8k.yaml
  (version 3.0), both scored by lm-eval's `exact_match` with its `regexes_to_ignore` and
  `ignore_case`; and vLLM CI's own scorer (the last integer once commas are removed),
  which is what its 0.84 threshold for GLM-4.7-Flash is measured in.

tests/unit/data/gsm8k_extraction.json holds model outputs with the verdicts lm-eval's own
filter and metric code gives them (scripts/lmeval_oracle.py wrote it by running
lm_eval.filters.extraction.RegexFilter and lm_eval.api.metrics.exact_match_hf_evaluate);
tests/unit/test_accuracy.py holds this module to every one of them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

Endpoint = Literal["completions", "chat"]
Metric = Literal["strict", "flexible", "last-integer"]
METRICS: tuple[Metric, ...] = ("strict", "flexible", "last-integer")

# lm-eval's gsm8k.yaml (version 3.0): the filters and exact_match's regexes_to_ignore.
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")
INVALID = "[invalid]"  # lm-eval's fallback when a filter finds nothing
# vLLM CI's and SGLang's scorer: the last run of digits once commas are removed.
_DIGITS = re.compile(r"\d+")

# What the chat protocol asks for, so strict-match can read the answer.
CHAT_INSTRUCTION = ("Solve the problem step by step. End your reply with the final answer "
                    "alone on the last line, written as \"#### N\" where N is a number.")


@dataclass(frozen=True)
class Problem:
    """One GSM8K item: the question and the reference answer, whose last line is
    "#### N"."""

    question: str
    answer: str

    @property
    def target(self) -> str:
        """The number after the reference's last "#### ", as lm-eval compares it."""
        return normalize(self.answer)


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """How the questions are asked and the answers read: everything that moves the score,
    recorded with every run."""

    name: str
    endpoint: Endpoint
    shots: int
    max_tokens: int
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    thinking: bool = False  # chat_template_kwargs enable_thinking
    instruction: str = ""  # appended to the question (chat)
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop),
                "extraction": {"strict": STRICT.pattern, "flexible": FLEXIBLE.pattern,
                               "ignore": list(IGNORE), "ignore_case": True,
                               "last-integer": "last \\d+ after removing ','"}}


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    # vLLM CI's tests/evals/gsm8k/gsm8k_eval.py, which its thresholds are measured with.
    Protocol(name="completions-5shot", endpoint="completions", shots=5, max_tokens=256,
             stop=("Question", "Assistant:", "<|separator|>"), seed=42,
             description="5-shot (first five train examples), /v1/completions, "
                         "temperature 0, 256 tokens: vLLM CI's tests/evals/gsm8k"),
    # The chat template and the reasoning parser in the path: what catches a template and
    # parser that disagree (vllm#54744). No published reference uses it.
    Protocol(name="chat-thinking", endpoint="chat", shots=0, max_tokens=4096,
             thinking=True, instruction=CHAT_INSTRUCTION,
             description="0-shot /v1/chat/completions with thinking on; the answer read "
                         "from `content`; think markup in content, or reasoning not "
                         "returned apart, is a format failure"),
)}


def protocol_named(name: str) -> Protocol:
    from glmkit.errors import UsageError

    if name not in PROTOCOLS:
        raise UsageError(f"--protocol {name[:40]!r}: choose {' or '.join(PROTOCOLS)}.")
    return PROTOCOLS[name]


# --- prompts --------------------------------------------------------------------------

def fewshot_block(train: Sequence[Problem], shots: int) -> str:
    """The first `shots` train examples, each "Question: …\\nAnswer: …" and a blank line:
    the part every prompt of a run shares (stored once per run)."""
    return "".join(f"Question: {p.question}\nAnswer: {p.answer}\n\n" for p in train[:shots])


def completion_prompt(block: str, question: str) -> str:
    """The few-shot block, then the question, ending "Answer:" for the model to go on."""
    return f"{block}Question: {question}\nAnswer:"


def chat_messages(protocol: Protocol, question: str) -> list[dict[str, str]]:
    content = f"{question}\n\n{protocol.instruction}" if protocol.instruction else question
    return [{"role": "user", "content": content}]


def prompt_id(text: str) -> str:
    """A short digest naming a prompt (two runs with the same id asked the same thing)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- reading the answer ---------------------------------------------------------------

def _regex_filter(pattern: re.Pattern[str], text: str, group_select: int) -> str:
    """lm-eval's RegexFilter: the selected match (the first non-empty group of a tuple),
    stripped; the fallback when nothing matches."""
    found = pattern.findall(text)
    if not found:
        return INVALID
    match = found[group_select]
    if isinstance(match, tuple):
        groups = [m for m in match if m]
        match = groups[0] if groups else INVALID
    return str(match).strip()


def strict_extract(text: str) -> str:
    """lm-eval's strict-match: the number after the first "#### "."""
    return _regex_filter(STRICT, text, 0)


def flexible_extract(text: str) -> str:
    """lm-eval's flexible-extract: the last number-like run ($, digits, '.', ',')."""
    return _regex_filter(FLEXIBLE, text, -1)


def normalize(text: str) -> str:
    """exact_match's view of a prediction or a reference: regexes_to_ignore removed in
    order, then lower case (ignore_case)."""
    for pattern in IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()


def last_integer(text: str) -> int | None:
    """vLLM CI's get_answer_value: the last run of digits once commas are removed."""
    numbers = _DIGITS.findall(text.replace(",", ""))
    return int(numbers[-1]) if numbers else None


@dataclass(frozen=True)
class Verdict:
    """One answer read the three ways, and whether each matched the reference."""

    strict: str
    flexible: str
    last_integer: int | None
    strict_ok: bool
    flexible_ok: bool
    last_integer_ok: bool

    def ok(self, metric: Metric) -> bool:
        return {"strict": self.strict_ok, "flexible": self.flexible_ok,
                "last-integer": self.last_integer_ok}[metric]


WRONG = Verdict(INVALID, INVALID, None, False, False, False)


def judge(text: str, problem: Problem) -> Verdict:
    """The reply's verdict under lm-eval's two filters and vLLM CI's scorer."""
    strict, flexible = strict_extract(text), flexible_extract(text)
    expected = last_integer(problem.answer)  # vLLM CI reads its label the same way
    found = last_integer(text)
    return Verdict(strict, flexible, found,
                   normalize(strict) == problem.target, normalize(flexible) == problem.target,
                   found is not None and found == expected)


def format_problem(content: str, reasoning: str, protocol: Protocol) -> str | None:
    """Why a chat reply cannot be scored as the protocol means it: think markup left in
    `content`, or no reasoning returned apart while thinking was on (the template and
    the reasoning parser disagree: vllm#54744). None for a completions reply."""
    if protocol.endpoint != "chat":
        return None
    if "<think>" in content or "</think>" in content:
        return "think markup in content"
    if protocol.thinking and not reasoning.strip():
        return "no reasoning returned apart from content"
    return None
