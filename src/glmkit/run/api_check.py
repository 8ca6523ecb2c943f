"""`invoke check --api`: the same tool-call cases through the three APIs agents use.

Chat completions (tool_check.py, the `openai` client), Anthropic's Messages API
(`/v1/messages`, the `anthropic` client: what Claude Code speaks) and OpenAI's Responses
API (`/v1/responses`, the `openai` client: what Codex speaks). Every reply is read into
tool_check's `Reply` and judged by the same rules (exact answers on the tiny model,
structure elsewhere); on top of that each API's own shape is checked: Anthropic
`tool_use` blocks with `input_json_delta` events and `stop_reason: tool_use`, Responses
`function_call` items with their argument events, reasoning in its own block or item,
never tool or think markup in text.

Where vLLM is known to get a case wrong the row names the upstream issue: the check
rules of knowledge/advisories.yaml (KNOWN lists their symptoms).
`check_server` runs the APIs asked for and saves one table under results/checks/.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmkit.errors import UsageError
from glmkit.knowledge.advisories import CheckTarget, advisories, upstream
from glmkit.run.tool_check import (
    CaseResult,
    MatrixRun,
    Reply,
    Request,
    ToolCase,
    case_results,
    cases,
    chat_matrix,
    check_concurrency,
    error_line,
    judge,
    known_upstream,
    native_choice,
    requests_for,
    run_matrix,
)

APIS = ("chat", "messages", "responses")
# Anthropic requires max_tokens above the thinking budget, whose minimum is 1024.
THINKING_BUDGET = 1024
ANSWER_TOKENS = 256
# Symptoms vLLM has shown upstream, and where they are tracked (the advisories' check
# rules): a FAIL row names them.
KNOWN = {symptom: f"{a.cited} ({a.title})" for a in advisories() if a.check is not None
         for symptom in a.check.symptoms}


def parse_apis(value: str | None) -> tuple[str, ...]:
    """`--api chat|messages|responses|all` (or a comma list) as API names, in order;
    None is all."""
    if value is None:
        return APIS
    words = [w.strip().lower() for w in value.split(",")]
    if words == ["all"]:
        return APIS
    for word in words:
        if word not in APIS:
            raise UsageError(f"--api {word[:40]!r}: use chat, messages, responses or all.")
    return tuple(a for a in APIS if a in words)


# --- Anthropic Messages -------------------------------------------------------------

def anthropic_tools() -> list[dict[str, Any]]:
    return [{"name": t["function"]["name"], "description": t["function"]["description"],
             "input_schema": t["function"]["parameters"]} for t in cases().tools]


def anthropic_messages(case: ToolCase) -> list[dict[str, Any]]:
    """The case's OpenAI-shaped conversation as Anthropic content blocks."""
    out: list[dict[str, Any]] = []
    for m in case.messages:
        if m["role"] == "user":
            out.append({"role": "user", "content": m["content"]})
        elif m["role"] == "assistant":
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}] \
                if m.get("content") else []
            blocks += [{"type": "tool_use", "id": tc["id"], "name": tc["function"]["name"],
                        "input": json.loads(tc["function"]["arguments"] or "{}")}
                       for tc in m.get("tool_calls") or ()]
            out.append({"role": "assistant", "content": blocks})
        elif m["role"] == "tool":
            out.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": m["tool_call_id"],
                 "content": m["content"]}]})
    return out


STOP_REASONS = {"tool_use": "tool_calls", "end_turn": "stop", "max_tokens": "length",
                "stop_sequence": "stop"}


def anthropic_body(model: str, req: Request) -> dict[str, Any]:
    choice: dict[str, Any] = {"type": native_choice("messages", req.tool_choice)} \
        if req.tool_choice in ("auto", "required", "none") else \
        {"type": "tool", "name": req.tool_choice}
    thinking = {"type": "enabled", "budget_tokens": THINKING_BUDGET} if req.thinking else \
        {"type": "disabled"}
    return {"model": model, "messages": anthropic_messages(req.case),
            "tools": anthropic_tools(), "tool_choice": choice, "thinking": thinking,
            "max_tokens": ANSWER_TOKENS + (THINKING_BUDGET if req.thinking else 0),
            # The anthropic client takes no temperature with thinking on: in the body;
            # the effort is Anthropic's output_config.effort.
            "extra_body": {"temperature": 0, **({"output_config": {"effort": req.effort}}
                                                if req.effort else {})}}


