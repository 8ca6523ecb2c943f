"""One real chat round-trip after start-up, so "ready" means usable, not just /health.

Checks only structure (status, keys, finish_reason), never generated text: the tiny
model has random weights. A named tool choice with thinking off gives a parsed tool
call on any model; a request with thinking on must put text in the reasoning field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                # An enum keeps a random model's arguments short and valid.
                "city": {"type": "string", "enum": ["Paris", "Berlin", "Tokyo"]},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}


@dataclass(frozen=True)
class SmokeResult:
    tool_call_ok: bool
    reasoning_ok: bool
    tool_detail: str
    reasoning_detail: str

    @property
    def ok(self) -> bool:
        return self.tool_call_ok and self.reasoning_ok


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def chat(base_url: str, body: dict[str, Any], api_key: str | None = None,
         timeout: float = 120) -> dict[str, Any]:
    response = requests.post(f"{base_url}/v1/chat/completions", json=body,
                             headers=_headers(api_key), timeout=timeout)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def reasoning_text(message: dict[str, Any]) -> str:
    # vLLM >= 0.2x names it `reasoning`; older versions and the recipes `reasoning_content`.
    return str(message.get("reasoning") or message.get("reasoning_content") or "")


def check_tool_call(base_url: str, model: str, api_key: str | None = None) -> tuple[bool, str]:
    data = chat(base_url, {
        "model": model,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "chat_template_kwargs": {"enable_thinking": False},
        "temperature": 0, "seed": 0, "max_tokens": 64,
    }, api_key)
    calls = data["choices"][0]["message"].get("tool_calls") or []
    if calls and calls[0]["function"]["name"] == "get_weather":
        return True, f"get_weather({calls[0]['function']['arguments']})"
    return False, f"no tool call in the reply: {data['choices'][0]['message']}"


def check_reasoning(base_url: str, model: str, api_key: str | None = None) -> tuple[bool, str]:
    data = chat(base_url, {
        "model": model,
        "messages": [{"role": "user", "content": "Think, then say hello."}],
        "chat_template_kwargs": {"enable_thinking": True},
        "temperature": 0, "seed": 0, "max_tokens": 32,
    }, api_key)
    message = data["choices"][0]["message"]
    reasoning = reasoning_text(message)
    if reasoning:
        return True, f"{len(reasoning)} characters of reasoning"
    return False, "the reply has no reasoning field: is --reasoning-parser set?"


def smoke_test(base_url: str, model: str, api_key: str | None = None,
               tools: bool = True, reasoning: bool = True) -> SmokeResult:
    tool_ok, tool_detail = (check_tool_call(base_url, model, api_key) if tools
                            else (True, "skipped: no tool parser for this model"))
    reason_ok, reason_detail = (check_reasoning(base_url, model, api_key) if reasoning
                                else (True, "skipped: no reasoning parser for this model"))
    return SmokeResult(tool_ok, reason_ok, tool_detail, reason_detail)
