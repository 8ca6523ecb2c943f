"""`invoke check`: does the running server call tools the way OpenAI clients expect?

Through the official `openai` client, for tool_choice auto, required, a named function
and none, streamed and not, with thinking on and off: tool calls parse (names, JSON
arguments valid against the tool's schema, ids, finish_reason `tool_calls`), streamed
deltas reassemble to the same calls, reasoning lands in `reasoning` and not in
`content`, and a turn after a tool result completes.

The conversations are data/tool_cases.json, the same the tiny model is trained on: on
it every answer must match exactly; on any other model the checks are structural (a
real model chooses its own words and argument values). One more case asks for a tool
call with too few tokens to finish it: it must end `length` (what OpenAI's API says), or
what a vLLM advisory (knowledge/advisories.yaml) says the server's version ends it with.
Where vLLM is known to get a case wrong, the failed row names the advisory's sources.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from glmkit.knowledge.advisories import CheckTarget, cut_finish_reasons, upstream

CASES_FILE = Path(__file__).parents[1] / "data" / "tool_cases.json"
# The cut case: typed-arguments' call asked with this many tokens, too few for any model
# to finish it (the tiny model's call alone is ~40), so max_tokens ends it.
CUT_CASE = "typed-arguments"
CUT_TOKENS = 8


@dataclass(frozen=True)
class ExpectedCall:
    """A tool call a case expects: the function's name and its arguments as data."""

    name: str
    arguments: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": self.arguments}


@dataclass(frozen=True, kw_only=True)
class ToolCase:
    """One conversation of data/tool_cases.json and what the tiny model answers to it:
    tool calls, or (where there are none) a text answer."""

    name: str
    messages: tuple[dict[str, Any], ...]  # sent as they are, in OpenAI's message shape
    reasoning: str
    calls: tuple[ExpectedCall, ...] = ()
    answer: str | None = None
    # The reasoning at a named effort (low, high): what shows the effort reached the
    # prompt. `reasoning` is the default effort's (max).
    effort_reasoning: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ToolCase:
        return cls(name=str(data["name"]), messages=tuple(data["messages"]),
                   reasoning=str(data["reasoning"]),
                   effort_reasoning=tuple((str(k), str(v)) for k, v in
                                          (data.get("effort_reasoning") or {}).items()),
                   calls=tuple(ExpectedCall(str(c["name"]), dict(c["arguments"]))
                               for c in data.get("calls") or ()),
                   answer=None if data.get("answer") is None else str(data["answer"]))


@dataclass(frozen=True)
class ToolCases:
    tools: tuple[dict[str, Any], ...]  # OpenAI tool definitions, sent as they are
    cases: tuple[ToolCase, ...]

    def by_name(self, name: str) -> ToolCase:
        return next(c for c in self.cases if c.name == name)


@cache
def cases() -> ToolCases:
    """data/tool_cases.json, read once; glmkit's own file, so a KeyError is a bug."""
    data = json.loads(CASES_FILE.read_text())
    return ToolCases(tuple(data["tools"]), tuple(ToolCase.from_json(c) for c in data["cases"]))


@dataclass(frozen=True)
class Reply:
    """One chat completion, streamed or not, read into the same shape."""

    content: str
    reasoning: str
    calls: list[dict[str, Any]]  # {"id", "name", "arguments" (the JSON text)}
    finish_reason: str | None


@dataclass(frozen=True)
class CaseResult:
    case: str
    tool_choice: str
    stream: bool
    thinking: bool
    ok: bool
    detail: str
    api: str = "chat"  # chat, messages or responses (glmkit.run.api_check)


@dataclass(frozen=True)
class Request:
    case: ToolCase
    tool_choice: str  # auto, required, none, or a function's name
    stream: bool
    thinking: bool
    effort: str | None = None  # reasoning_effort asked (low, high, max); None: the default
    max_tokens: int | None = None  # set: the call is cut by it (the cut case)

    @property
    def label(self) -> str:
        """The case's name in the table, with the effort asked or where it is cut."""
        return self.case.name + (f" (effort {self.effort})" if self.effort else "") + \
            (f" (cut at {self.max_tokens} tokens)" if self.max_tokens else "")