def read_anthropic_message(message: Any) -> Reply:
    text, thinking, calls = [], [], []
    for block in message.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "thinking":
            thinking.append(block.thinking)
        elif block.type == "tool_use":
            calls.append({"id": block.id, "name": block.name,
                          "arguments": json.dumps(block.input, ensure_ascii=False)})
    reason = message.stop_reason
    return Reply("".join(text), "".join(thinking), calls, STOP_REASONS.get(reason, reason))


def read_anthropic_events(events: Iterable[Any]) -> tuple[Reply, str | None]:
    """Reassemble raw stream events; the second value names a broken event sequence."""
    blocks: dict[int, dict[str, Any]] = {}
    reason, problem = None, None
    for event in events:
        if event.type == "content_block_start":
            block = event.content_block
            blocks[event.index] = {"type": block.type, "text": "", "json": "", "deltas": 0,
                                   "id": getattr(block, "id", ""),
                                   "name": getattr(block, "name", "")}
        elif event.type == "content_block_delta":
            block, delta = blocks.get(event.index), event.delta
            if block is None:
                problem = f"{delta.type} before its content_block_start"
                continue
            if delta.type == "text_delta":
                block["text"] += delta.text
            elif delta.type == "thinking_delta":
                block["text"] += delta.thinking
            elif delta.type == "input_json_delta":
                block["json"] += delta.partial_json
                block["deltas"] += 1
        elif event.type == "message_delta":
            reason = event.delta.stop_reason or reason
    ordered = [blocks[i] for i in sorted(blocks)]
    calls = [{"id": b["id"], "name": b["name"], "arguments": b["json"] or "{}"}
             for b in ordered if b["type"] == "tool_use"]
    for b in ordered:
        if b["type"] == "tool_use" and b["json"] not in ("", "{}") and not b["deltas"]:
            problem = f"tool_use {b['name']} streamed no input_json_delta"
    text = "".join(b["text"] for b in ordered if b["type"] == "text")
    thinking = "".join(b["text"] for b in ordered if b["type"] == "thinking")
    return Reply(text, thinking, calls, STOP_REASONS.get(reason or "", reason)), problem


def ask_messages(client: Any, model: str, req: Request) -> tuple[Reply, str | None]:
    body = anthropic_body(model, req)
    if req.stream:
        return read_anthropic_events(client.messages.create(stream=True, **body))
    return read_anthropic_message(client.messages.create(**body)), None


# --- OpenAI Responses ---------------------------------------------------------------

def responses_tools() -> list[dict[str, Any]]:
    return [{"type": "function", **t["function"]} for t in cases().tools]


def responses_input(case: ToolCase) -> list[dict[str, Any]]:
    """The conversation as Responses input items (function_call, function_call_output)."""
    out: list[dict[str, Any]] = []
    for m in case.messages:
        if m["role"] == "user" or (m["role"] == "assistant" and m.get("content")):
            out.append({"role": m["role"], "content": m["content"]})
        if m["role"] == "assistant":
            out += [{"type": "function_call", "call_id": tc["id"],
                     "name": tc["function"]["name"], "arguments": tc["function"]["arguments"]}
                    for tc in m.get("tool_calls") or ()]
        elif m["role"] == "tool":
            out.append({"type": "function_call_output", "call_id": m["tool_call_id"],
                        "output": m["content"]})
    return out


def responses_body(model: str, req: Request) -> dict[str, Any]:
    choice: Any = req.tool_choice if req.tool_choice in ("auto", "required", "none") else \
        {"type": "function", "name": req.tool_choice}
    body: dict[str, Any] = {"model": model, "input": responses_input(req.case),
                            "tools": responses_tools(), "tool_choice": choice,
                            "temperature": 0, "max_output_tokens": ANSWER_TOKENS}
    if not req.thinking:  # thinking on is the model's default: no effort asked
        body["reasoning"] = {"effort": "none"}
    elif req.effort:
        body["reasoning"] = {"effort": req.effort}
    return body


