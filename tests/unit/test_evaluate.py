"""`invoke eval`'s run (#34) against an in-process fake OpenAI-compatible server: every
answer stored once, the score gated, and a server that answers garbage, times out or
stops mid-run leaves the finished questions and a run marked partial."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from glmkit.errors import AccuracyFailed, BenchFailed, UsageError
from glmkit.measure.accuracy import PROTOCOLS, Problem
from glmkit.measure.eval_data import EvalSet
from glmkit.measure.eval_gate import load_references
from glmkit.measure.evaluate import (
    ANSWERS,
    EVAL_DIR,
    FEWSHOT,
    MAX_FAILURES_IN_A_ROW,
    META,
    PROBES,
    SUMMARY,
    Endpoint,
    EvalRequest,
    Provenance,
    evaluate,
    parse_request,
    request_body,
    select,
    served_names,
    server_context,
)

TRAIN = tuple(Problem(f"Ann has {i} apples and gets 2 more. How many?",
                      f"{i} + 2 = {i + 2}\n#### {i + 2}") for i in range(5))
TEST = tuple(Problem(f"Bob has {i} pears and gets 3 more. How many?",
                     f"{i} + 3 = {i + 3}\n#### {i + 3}") for i in range(10, 30))
SET = EvalSet("tiny-arith", "sha256-test", "tests", TRAIN, TEST)
QUESTION = re.compile(r"Bob has (\d+) pears")

Reply = Callable[[dict[str, Any], int], Any]  # (request body, request number) -> reply
# /tokenize's count: one for every prompt, one per prompt, or no such route (None)
Tokens = int | Callable[[dict[str, Any]], int] | None


def right(body: dict[str, Any], _: int) -> Any:
    """A model that adds: the right answer for every question."""
    text = body.get("prompt") or body["messages"][-1]["content"]
    found = QUESTION.findall(text)
    n = int(found[-1]) + 3 if found else 0
    if "messages" in body:
        return {"choices": [{"message": {"content": f"So {n}.\n#### {n}",
                                         "reasoning": f"{n - 3} + 3"},
                             "finish_reason": "stop"}], "usage": {"completion_tokens": 9}}
    return {"choices": [{"text": f" {n - 3} + 3 = {n}\n#### {n}", "finish_reason": "stop"}],
            "usage": {"completion_tokens": 9}}


def off_by_one(body: dict[str, Any], i: int) -> Any:
    """A broken copy: most answers one too many."""
    reply = right(body, i)
    text = reply["choices"][0]["text"]
    n = int(text.rsplit("#### ", 1)[1])
    return reply if i % 4 == 0 else {"choices": [{"text": f" #### {n + 1}"}]}


@contextmanager
def server(reply: Reply, key: str | None = None, tokens: Tokens = None
           ) -> Iterator[tuple[str, list[Any]]]:
    seen: list[Any] = []
    count = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # /v1/models: the served model's context
            self._send(200, json.dumps({"data": [
                {"id": "other", "max_model_len": 9}, {"id": "glmkit/glm-tiny",
                                                     "max_model_len": 2048}]}).encode())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/tokenize":  # vLLM's count, or no such route (None)
                with lock:
                    seen.append((self.path, body, self.headers.get("Authorization")))
                if tokens is None:
                    return self._send(404, b'{"detail": "Not Found"}')
                counted = tokens(body) if callable(tokens) else tokens
                return self._send(200, json.dumps({"count": counted}).encode())
            with lock:
                count[0] += 1
                number = count[0]
                seen.append((self.path, body, self.headers.get("Authorization")))
            if key and self.headers.get("Authorization") != f"Bearer {key}":
                return self._send(401, b'{"error": "bad key"}')
            out = reply(body, number)
            if out is None:  # the server dies: the connection closes without a reply
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if isinstance(out, float):  # stall this long
                time.sleep(out)
                out = right(body, number)
            data = out if isinstance(out, bytes) else json.dumps(out).encode()
            self._send(200, data)

        def _send(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


PROVENANCE = Provenance(model="glmkit/glm-tiny", image="glmkit/vllm-cpu:test",
                        vllm_version="0.32.0", serve_args=("--max-model-len", "4096"),
                        hardware={"description": "cpu", "gpus": []})


def run(tmp_path: Path, reply: Reply, *, provenance: Provenance = PROVENANCE,
        key: str | None = None, references: list[Any] | None = None,
        context: int | None = None, tokens: Tokens = None,
        **change: Any) -> tuple[Any, list[Any]]:
    request = EvalRequest(project="p", **{"protocol": PROTOCOLS["completions-5shot"], **change})
    with server(reply, key, tokens) as (url, seen):
        report = evaluate(request, Endpoint(url, provenance.model, key), provenance,
                          tiny=True, results_dir=tmp_path / "results",
                          hf_cache=tmp_path / "hf", references=references or [],
                          load=lambda name, _: SET, concurrency=4, context=context)
    return report, seen


def test_a_right_server_scores_one_and_every_answer_is_stored(tmp_path: Path) -> None:
    report, seen = run(tmp_path, right, key="sk-test")
    assert report.status == "complete" and report.answered == len(TEST)
    assert report.correct == {"strict": 20, "flexible": 20, "last-integer": 20}
    line = report.summary_line()
    assert line.startswith("tiny-arith completions-5shot: flexible 1.000 (95% CI 0.839-1.000)"
                           ", strict 1.000, n=20")
    assert "no reference for glmkit/glm-tiny" in line and "\n" not in line
    report.check()
    # Requests: the protocol's body, the key as Bearer, the few-shot block once per run.
    path, body, auth = seen[0]
    assert (path, auth) == ("/v1/completions", "Bearer sk-test")
    assert (body["max_tokens"], body["temperature"], body["stop"]) == \
        (256, 0.0, ["Question", "Assistant:", "<|separator|>"])
    folder = report.path
    assert folder.parent == tmp_path / "results" / EVAL_DIR
    block = (folder / FEWSHOT).read_text()
    assert block.count("Question: Ann has") == 5 and body["prompt"].startswith(block)
    lines = (folder / ANSWERS).read_text().splitlines()
    assert len(lines) == 20 and block not in "".join(lines)
    first = json.loads(lines[0])
    assert (first["index"], first["target"], first["verdict"]["flexible"]) == (0, "13", True)
    assert first["extracted"]["strict"] == "13" and len(first["prompt_id"]) == 16
    meta = json.loads((folder / META).read_text())
    assert meta["protocol"]["name"] == "completions-5shot" and meta["vllm_version"] == "0.32.0"
    assert meta["dataset"] == {"name": "tiny-arith", "revision": "sha256-test",
                               "source": "tests", "test_questions": 20}
    assert json.loads((folder / SUMMARY).read_text())["status"] == "complete"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # nothing staged


def test_a_broken_copy_fails_against_the_saved_baseline(tmp_path: Path) -> None:
    saved, _ = run(tmp_path, right, save_baseline=True)
    assert saved.baseline is not None and "saved as the baseline" in saved.summary_line()
    copy = replace(PROVENANCE, model="glm-tiny-perturbed")
    report, _ = run(tmp_path, off_by_one, provenance=copy, against="glmkit/glm-tiny",
                    dataset=None)
    assert report.dataset == "tiny-arith"  # the set follows the reference
    [outcome] = report.outcomes
    assert outcome.verdict == "fail" and "z = " in outcome.detail
    with pytest.raises(AccuracyFailed) as err:
        report.check()
    message = str(err.value)
    assert "flexible 0.250 on 20 questions is 0.750 below baseline of glmkit/glm-tiny" in message
    assert "source: " in message and str(saved.baseline) in message
    # The same model again compares with its own baseline without being told.
    again, _ = run(tmp_path, right)
    assert [o.verdict for o in again.outcomes] == ["pass"]


def test_garbage_replies_leave_a_partial_run(tmp_path: Path) -> None:
    report, seen = run(tmp_path, lambda b, i: right(b, i) if i <= 3 else b"<html>oops",
                       concurrency=1)
    assert report.status == "partial" and report.answered == 3
    assert len(seen) == 3 + MAX_FAILURES_IN_A_ROW  # then it stops sending
    assert "server stopped answering" in (report.stop_reason or "")
    assert "garbage reply" in (report.stop_reason or "")
    with pytest.raises(BenchFailed, match=r"eval partial: 3 of 20 questions answered") as err:
        report.check()
    assert "\n" not in str(err.value)
    kept = (report.path / ANSWERS).read_text().splitlines()
    assert len(kept) == 3 + MAX_FAILURES_IN_A_ROW
    assert json.loads((report.path / SUMMARY).read_text())["status"] == "partial"
    assert "[PARTIAL: 3 of 20 answered]" in report.summary_line()


def test_a_server_that_dies_mid_run(tmp_path: Path) -> None:
    report, _ = run(tmp_path, lambda b, i: right(b, i) if i <= 6 else None)
    assert report.status == "partial" and 6 <= report.answered < 20
    assert "server stopped answering" in (report.stop_reason or "")


def test_slow_replies_time_out_and_the_rest_are_kept(tmp_path: Path) -> None:
    report, _ = run(tmp_path, lambda b, i: 2.0 if i == 2 else right(b, i), timeout_s=0.3)
    assert report.status == "partial" and report.answered == 19
    assert "no reply within 0.3 s" in (report.stop_reason or "")


def test_a_wrong_key_is_a_failed_run_not_a_score(tmp_path: Path) -> None:
    request = EvalRequest(project="p", protocol=PROTOCOLS["completions-5shot"])
    with server(right, key="sk-right") as (url, _):
        report = evaluate(request, Endpoint(url, "glmkit/glm-tiny", "sk-wrong"), PROVENANCE,
                          tiny=True, results_dir=tmp_path, hf_cache=tmp_path,
                          references=[], load=lambda name, _: SET, concurrency=2)
    assert report.answered == 0 and "HTTP 401" in (report.stop_reason or "")
    with pytest.raises(BenchFailed):
        report.check()


def test_a_sample_is_seeded_recorded_and_gated_on_its_interval(tmp_path: Path) -> None:
    assert select(20, 5, 7) == select(20, 5, 7) != select(20, 5, 8)
    assert select(20, None, 7) == select(20, 50, 7) == list(range(20))
    report, seen = run(tmp_path, right, limit=5, seed=7)
    assert len(seen) == 5 and report.sample and "(sample of 5)" in report.summary_line()
    meta = json.loads((report.path / META).read_text())
    assert meta["selection"] == {"limit": 5, "seed": 7, "indices": select(20, 5, 7)}
    with pytest.raises(UsageError, match="--limit 21: tiny-arith has 20 test questions"):
        run(tmp_path, right, limit=21)


def test_a_published_row_of_another_protocol_is_shown_not_compared(tmp_path: Path) -> None:
    rows = [r.model_copy(update={"model": "glmkit/glm-tiny", "checkpoint": "glmkit/glm-tiny",
                                 "dataset": "tiny-arith"}) for r in load_references()
            if r.id == "recipes-rocm-glm-5.3-flash-mi300x"]
    report, _ = run(tmp_path, off_by_one, references=rows)
    assert [o.verdict for o in report.outcomes] == ["not compared"]
    assert "lm-eval-5shot-chat" in report.summary_line()
    report.check()  # nothing compared: no gate failed


def test_a_threshold_row_gates_and_names_its_source(tmp_path: Path) -> None:
    rows = [r.model_copy(update={"model": "glmkit/glm-tiny", "checkpoint": "glmkit/glm-tiny",
                                 "dataset": "tiny-arith", "quantization": "fp8"})
            for r in load_references() if r.id == "vllm-ci-glm-4.7-flash"]
    report, _ = run(tmp_path, off_by_one, references=rows)
    with pytest.raises(AccuracyFailed,
                       match=r"0\.590 below vllm-ci-glm-4\.7-flash's threshold 0\.84 .*source: https://"):
        report.check()
    assert "differs: quantization" not in report.summary_line()  # not known for the run
    fp8 = replace(PROVENANCE, quantization="bf16")
    passed, _ = run(tmp_path, right, references=rows, provenance=fp8)
    assert "pass" in passed.summary_line()
    assert "differs: quantization bf16 (reference: fp8)" in passed.summary_line()


def test_chat_thinking_reads_content_and_catches_think_markup(tmp_path: Path) -> None:
    def leaky(body: dict[str, Any], i: int) -> Any:
        reply = right(body, i)
        if i % 2:  # the template and the parser disagree: thinking lands in content
            message = reply["choices"][0]["message"]
            message["content"] = f"<think>{message['reasoning']}</think>{message['content']}"
            message["reasoning"] = None
        return reply

    good, seen = run(tmp_path, right, protocol=PROTOCOLS["chat-thinking"])
    assert good.correct["flexible"] == 20 and seen[0][0] == "/v1/chat/completions"
    assert seen[0][1]["chat_template_kwargs"] == {"enable_thinking": True}
    bad, _ = run(tmp_path, leaky, protocol=PROTOCOLS["chat-thinking"])
    assert bad.status == "complete" and bad.correct["flexible"] == 10
    assert {a.format for a in bad.answers} == {None, "think markup in content"}


@pytest.mark.parametrize(("options", "message"), [
    ({"limit": "0"}, "--limit must be at least 1"),
    ({"limit": "-3"}, "--limit must be at least 1"),
    ({"limit": "lots"}, "--limit: expected a number"),
    ({"limit": "9" * 400}, "--limit must be at most 1,048,576"),
    ({"protocol": "five-shot"}, "--protocol 'five-shot': choose"),
    ({"dataset": "mmlu"}, "--dataset 'mmlu': choose gsm8k or tiny-arith"),
    ({"concurrency": "0"}, "--concurrency must be at least 1"),
    ({"against": "x\x1b[2J"}, "--against"),
    ({"label": "../x"}, "must be a plain name"),
])
def test_bad_options_are_one_line(options: dict[str, str], message: str) -> None:
    given: dict[str, Any] = {"protocol": None, "dataset": None, "limit": None, "seed": None,
                             "concurrency": None, "against": None, "save_baseline": False,
                             "model": None, **options}
    with pytest.raises(UsageError, match=re.escape(message)) as err:
        parse_request("glmkit", **given)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


def test_request_bodies_follow_the_protocol() -> None:
    path, body = request_body(PROTOCOLS["chat-thinking"], "m", "", "How many?")
    assert path == "/v1/chat/completions" and "prompt" not in body
    assert body["messages"][0]["content"].startswith("How many?\n\n")
    assert served_names(("--served-model-name", "a", "b", "--port", "1"), "a") == ["a", "b"]
    assert served_names(("--served-model-name=c",), "a") == ["a", "c"]


def test_ctrl_c_stops_at_once_and_keeps_what_came_back(tmp_path: Path) -> None:
    from glmkit.measure.evaluate import ask_all

    seen: list[int] = []

    def interrupt(answer: Any) -> None:
        seen.append(answer.index)
        if len(seen) == 3:
            raise KeyboardInterrupt

    questions = list(enumerate(TEST))
    with server(lambda b, i: right(b, i) if i <= 3 else 5.0) as (url, _):
        started = time.monotonic()
        asked = ask_all(Endpoint(url, "m"), PROTOCOLS["completions-5shot"], "", questions,
                        1, 30.0, interrupt)
        # Not held by the request in flight (5 s): the workers are daemon threads.
        assert time.monotonic() - started < 2.5
    assert asked.status == "interrupted" and len(asked.answers) == 3


def test_a_run_that_fails_its_gate_or_is_partial_is_not_saved_as_a_baseline(
        tmp_path: Path) -> None:
    saved, _ = run(tmp_path, right, save_baseline=True)
    worse, _ = run(tmp_path, off_by_one, save_baseline=True)
    assert worse.baseline is None and "not saved as a baseline: it failed the gate" in \
        worse.summary_line()
    partial, _ = run(tmp_path, lambda b, i: right(b, i) if i <= 6 else None,
                     save_baseline=True)
    assert partial.baseline is None and "the run is partial" in partial.summary_line()
    assert saved.baseline is not None
    again, _ = run(tmp_path, right)  # still compared with the first, good one
    assert again.outcomes[0].target.n == 20 and again.outcomes[0].verdict == "pass"


def test_max_tokens_is_cut_to_the_servers_context(tmp_path: Path) -> None:
    """chat-thinking's 4,096 tokens on a server of --max-model-len 2048 (the tiny one):
    vLLM answers every such request HTTP 400, so the run asks for what the context leaves
    after the prompts, as the server counts the longest of them (with a margin), says so,
    and does not save the run as a baseline (it was not asked the protocol's question)."""
    report, seen = run(tmp_path, right, protocol=PROTOCOLS["chat-thinking"], context=2048,
                       tokens=100, key="k", save_baseline=True)
    asked = [body for path, body, _ in seen if path != "/tokenize"]
    tokenized = [(body, auth) for path, body, auth in seen if path == "/tokenize"]
    assert report.correct["flexible"] == 20
    assert {body["max_tokens"] for body in asked} == {2048 - (100 + 16 + 5)}
    assert len(tokenized) == PROBES and {auth for _, auth in tokenized} == {"Bearer k"}
    assert tokenized[0][0]["chat_template_kwargs"] == {"enable_thinking": True}
    line = report.summary_line()
    assert ("max_tokens 1,927, not 4,096: the server's --max-model-len is 2,048 and the "
            "prompts take up to 121 tokens") in line
    assert line.count("max_tokens 1,927, not 4,096: the server's") == 1
    assert "not saved as a baseline: its max_tokens 1,927, not 4,096" in line
    assert report.baseline is None
    meta = json.loads((report.path / META).read_text())
    assert meta["protocol"]["max_tokens"] == 1927 and meta["server_context"] == 2048
    assert meta["prompt_tokens"] == {"tokens": 121, "counted_by": "server"}


def test_a_shorter_prompt_with_more_tokens_sets_the_cut(tmp_path: Path) -> None:
    """Characters do not order tokens: the fourth longest question counts 120 tokens, the
    others 40, and the cut leaves room for it."""
    fourth = sorted(TEST, key=lambda p: len(p.question), reverse=True)[3].question

    def count(body: dict[str, Any]) -> int:
        return 120 if fourth in body["messages"][0]["content"] else 40

    _, seen = run(tmp_path, right, protocol=PROTOCOLS["chat-thinking"], context=2048,
                  tokens=count)
    assert {body["max_tokens"] for path, body, _ in seen if path != "/tokenize"} == \
        {2048 - (120 + 16 + 6)}


def test_a_prompt_that_fits_by_its_characters_asks_nothing(tmp_path: Path) -> None:
    report, seen = run(tmp_path, right, context=2048, tokens=300)
    assert {body["max_tokens"] for path, body, _ in seen if path != "/tokenize"} == {256}
    assert not [path for path, _, _ in seen if path == "/tokenize"]
    assert "max_tokens" not in report.summary_line()


def test_without_tokenize_the_prompts_characters_bound_it(tmp_path: Path) -> None:
    report, seen = run(tmp_path, right, protocol=PROTOCOLS["chat-thinking"], context=2048)
    asked = [body for path, body, _ in seen if path != "/tokenize"]
    (cut,) = {body["max_tokens"] for body in asked}
    longest = max(len(body["messages"][0]["content"]) for body in asked)
    assert cut == 2048 - longest - 64
    assert "(their characters: the server did not count)" in report.summary_line()


def test_a_context_too_short_to_answer_in_is_one_line_and_no_run(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--max-model-len 200 leaves \d+ tokens to answer"):
        run(tmp_path, right, protocol=PROTOCOLS["chat-thinking"], context=200, tokens=190)
    assert not (tmp_path / "results" / EVAL_DIR).exists() or not any(
        p for p in (tmp_path / "results" / EVAL_DIR).iterdir() if p.name != "baselines")


def test_the_servers_context_is_read_from_its_model_card() -> None:
    with server(right) as (url, _):
        assert server_context(url, None, "glmkit/glm-tiny") == 2048
        assert server_context(url, None, "missing") is None
    assert server_context("http://127.0.0.1:9", None, "glmkit/glm-tiny") is None