def _reasoning_of(obj: Any) -> str:
    # vLLM names it `reasoning`; older versions and the recipes `reasoning_content`.
    extra = getattr(obj, "model_extra", None) or {}
    return str(extra.get("reasoning") or extra.get("reasoning_content") or "")


def _collect_stream(chunks: Iterator[Any]) -> Reply:
    content, reasoning, finish = [], [], None
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        content.append(delta.content or "")
        reasoning.append(_reasoning_of(delta))
        for tc in delta.tool_calls or []:
            call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = call["id"] or (tc.id or "")
            if tc.function is not None:
                call["name"] += tc.function.name or ""
                call["arguments"] += tc.function.arguments or ""
        finish = choice.finish_reason or finish
    return Reply("".join(content), "".join(reasoning), [calls[i] for i in sorted(calls)],
                 finish)


def ask(client: Any, model: str, req: Request, max_tokens: int = 256) -> Reply:
    tools = list(cases().tools)
    choice: Any = req.tool_choice
    if choice not in ("auto", "required", "none"):
        choice = {"type": "function", "function": {"name": choice}}
    body: dict[str, Any] = {
        "model": model, "messages": list(req.case.messages), "tools": tools,
        "tool_choice": choice, "temperature": 0, "max_tokens": req.max_tokens or max_tokens,
        "extra_body": {"chat_template_kwargs": {"enable_thinking": req.thinking}}}
    if req.effort:
        body["reasoning_effort"] = req.effort
    if req.stream:
        return _collect_stream(client.chat.completions.create(stream=True, **body))
    response = client.chat.completions.create(**body)
    choice_ = response.choices[0]
    message = choice_.message
    calls = [{"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
             for tc in message.tool_calls or []]
    return Reply(message.content or "", _reasoning_of(message), calls, choice_.finish_reason)


def _schema_problem(name: str, arguments: str) -> str | None:
    import jsonschema

    tools = {t["function"]["name"]: t["function"] for t in cases().tools}
    if name not in tools:
        return f"called {name!r}, which is not one of the tools"
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return f"{name}: arguments are not JSON: {arguments[:80]!r}"
    try:
        jsonschema.validate(args, tools[name]["parameters"])
    except jsonschema.ValidationError as err:
        return f"{name}: arguments do not match the schema: {err.message}"
    return None


def expected_reasoning(req: Request) -> str:
    """The tiny model's reasoning at the effort asked: it names low and high, so the
    effort is seen to reach the prompt; the default is max."""
    return dict(req.case.effort_reasoning).get(req.effort or "max", req.case.reasoning)


def judge(req: Request, reply: Reply, exact: bool,
          cut_finish: dict[str, str] | None = None) -> str | None:
    """None when the reply is right; else what is wrong, in one line. `cut_finish`: the
    finish reasons the cut case may end with (advisories.cut_finish_reasons)."""
    case = req.case
    if req.max_tokens:  # the call cannot finish: only how it ends is asked
        allowed = cut_finish or {"length": ""}
        if reply.finish_reason in allowed:
            return None
        return (f"finish_reason {reply.finish_reason!r} for a tool call cut by max_tokens, "
                f"expected {' or '.join(repr(r) for r in allowed)}")
    wants_calls = req.tool_choice != "none" and (bool(case.calls) or req.tool_choice != "auto")
    if req.thinking and req.tool_choice in ("auto", "none") and not reply.reasoning:
        return "no reasoning in the reply: is --reasoning-parser set?"
    if "<think>" in reply.content or "</think>" in reply.content:
        return "reasoning markup leaked into content"
    if not req.thinking and reply.reasoning:
        return f"reasoning with thinking off: {reply.reasoning[:60]!r}"
    if not wants_calls:
        if reply.calls:
            return f"tool calls where none belong: {[c['name'] for c in reply.calls]}"
        if exact and req.tool_choice == "auto" and reply.content.strip() != case.answer:
            return f"answer {reply.content.strip()[:60]!r}, expected {case.answer!r}"
        if exact and req.thinking and req.tool_choice == "auto" and \
                reply.reasoning != expected_reasoning(req):
            return f"reasoning {reply.reasoning[:60]!r}, expected {expected_reasoning(req)!r}"
        return None if reply.finish_reason == "stop" else \
            f"finish_reason {reply.finish_reason!r}, expected 'stop'"
    if not reply.calls:
        return (f"no tool call parsed (content: {reply.content.strip()[:60]!r}): is "
                "--tool-call-parser right for this model?")
    for call in reply.calls:
        if problem := _schema_problem(call["name"], call["arguments"]):
            return problem
    ids = [c["id"] for c in reply.calls]
    if not all(ids) or len(set(ids)) != len(ids):
        return f"tool call ids missing or repeated: {ids}"
    if req.tool_choice == "auto" and reply.finish_reason != "tool_calls":
        return f"finish_reason {reply.finish_reason!r}, expected 'tool_calls'"
    if exact:
        want = [c.as_dict() for c in (case.calls[:1] if req.tool_choice not in
                                      ("auto", "required") else case.calls)]
        got = [{"name": c["name"], "arguments": json.loads(c["arguments"] or "{}")}
               for c in reply.calls]
        if got != want:
            return f"calls {json.dumps(got, ensure_ascii=False)[:120]}, expected " \
                   f"{json.dumps(want, ensure_ascii=False)[:120]}"
        if req.thinking and req.tool_choice == "auto" and \
                reply.reasoning != expected_reasoning(req):
            return f"reasoning {reply.reasoning[:60]!r}, expected {expected_reasoning(req)!r}"
    return None



def requests_for(quick: bool, api: str = "chat") -> list[Request]:
    """The matrix; `quick` is what `invoke up` runs: one auto call, streamed and not. The
    chat API's has the cut case too (its finish_reason is what it asks)."""
    typed = cases().by_name("typed-arguments")
    if quick:  # thinking off unstreamed, on streamed: both parsers in two requests
        return [Request(typed, "auto", stream, stream) for stream in (False, True)]
    out = []
    for case in cases().cases:
        for thinking in (True, False):
            for stream in (False, True):
                out.append(Request(case, "auto", stream, thinking))
                if case.calls:
                    out.append(Request(case, "required", stream, thinking))
                    out.append(Request(case, case.calls[0].name, stream, thinking))
    for stream in (False, True):
        out.append(Request(typed, "none", stream, True))
        for case in cases().cases:
            out += [Request(case, "auto", stream, True, effort) for effort in
                    ("low", "high", "max") if case.effort_reasoning]
        if api == "chat":
            out.append(Request(cases().by_name(CUT_CASE), "auto", stream, False,
                               max_tokens=CUT_TOKENS))
    return out


def known_upstream(problem: str | None, req: Request, target: CheckTarget) -> str | None:
    """`problem` with the advisory it is known by (`[upstream: …]`), if one holds."""
    if problem and "[upstream:" not in problem and \
            (issue := upstream(problem, req.tool_choice, target)) is not None:
        return f"{problem} [upstream: {issue}]"
    return problem


# Requests of the matrix in flight at once. Every case is its own conversation at
# temperature 0, so none depends on another's order; vLLM batches them (on the 2-core CPU
# machine the ~70 chat cases took 16 s one at a time). A server's --max-num-seqs lowers it.
CHECK_CONCURRENCY = 8
# The hints judge() gives when only the server's parser flags explain a failure: one such
# case proves it, and the rest of the matrix would repeat it.
PARSER_HINTS = ("is --tool-call-parser right", "is --reasoning-parser set")


def parser_wrong(problem: str | None) -> bool:
    """A failure that proves the server's parser flags wrong (not one vLLM is known to get
    wrong upstream with any flags)."""
    return bool(problem) and "[upstream:" not in (problem or "") and \
        any(hint in (problem or "") for hint in PARSER_HINTS)


def check_concurrency(serve_args: tuple[str, ...] | list[str]) -> int:
    """How many check requests to send at once: CHECK_CONCURRENCY, or fewer when the
    server schedules fewer sequences (--max-num-seqs)."""
    from glmkit.vllm_args import flag_value

    seqs = flag_value(tuple(serve_args), "--max-num-seqs")
    return min(CHECK_CONCURRENCY, int(seqs)) if seqs and seqs.isdigit() and int(seqs) > 0 \
        else CHECK_CONCURRENCY


@dataclass(frozen=True)
class MatrixRun:
    """What a run of the matrix answered, in the matrix's order, and how many requests it
    did not send because an earlier answer proved the parser wrong."""

    answered: list[tuple[Request, str | None]]  # (request, problem or None)
    not_run: int

    @property
    def stopped(self) -> bool:
        return self.not_run > 0


def run_matrix(reqs: list[Request], answer: Callable[[Request], str | None],
               concurrency: int) -> MatrixRun:
    """`answer` (the problem of one request, or None) over `reqs`, `concurrency` at a time;
    the first answer that proves the parser wrong cancels the requests not yet sent."""
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    problems: dict[int, str | None] = {}
    queue = iter(enumerate(reqs))
    running: dict[Future[str | None], int] = {}
    stop = False
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        # Submitted one by one as others finish: nothing is sent after the stop.
        for index, req in itertools.islice(queue, max(1, concurrency)):
            running[pool.submit(answer, req)] = index
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                i = running.pop(future)
                problems[i] = future.result()
                stop = stop or parser_wrong(problems[i])
                if not stop and (following := next(queue, None)) is not None:
                    running[pool.submit(answer, following[1])] = following[0]
    return MatrixRun([(reqs[i], problems[i]) for i in sorted(problems)],
                     len(reqs) - len(problems))


def error_line(err: Exception) -> str:
    """A client's HTTP or API error as one row's detail."""
    return f"{err.__class__.__name__}: {(str(err).splitlines() or [''])[0][:120]}"


def chat_matrix(base_url: str, model: str, api_key: str | None, *, exact: bool,
                quick: bool = False, concurrency: int = 1,
                target: CheckTarget | None = None) -> MatrixRun:
    """The matrix through the chat completions API (the `openai` client); `target` (the
    server's tool parser and vLLM version) decides which advisories hold."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key=api_key or "EMPTY", timeout=120,
                    max_retries=0)
    where = target or CheckTarget(api="chat")
    cut = cut_finish_reasons(where)

    def answer(req: Request) -> str | None:
        try:
            return known_upstream(judge(req, ask(client, model, req), exact, cut), req, where)
        except Exception as err:  # the client's HTTP and API errors: a failed case
            return error_line(err)

    return run_matrix(requests_for(quick), answer, concurrency)


def native_choice(api: str, tool_choice: str) -> str:
    """The tool_choice as each API names it (Anthropic's `required` is `any`)."""
    return "any" if api == "messages" and tool_choice == "required" else tool_choice


def case_results(run: MatrixRun, api: str = "chat") -> list[CaseResult]:
    """The rows of a run, tool_choice as the API names it."""
    return [CaseResult(req.label, native_choice(api, req.tool_choice), req.stream,
                       req.thinking, problem is None, problem or "ok", api=api)
            for req, problem in run.answered]


def run_check(base_url: str, model: str, api_key: str | None, *, exact: bool,
              quick: bool = False) -> list[CaseResult]:
    """The chat rows, one request at a time (what `invoke up` asks: two requests)."""
    return case_results(chat_matrix(base_url, model, api_key, exact=exact, quick=quick))