def _reasoning_text(item: Any) -> str:
    parts = list(getattr(item, "content", None) or []) + list(item.summary or [])
    return "".join(getattr(p, "text", "") for p in parts)


def read_response(response: Any) -> Reply:
    text, reasoning, calls = [], [], []
    for item in response.output:
        if item.type == "message":
            text += [getattr(p, "text", "") for p in item.content]
        elif item.type == "reasoning":
            reasoning.append(_reasoning_text(item))
        elif item.type == "function_call":
            calls.append({"id": item.call_id, "name": item.name, "arguments": item.arguments})
    finish = "tool_calls" if calls else ("stop" if response.status == "completed"
                                         else f"status {response.status}")
    return Reply("".join(text), "".join(reasoning), calls, finish)


def read_response_events(events: Iterable[Any]) -> tuple[Reply, str | None]:
    """The streamed events reassembled; they must agree with the final response."""
    text: list[str] = []
    reasoning: list[str] = []
    arguments: dict[str, str] = {}  # arguments: item id -> the deltas joined
    final: Any = None
    problem: str | None = None
    for event in events:
        if event.type == "response.output_text.delta":
            text.append(event.delta)
        elif event.type == "response.reasoning_text.delta":
            reasoning.append(event.delta)
        elif event.type == "response.function_call_arguments.delta":
            arguments[event.item_id] = arguments.get(event.item_id, "") + event.delta
        elif event.type == "response.completed":
            final = event.response
    if final is None:
        return Reply("".join(text), "".join(reasoning), [], None), "no response.completed"
    done = read_response(final)
    for item in final.output:
        if item.type == "function_call" and item.arguments not in ("", "{}") and \
                arguments.get(item.id) != item.arguments:
            problem = (f"function_call {item.name}: argument deltas "
                       f"{arguments.get(item.id, '')[:40]!r} != {item.arguments[:40]!r}")
    if "".join(text) != done.content:
        problem = "output_text deltas differ from the final message"
    return Reply("".join(text), "".join(reasoning), done.calls, done.finish_reason), problem


def ask_responses(client: Any, model: str, req: Request) -> tuple[Reply, str | None]:
    body = responses_body(model, req)
    if req.stream:
        return read_response_events(client.responses.create(stream=True, **body))
    return read_response(client.responses.create(**body)), None


# --- the run ------------------------------------------------------------------------

def judge_api(req: Request, reply: Reply, shape_problem: str | None, exact: bool,
              target: CheckTarget | None = None) -> str | None:
    """tool_check's rules, then the API's own shape; a known symptom names its issue."""
    problem = judge(req, reply, exact) or shape_problem
    if problem is None and "<tool_call>" in reply.content:
        problem = "tool markup in text"
    if problem and "<tool_call>" in reply.content and not reply.calls:
        problem = f"tool markup in text: {problem}"
    return known_upstream(problem, req, target or CheckTarget(api="responses"))


@dataclass(frozen=True)
class Clients:
    """One client per API, made for a base URL and key."""

    openai: Any
    anthropic: Any


def clients(base_url: str, api_key: str | None, *, bearer: bool = False) -> Clients:
    """The Anthropic client sends the key as `x-api-key` (what Claude Code does with
    ANTHROPIC_API_KEY), or with `bearer` as `Authorization: Bearer` (Claude Code's
    ANTHROPIC_AUTH_TOKEN; the anthropic SDK 2.x's own way for `api_key` too)."""
    from anthropic import Anthropic, omit
    from openai import OpenAI

    key = api_key or "EMPTY"  # both clients insist on one; a keyless server ignores it
    oa = OpenAI(base_url=f"{base_url}/v1", api_key=key, timeout=120, max_retries=0)
    an = Anthropic(base_url=base_url, auth_token=key, timeout=120, max_retries=0) \
        if bearer else \
        Anthropic(base_url=base_url, api_key=key, timeout=120, max_retries=0,
                  default_headers={"Authorization": omit,  # type: ignore[dict-item]
                                   "X-Api-Key": key})
    return Clients(oa, an)


