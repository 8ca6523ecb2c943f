"""The agentic workload's client, run inside the serving container (`docker exec`), as
`vllm bench serve` is for the other workloads: the same Python and `openai` client the
image has, next to the server.

    python3 agentic_client.py TRACE.json OUT.json BASE_URL MODEL

Replays each session of the trace (a shared system prompt and tools, then turns that
each append the trace's tool call and its result), all sessions at once, every turn
streamed through /v1/chat/completions with a fixed output length. Per turn it records
TTFT, TPOT, the prompt tokens and the cached prompt tokens the server reports
(`usage.prompt_tokens_details.cached_tokens`, with --enable-prompt-tokens-details).
The key, if any, comes from OPENAI_API_KEY.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any


def run_turn(client: Any, model: str, trace: dict[str, Any], messages: list[dict[str, Any]]
             ) -> dict[str, Any]:
    started = time.perf_counter()
    first = None
    usage = None
    stream = client.chat.completions.create(
        model=model, messages=messages, tools=trace["tools"], stream=True,
        stream_options={"include_usage": True}, temperature=0,
        max_tokens=trace["output_len"],
        extra_body={"ignore_eos": True, "min_tokens": trace["output_len"],
                    "chat_template_kwargs": {"enable_thinking": False},
                    **({"cache_salt": trace["cache_salt"]} if trace.get("cache_salt") else {})})
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if first is None and chunk.choices:
            delta = chunk.choices[0].delta
            if delta.content or delta.tool_calls or getattr(delta, "reasoning", None):
                first = time.perf_counter()
    ended = time.perf_counter()
    out = usage.completion_tokens if usage else 0
    details = getattr(usage, "prompt_tokens_details", None) if usage else None
    ttft = ((first or ended) - started) * 1000
    return {"prompt_tokens": usage.prompt_tokens if usage else None,
            "cached_tokens": getattr(details, "cached_tokens", None) if details else None,
            "output_tokens": out, "ttft_ms": ttft,
            "tpot_ms": ((ended - (first or ended)) * 1000 / (out - 1)) if out > 1 else None,
            "e2e_ms": (ended - started) * 1000}


def run_session(client: Any, model: str, trace: dict[str, Any], index: int,
                rows: list[dict[str, Any]], errors: list[str]) -> None:
    session = trace["sessions"][index]
    messages: list[dict[str, Any]] = [{"role": "system", "content": trace["system"]},
                                      {"role": "user", "content": session["user"]}]
    for turn, step in enumerate(session["turns"]):
        try:
            row = run_turn(client, model, trace, messages)
        except Exception as err:  # recorded, and the session stops: its prefix is gone
            errors.append(f"session {index} turn {turn}: {type(err).__name__}: {err}"[:300])
            return
        rows.append({"session": index, "turn": turn, **row})
        # The trace's own call and result, whatever the model said: every server sees
        # the same prefixes.
        call_id = f"call_{index}_{turn}"
        messages += [{"role": "assistant", "content": "", "tool_calls": [
                         {"id": call_id, "type": "function", "function": {
                             "name": step["name"], "arguments": json.dumps(step["arguments"])}}]},
                     {"role": "tool", "tool_call_id": call_id, "content": step["result"]}]


def main() -> None:
    from openai import OpenAI

    trace_path, out_path, base_url, model = sys.argv[1:5]
    with open(trace_path) as f:
        trace = json.load(f)
    client = OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY",
                    timeout=600, max_retries=0)
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    started = time.time()
    threads = [threading.Thread(target=run_session, args=(client, model, trace, i, rows,
                                                          errors))
               for i in range(len(trace["sessions"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows.sort(key=lambda r: (r["session"], r["turn"]))
    with open(out_path, "w") as f:
        json.dump({"started": started, "finished": time.time(), "turns": rows,
                   "errors": errors}, f, indent=1)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
