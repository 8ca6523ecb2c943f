"""The agentic workload without a server: the trace is deterministic and shaped like an
agent's session, the client's replay logic on a fake client, the per-turn report, and
the checks on the two servers and the options."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace as NS
from typing import Any

import pytest

from glmkit.errors import UsageError
from glmkit.measure import agentic
from glmkit.run.server import RunningServer


def test_the_trace_is_the_same_for_the_same_spec_and_shares_its_prefix() -> None:
    spec = agentic.TraceSpec(sessions=3, turns=4, seed=7)
    a, b = agentic.make_trace(spec), agentic.make_trace(spec)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(agentic.make_trace(agentic.TraceSpec(seed=8)))
    assert len(a["sessions"]) == 3 and all(len(s["turns"]) == 4 for s in a["sessions"])
    assert len(a["system"].split()) > spec.system_words  # the long shared prefix
    assert len({s["user"] for s in a["sessions"]}) == 3  # sessions part after it
    names = {t["function"]["name"] for t in a["tools"]}
    assert all(step["name"] in names for s in a["sessions"] for step in s["turns"])


def load_client() -> Any:
    spec = importlib.util.spec_from_file_location("agentic_client", agentic.CLIENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeClient:
    """Streams one content chunk per output token; usage last, with cached tokens that
    grow as a cache would (everything but the last turn's appended part)."""

    def __init__(self) -> None:
        self.prompts: list[int] = []
        self.salts: list[str | None] = []
        self.chat = NS(completions=NS(create=self.create))

    def create(self, **body: Any) -> Any:
        self.salts.append(body["extra_body"].get("cache_salt"))
        size = len(json.dumps(body["messages"]))
        cached = self.prompts[-1] if self.prompts else 0
        self.prompts.append(size)
        out = body["max_tokens"]
        usage = NS(prompt_tokens=size, completion_tokens=out,
                   prompt_tokens_details=NS(cached_tokens=cached))
        return [NS(usage=None, choices=[NS(delta=NS(content="x", tool_calls=None))])
                for _ in range(out)] + [NS(usage=usage, choices=[])]


def test_the_client_replays_the_traces_calls_and_records_every_turn() -> None:
    client_module = load_client()
    trace = {**agentic.make_trace(agentic.TraceSpec(sessions=1, turns=3, output_len=4)),
             "cache_salt": "run-1"}  # this run's prefixes only, not an earlier run's
    fake = FakeClient()
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    client_module.run_session(fake, "m", trace, 0, rows, errors)
    assert not errors and [r["turn"] for r in rows] == [0, 1, 2]
    assert fake.prompts == sorted(fake.prompts)  # each turn appends to the last
    assert [r["cached_tokens"] for r in rows] == [0, *fake.prompts[:-1]]
    assert fake.salts == ["run-1"] * 3
    assert all(r["output_tokens"] == 4 and r["ttft_ms"] >= 0 and r["tpot_ms"] is not None
               for r in rows)


def test_a_failed_turn_stops_its_session_and_is_recorded() -> None:
    client_module = load_client()
    trace = agentic.make_trace(agentic.TraceSpec(sessions=1, turns=3))

    def refuse(**_: Any) -> Any:
        raise RuntimeError("400 prompt too long")

    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    client_module.run_session(NS(chat=NS(completions=NS(create=refuse))), "m", trace, 0,
                              rows, errors)
    assert rows == [] and errors == ["session 0 turn 0: RuntimeError: 400 prompt too long"]


def test_per_turn_means_and_the_off_on_ratio() -> None:
    on = [{"turn": 0, "ttft_ms": 100, "cached_tokens": 0, "prompt_tokens": 1000},
          {"turn": 1, "ttft_ms": 20, "cached_tokens": 900, "prompt_tokens": 1200},
          {"turn": 1, "ttft_ms": 40, "cached_tokens": 1100, "prompt_tokens": 1200}]
    off = [{"turn": 0, "ttft_ms": 110, "cached_tokens": 0, "prompt_tokens": 1000},
           {"turn": 1, "ttft_ms": 150, "cached_tokens": 0, "prompt_tokens": 1200}]
    rows = agentic.per_turn(on, off)
    assert [(r.turn, r.ttft_on_ms, r.ttft_off_ms, r.cached_on) for r in rows] == [
        (0, 100, 110, 0), (1, 30, 150, 1000)]
    assert rows[1].ttft_ratio == 5.0
    assert agentic.per_turn([], off)[0].ttft_ratio is None


def server(*args: str, image: str = "img", model: str = "m") -> RunningServer:
    return RunningServer(container=f"c{len(args)}", served_model=model, model_ref="/m",
                         max_model_len=65536, vendor="cpu", image=image,
                         serve_args=("/m", *args), base_url="http://127.0.0.1:1")


def test_the_two_servers_must_differ_in_prefix_caching_only() -> None:
    on = server(agentic.DETAILS_FLAG)
    off = server("--no-enable-prefix-caching", agentic.DETAILS_FLAG)
    agentic.check_pair(on, off)
    with pytest.raises(UsageError, match="must cache prefixes"):
        agentic.check_pair(off, off)
    with pytest.raises(UsageError, match="--bench-mode"):
        agentic.check_pair(on, on)
    with pytest.raises(UsageError, match="same image and model"):
        agentic.check_pair(on, server("--no-enable-prefix-caching", agentic.DETAILS_FLAG,
                                      model="other"))
    with pytest.raises(UsageError, match="--enable-prompt-tokens-details"):
        agentic.check_pair(server(), off)


@pytest.mark.parametrize(("sessions", "turns", "out"), [
    ("0", None, None), ("-1", None, None), ("x", None, None), ("1e9", None, None),
    (None, "65", None), (None, "1;rm", None), (None, None, "0"), ("257", None, None),
])
def test_hostile_trace_options_are_one_usage_line(sessions: str | None, turns: str | None,
                                                   out: str | None) -> None:
    with pytest.raises(UsageError) as err:
        agentic.parse_spec(sessions, turns, out)
    assert "\n" not in str(err.value)


def test_agentic_needs_the_comparison_project() -> None:
    with pytest.raises(UsageError, match="--off-project"):
        agentic.bench_agentic("p", None, agentic.TraceSpec(), agentic.CLIENT, print)
    with pytest.raises(UsageError, match="the project itself"):
        agentic.bench_agentic("p", "p", agentic.TraceSpec(), agentic.CLIENT, print)
    assert agentic.parse_spec("2", "3", "8") == agentic.TraceSpec(sessions=2, turns=3,
                                                                  output_len=8)