def api_matrix(api: str, c: Clients, model: str, *, exact: bool, concurrency: int = 1,
               target: CheckTarget | None = None) -> MatrixRun:
    """The matrix through /v1/messages or /v1/responses; `target` as chat_matrix's."""
    ask: Callable[[Any, str, Request], tuple[Reply, str | None]] = \
        ask_messages if api == "messages" else ask_responses
    client = c.anthropic if api == "messages" else c.openai

    where = CheckTarget(api=api, tool_parser=target.tool_parser if target else None,
                        vllm_version=target.vllm_version if target else None)

    def answer(req: Request) -> str | None:
        try:
            reply, shape = ask(client, model, req)
            return judge_api(req, reply, shape, exact, where)
        except Exception as err:  # the client's HTTP and API errors: a failed case
            return error_line(err)

    return run_matrix(requests_for(quick=False, api=api), answer, concurrency)


# --- authentication -----------------------------------------------------------------

def _probe(api: str, c: Clients, model: str) -> None:
    """The smallest real request on an API; raises the client's error when refused."""
    hello = [{"role": "user", "content": "Say hello."}]
    if api == "chat":
        c.openai.chat.completions.create(model=model, messages=hello, max_tokens=1)
    elif api == "messages":
        c.anthropic.messages.create(model=model, messages=hello, max_tokens=1)
    else:
        c.openai.responses.create(model=model, input=hello, max_output_tokens=16)


def _refused(err: Exception) -> bool:
    return getattr(err, "status_code", None) == 401


WRONG_KEY = "glmkit-wrong-key"
AUTH_METHODS = {"chat": ("bearer",), "responses": ("bearer",),
                "messages": ("x-api-key", "bearer")}


def auth_results(apis: Iterable[str], base_url: str, model: str, api_key: str | None
                 ) -> list[CaseResult]:
    """Each API authenticated the way its clients send the key: the right key served, a
    wrong or missing one refused (401). A server without a key serves any request."""
    rows = []
    for api in apis:
        for method in AUTH_METHODS[api]:
            bearer = method == "bearer"
            # SDKs always send some key: "no key" is a server without one.
            keys = {"right key": api_key, "wrong key": WRONG_KEY + ("-" if api_key ==
                                                                    WRONG_KEY else "")} \
                if api_key else {"any key (server has none)": None}
            for label, key in keys.items():
                want_ok = key == api_key
                try:
                    _probe(api, clients(base_url, key, bearer=bearer), model)
                    problem = None if want_ok else "served, expected 401"
                except Exception as err:
                    problem = ("refused, expected 401" if not _refused(err) else None) \
                        if not want_ok else error_line(err)
                    if problem and want_ok and method == "x-api-key" and _refused(err):
                        problem = "x-api-key refused: " + problem
                        if issue := upstream(problem, "auto", CheckTarget(api=api)):
                            problem += f" [upstream: {issue}]"
                rows.append(CaseResult(f"auth {method}: {label}", "-", False, False,
                                       problem is None, problem or ("served" if want_ok
                                                                    else "refused (401)"),
                                       api=api))
    return rows


# --- `invoke check` -----------------------------------------------------------------

@dataclass(frozen=True)
class ApiSummary:
    """One API's line of the check: its rows, how long they took, what was not sent."""

    api: str
    passed: int
    failed: int
    seconds: float
    not_run: int = 0  # requests left out once the parser was proven wrong

    @property
    def requests(self) -> int:
        return self.passed + self.failed


