"""`invoke check --api`: the Anthropic Messages and OpenAI Responses cases, judged on
replies and event streams made by hand, and authentication against a local HTTP server
that checks headers as vLLM does (the real server's run is in tests/e2e)."""

from __future__ import annotations

import http.server
import json
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
