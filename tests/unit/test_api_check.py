"""`invoke check --api`: the Anthropic Messages and OpenAI Responses cases, judged on
replies and event streams made by hand, and authentication against a local HTTP server
that checks headers as vLLM does (the real server's run is in tests/e2e)."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from types import SimpleNamespace as NS
from typing import Any

import pytest

from glmkit.errors import UsageError
from glmkit.run import api_check
from glmkit.run.tool_check import Reply, Request, cases

CASES = {c.name: c for c in cases().cases}
TYPED, AFTER = CASES["typed-arguments"], CASES["after-tool-result"]


@pytest.mark.parametrize(("value", "apis"), [
    (None, api_check.APIS), ("all", api_check.APIS), ("ALL", api_check.APIS),
    ("messages", ("messages",)), ("responses, chat", ("chat", "responses")),
])
def test_api_names(value: str | None, apis: tuple[str, ...]) -> None:
    assert api_check.parse_apis(value) == apis


@pytest.mark.parametrize("value", ["", " , ", "grpc", "chat,all", "messages;rm -rf /",
                                   "chat\nmessages", "x" * 10_000, "--project"])
def test_hostile_api_names_are_one_usage_line(value: str) -> None:
    with pytest.raises(UsageError) as err:
        api_check.parse_apis(value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 120
    assert "chat, messages, responses or all" in str(err.value)


def test_conversations_convert_to_each_api() -> None:
    msgs = api_check.anthropic_messages(AFTER)
    assert msgs[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_0", "name": "get_weather",
         "input": {"city": "Rome"}}]}
    assert msgs[2]["content"][0]["type"] == "tool_result"
    assert msgs[2]["content"][0]["tool_use_id"] == "call_0"
    items = api_check.responses_input(AFTER)
    assert [i.get("type", i.get("role")) for i in items] == [
        "user", "function_call", "function_call_output"]
    assert items[1]["call_id"] == items[2]["call_id"] == "call_0"
    named = api_check.anthropic_body("m", Request(TYPED, "get_time", False, False))
    assert named["tool_choice"] == {"type": "tool", "name": "get_time"}
    assert named["thinking"] == {"type": "disabled"}
    thinking = api_check.anthropic_body("m", Request(TYPED, "required", True, True))
    assert thinking["tool_choice"] == {"type": "any"}
    assert thinking["max_tokens"] > thinking["thinking"]["budget_tokens"]  # Anthropic's rule
    body = api_check.responses_body("m", Request(TYPED, "get_time", True, False))
    assert body["tool_choice"] == {"type": "function", "name": "get_time"}
    assert body["reasoning"] == {"effort": "none"}
    assert {t["name"] for t in body["tools"]} == {"get_weather", "get_time"}


def ev(kind: str, **fields: Any) -> Any:
    return NS(type=kind, **fields)


def anthropic_stream(json_parts: list[str]) -> list[Any]:
    return [ev("message_start"),
            ev("content_block_start", index=0, content_block=NS(type="thinking")),
            ev("content_block_delta", index=0,
               delta=NS(type="thinking_delta", thinking=TYPED.reasoning)),
            ev("content_block_start", index=1,
               content_block=NS(type="tool_use", id="toolu_1", name="get_weather")),
            *[ev("content_block_delta", index=1,
                 delta=NS(type="input_json_delta", partial_json=p)) for p in json_parts],
            ev("message_delta", delta=NS(stop_reason="tool_use")), ev("message_stop")]


def test_anthropic_events_reassemble_and_pass_exactly() -> None:
    args = json.dumps(TYPED.calls[0].arguments)
    reply, problem = api_check.read_anthropic_events(anthropic_stream([args[:9], args[9:]]))
    assert problem is None and reply.finish_reason == "tool_calls"
    assert reply.reasoning == TYPED.reasoning and reply.content == ""
    req = Request(TYPED, "auto", True, True)
    assert api_check.judge_api(req, reply, problem, exact=True) is None


def test_a_tool_use_block_without_input_json_delta_fails() -> None:
    events = anthropic_stream([])
    events[3].content_block = NS(type="tool_use", id="t", name="get_weather")
    reply, problem = api_check.read_anthropic_events(events)
    assert reply.calls[0]["arguments"] == "{}"
    # The arguments never came: the typed case's required city is missing.
    assert "required property" in (api_check.judge_api(
        Request(TYPED, "auto", True, True), reply, problem, exact=False) or "")
    orphan = [ev("content_block_delta", index=4, delta=NS(type="text_delta", text="x"))]
    assert "before its content_block_start" in (api_check.read_anthropic_events(orphan)[1]
                                                or "")


def response(output: list[Any], status: str = "completed") -> Any:
    return NS(output=output, status=status)


def test_responses_events_must_agree_with_the_final_response() -> None:
    args = json.dumps(TYPED.calls[0].arguments)
    call = NS(type="function_call", id="fc_1", call_id="call_1", name="get_weather",
              arguments=args)
    final = response([NS(type="reasoning", content=[NS(text=TYPED.reasoning)], summary=[]),
                      call])
    events = [ev("response.reasoning_text.delta", delta=TYPED.reasoning),
              ev("response.output_item.added", item=call),
              ev("response.function_call_arguments.delta", item_id="fc_1", delta=args[:5]),
              ev("response.function_call_arguments.delta", item_id="fc_1", delta=args[5:]),
              ev("response.completed", response=final)]
    reply, problem = api_check.read_response_events(events)
    assert problem is None and reply.calls == [{"id": "call_1", "name": "get_weather",
                                                "arguments": args}]
    assert api_check.judge_api(Request(TYPED, "auto", True, True), reply, None,
                               exact=True) is None
    _, problem = api_check.read_response_events(events[:2] + events[3:])
    assert "argument deltas" in (problem or "")
    assert api_check.read_response_events(events[:-1])[1] == "no response.completed"


def test_tool_markup_in_output_text_fails_naming_the_upstream_issue() -> None:
    # What vllm-project/vllm#36435 describes: the call arrives as text, no function_call.
    text = "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>"
    events = [ev("response.output_text.delta", delta=text),
              ev("response.completed", response=response(
                  [NS(type="message", content=[NS(text=text)])]))]
    reply, problem = api_check.read_response_events(events)
    verdict = api_check.judge_api(Request(TYPED, "auto", True, False), reply, problem,
                                  exact=False) or ""
    assert verdict.startswith("tool markup in text") and "vllm#36435" in verdict
    assert "is --tool-call-parser right" in verdict


def test_plain_answers_map_stop_reasons() -> None:
    message = NS(content=[NS(type="text", text=CASES["no-tool-needed"].answer)],
                 stop_reason="end_turn")
    reply = api_check.read_anthropic_message(message)
    assert reply == Reply("Hello! How can I help?", "", [], "stop")
    assert api_check.judge_api(Request(CASES["no-tool-needed"], "auto", False, False), reply,
                               None, exact=True) is None
    cut = api_check.read_response(response([], status="incomplete"))
    assert cut.finish_reason == "status incomplete"


@pytest.fixture()
def keyed_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, dict[str, int]]]:
    """Answers every API with 200 when the key comes as vLLM reads it (Bearer on any
    path, x-api-key as well on /v1/messages when `x_api_key` is on), 401 otherwise."""
    import platform

    # The openai client describes the platform in a header; platform.platform() runs
    # `uname -p` (Python 3.11), a program the unit layer refuses.
    monkeypatch.setattr(platform, "platform", lambda *_, **__: "Linux")
    seen = {"x-api-key": 0, "bearer": 0, "x_api_key": 1}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            bearer = self.headers.get("authorization") == "Bearer sk-right"
            x_key = self.headers.get("x-api-key") == "sk-right"
            seen["bearer"] += bearer
            seen["x-api-key"] += x_key
            ok = bearer or (x_key and seen["x_api_key"] and self.path == "/v1/messages")
            body = {"error": {"message": "Unauthorized"}} if not ok else \
                self.reply()
            data = json.dumps(body).encode()
            self.send_response(200 if ok else 401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def reply(self) -> dict[str, Any]:
            if self.path == "/v1/messages":
                return {"id": "m", "type": "message", "role": "assistant", "model": "m",
                        "content": [{"type": "text", "text": "hi"}],
                        "stop_reason": "max_tokens", "usage": {"input_tokens": 1,
                                                               "output_tokens": 1}}
            if self.path == "/v1/responses":
                return {"id": "r", "object": "response", "created_at": 0, "model": "m",
                        "output": [], "status": "completed", "tool_choice": "auto",
                        "tools": [], "parallel_tool_calls": True}
            return {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "length", "message": {
                        "role": "assistant", "content": "hi"}}]}

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.timeout = 0.01
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()


def test_each_client_sends_the_key_its_way_and_a_wrong_one_is_refused(
        keyed_server: tuple[str, dict[str, int]]) -> None:
    url, seen = keyed_server
    rows = api_check.auth_results(api_check.APIS, url, "m", "sk-right")
    assert [(r.api, r.case) for r in rows] == [
        ("chat", "auth bearer: right key"), ("chat", "auth bearer: wrong key"),
        ("messages", "auth x-api-key: right key"), ("messages", "auth x-api-key: wrong key"),
        ("messages", "auth bearer: right key"), ("messages", "auth bearer: wrong key"),
        ("responses", "auth bearer: right key"), ("responses", "auth bearer: wrong key")]
    assert all(r.ok for r in rows), [r.detail for r in rows if not r.ok]
    assert seen["x-api-key"] == 1 and seen["bearer"] == 3  # each right key, its own header


def test_a_server_refusing_x_api_key_fails_naming_the_upstream_issue(
        keyed_server: tuple[str, dict[str, int]]) -> None:
    url, seen = keyed_server
    seen["x_api_key"] = 0  # as vllm-project/vllm#51572 reports for 0.26
    rows = {r.case: r for r in api_check.auth_results(["messages"], url, "m", "sk-right")}
    bad = rows["auth x-api-key: right key"]
    assert not bad.ok and bad.detail.startswith("x-api-key refused")
    assert "vllm#51572" in bad.detail
    assert rows["auth bearer: right key"].ok


def test_a_key_is_refused_where_the_check_expects_none(
        keyed_server: tuple[str, dict[str, int]]) -> None:
    url, _ = keyed_server
    rows = api_check.auth_results(["chat"], url, "m", "sk-right")
    assert rows[0].ok
    # The server has no key from the check's view: anything is served, which it is not.
    keyless = api_check.auth_results(["chat"], url, "m", None)
    assert not keyless[0].ok and "401" in keyless[0].detail


# --- a check a person reads; requests sent together; a wrong parser stops it -------------

def _report(tmp: Any, rows: list[Any], summaries: list[Any]) -> Any:
    return api_check.CheckReport(rows, tmp / "checks" / "x.json",
                                 "--tool-call-parser glm45, --reasoning-parser glm45",
                                 tuple(summaries))


def _printed(report: Any, verbose: bool = False) -> list[str]:
    import io

    from rich.console import Console

    from glmkit.cli.views import print_check

    console = Console(file=io.StringIO(), width=160, color_system=None)
    print_check(console, report, verbose)
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def test_a_passing_check_prints_a_line_per_api_and_where_the_table_is(tmp_path: Any) -> None:
    from glmkit.run.tool_check import CaseResult

    rows = [CaseResult(f"case {i}", "auto", False, False, True, "ok", api=api)
            for api in api_check.APIS for i in range(70)]
    summaries = [api_check.summarize(api, [r for r in rows if r.api == api], 12.34)
                 for api in api_check.APIS]
    lines = _printed(_report(tmp_path, rows, summaries))
    assert len(lines) <= 10  # the quick start's check, every row passing (210 before)
    assert lines[0].split() == ["chat", "passed", "70", "requests", "in", "12.3", "s"]
    assert [line.split()[0] for line in lines[:3]] == list(api_check.APIS)
    assert lines[-1].startswith(f"saved {tmp_path / 'checks' / 'x.json'} ")
    assert "invoke check --verbose" in lines[-1]
    # --verbose: the whole table as before.
    verbose = _printed(_report(tmp_path, rows, summaries), verbose=True)
    assert sum(bool(re.search(r"\bpass\b", line)) for line in verbose) == 210


def test_a_failing_check_prints_its_failing_rows_only(tmp_path: Any) -> None:
    from glmkit.run.tool_check import CaseResult

    rows = [CaseResult("typed-arguments", "auto", True, True, True, "ok"),
            CaseResult("unicode-arguments", "required", False, False, False,
                       "InternalServerError: Error code: 500")]
    out = "\n".join(_printed(_report(tmp_path, rows,
                                     [api_check.summarize("chat", rows, 3.0, not_run=5)])))
    assert "chat       FAILED  1 of 2 requests in 3.0 s, 5 not sent" in out
    assert "unicode-arguments" in out and "Error code: 500" in out
    assert "typed-arguments" not in out


def test_matrix_requests_go_together_up_to_the_limit_in_the_matrix_order() -> None:
    import time

    from glmkit.run.tool_check import requests_for, run_matrix

    reqs = requests_for(quick=False)
    busy = {"now": 0, "most": 0}
    lock = threading.Lock()

    def answer(req: Request) -> str | None:
        with lock:
            busy["now"] += 1
            busy["most"] = max(busy["most"], busy["now"])
        time.sleep(0.002)
        with lock:
            busy["now"] -= 1
        return None if req.stream else "not streamed"

    run = run_matrix(reqs, answer, concurrency=4)
    assert busy["most"] == 4 and not run.stopped
    assert [r for r, _ in run.answered] == reqs
    assert [p for _, p in run.answered] == [None if r.stream else "not streamed" for r in reqs]


@pytest.mark.parametrize(("problem", "stops"), [
    ("no tool call parsed (content: 'x'): is --tool-call-parser right for this model?", True),
    ("no reasoning in the reply: is --reasoning-parser set?", True),
    ("tool markup in text: no tool call parsed (content: ''): is --tool-call-parser right "
     "for this model? [upstream: vllm-project/vllm#36435 (...)]", False),
    ("InternalServerError: Error code: 500", False),
])
def test_the_first_case_that_proves_the_parser_wrong_stops_the_matrix(
        problem: str, stops: bool) -> None:
    from glmkit.run.tool_check import requests_for, run_matrix

    reqs = requests_for(quick=False)
    third = reqs[2]
    run = run_matrix(reqs, lambda req: problem if req is third else None, concurrency=1)
    assert run.stopped == stops
    assert len(run.answered) == (3 if stops else len(reqs))
    assert run.not_run == len(reqs) - len(run.answered)


def test_a_server_without_parsers_is_proven_wrong_by_its_first_reply(
        keyed_server: tuple[str, dict[str, int]]) -> None:
    from glmkit.run.tool_check import case_results, chat_matrix, requests_for

    url, seen = keyed_server  # it answers "hi", no reasoning, no tool call
    run = chat_matrix(url, "m", "sk-right", exact=True, concurrency=1)
    assert [(r.label, p) for r, p in run.answered] == [
        ("typed-arguments", "no reasoning in the reply: is --reasoning-parser set?")]
    assert run.not_run == len(requests_for(quick=False)) - 1 and seen["bearer"] == 1
    assert case_results(run, "messages")[0].api == "messages"


@pytest.mark.parametrize(("args", "limit"), [
    ((), 8), (("--max-num-seqs", "2"), 2), (("--max-num-seqs=64",), 8),
    (("--max-num-seqs", "0"), 8), (("--max-num-seqs", "many"), 8)])
def test_check_concurrency_follows_the_servers_max_num_seqs(
        args: tuple[str, ...], limit: int) -> None:
    from glmkit.run.tool_check import check_concurrency

    assert check_concurrency(("/model", *args)) == limit