@dataclass(frozen=True)
class CheckReport:
    results: list[CaseResult]
    path: Path
    parsers: str  # the server's --tool-call-parser / --reasoning-parser, in words
    summaries: tuple[ApiSummary, ...] = ()

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]

    @property
    def not_run(self) -> int:
        return sum(s.not_run for s in self.summaries)

    def check(self) -> None:
        from glmkit.errors import CheckFailed

        if self.failed:
            stopped = f" ({self.not_run} more not sent: the parser was proven wrong)" \
                if self.not_run else ""
            raise CheckFailed(f"{len(self.failed)} of {len(self.results)} cases failed with "
                              f"{self.parsers}{stopped}; first ({self.failed[0].api}, "
                              f"{self.failed[0].case}): {self.failed[0].detail}")


def vision_results(container: Any, target: Any, apis: tuple[str, ...]) -> list[CaseResult]:
    """A vision model's image and video cases (vision_check.py); none for a text model."""
    from glmkit.run import vision_check

    if not target.facts.vision:
        return []
    where = vision_check.vision_target(container, target.base_url, target.api_key,
                                       target.served_model, target.serve_args)
    return vision_check.run_vision(where, apis, clients(target.base_url, target.api_key,
                                                        bearer=True))


def summarize(api: str, rows: list[CaseResult], seconds: float, not_run: int = 0
              ) -> ApiSummary:
    failed = sum(not r.ok for r in rows)
    return ApiSummary(api, len(rows) - failed, failed, seconds, not_run)


def check_server(project: str, results_dir: Path, api: str | None = None,
                 model: str | None = None) -> CheckReport:
    """Every case through each API asked for (`--api`: chat, messages, responses or all),
    and how each authenticates, against the project's running server; the table saved
    under results/checks/ beside the benchmark runs. The cases go `check_concurrency` at a
    time; the authentication and vision rows, whose answers are compared with each
    other's, one at a time. Once a case proves the parser flags wrong no more are sent.
    `model`: a model group's member to check, through the group's door (default: the
    first)."""
    import time
    from dataclasses import asdict

    from glmkit.files import write_json_once
    from glmkit.knowledge.images import tag_version
    from glmkit.run.server import running_server
    from glmkit.vllm_args import flag_value

    apis = parse_apis(api)
    container, target = running_server(project, model)
    parsers = ", ".join(f"{flag} {flag_value(target.serve_args, flag) or 'none'}"
                        for flag in ("--tool-call-parser", "--reasoning-parser"))
    exact = target.facts.exact_answers
    concurrency = check_concurrency(target.serve_args)
    # What the advisories' check rules are matched against: the parser, the vLLM version.
    server = CheckTarget(tool_parser=flag_value(target.serve_args, "--tool-call-parser"),
                         vllm_version=tag_version(target.image))
    # The cases send the key as Bearer, which every vLLM accepts; how each header fares
    # is the authentication rows' question.
    bearer = clients(target.base_url, target.api_key, bearer=True)
    results: list[CaseResult] = []
    summaries: list[ApiSummary] = []
    stopped = False
    for name in apis:
        started = time.monotonic()
        if stopped:
            summaries.append(summarize(name, [], 0.0, len(requests_for(quick=False,
                                                                      api=name))))
            continue
        run = chat_matrix(target.base_url, target.served_model, target.api_key, exact=exact,
                          concurrency=concurrency, target=server) if name == "chat" else \
            api_matrix(name, bearer, target.served_model, exact=exact,
                       concurrency=concurrency, target=server)
        stopped = run.stopped
        rows = case_results(run, name) + auth_results(
            (name,), target.base_url, target.served_model, target.api_key)
        if not stopped:
            rows += vision_results(container, target, (name,))
        results += rows
        summaries.append(summarize(name, rows, time.monotonic() - started, run.not_run))
    path = results_dir / "checks" / f"{time.strftime('%Y%m%d-%H%M%S')}-{project}.json"
    write_json_once(path, {"model": target.served_model, "image": target.image,
                           "apis": list(apis), "api_key": bool(target.api_key),
                           "serve_args": list(target.serve_args), "parsers": parsers,
                           "concurrency": concurrency,
                           "summary": [asdict(s) for s in summaries],
                           "cases": [asdict(r) for r in results]})
    return CheckReport(results, path, parsers, tuple(summaries))
