"""The whole flow on a real Docker engine with the CPU vLLM image and the tiny GLM model.

invoke up --vendor cpu → chat with tools → reasoning → invoke bench (docker exec) → down.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from .common import FAKE_TOKEN, ROOT, TINY, invoke, port, project, runs_of

pytestmark = pytest.mark.e2e

PROJECT, PORT, BASE, SERVE = TINY.project, TINY.port, TINY.base, TINY.up_args
MODEL = "glmkit/glm-tiny"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def project_containers(project: str) -> list[str]:
    out = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
    return out.split()


@pytest.fixture
def server(tiny_server: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """The session's keyless tiny server (tests/e2e/conftest.py), started once."""
    return tiny_server


def chat(body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{BASE}/v1/chat/completions", json={"model": MODEL, **body},
                             timeout=120)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string", "enum": ["Paris", "Tokyo"]}}}}}


def test_up_reports_usable_server(server: subprocess.CompletedProcess[str]) -> None:
    assert "healthy after" in server.stdout
    assert "tool call (auto, not streamed, thinking off): ok" in server.stdout
    assert "tool call (auto, streamed, thinking on): ok" in server.stdout


def test_check_passes_every_case_with_the_glm45_parser(server: object) -> None:
    """Every API (chat, Anthropic messages, OpenAI responses) without an API key."""
    done = invoke("check", "--project", PROJECT, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    saved = Path(done.stdout.split("saved ")[-1].split()[0])
    cases = json.loads(saved.read_text())["cases"]
    from glmkit.run.tool_check import requests_for

    assert all(c["ok"] for c in cases)
    for api, any_ in (("chat", "required"), ("messages", "any"), ("responses", "required")):
        rows = [c for c in cases if c["api"] == api and not c["case"].startswith("auth")]
        assert len(rows) == len(requests_for(quick=False, api=api))
        assert {c["tool_choice"] for c in rows} == {"auto", any_, "none", "get_weather",
                                                    "get_time"}
    assert {(c["api"], c["detail"]) for c in cases if c["case"].startswith("auth")} == {
        ("chat", "served"), ("messages", "served"), ("responses", "served")}


def test_a_wrong_tool_parser_fails_the_check_with_a_clear_line(server: object) -> None:
    parser = project("parser")
    try:
        done = invoke("up", "--vendor", "cpu", "--project", parser, "--port", str(port("parser")),
                      "--enforce-eager", "--", "--tool-call-parser", "hermes", timeout=600)
        # The server is healthy; its tool calls do not parse: the check's code, not a crash's.
        assert done.returncode == 7, done.stdout + done.stderr
        assert "no tool call parsed" in done.stderr
        assert "is --tool-call-parser right for this model?" in done.stderr
        check = invoke("check", "--project", parser, timeout=600)
        assert check.returncode == 7
        assert "--tool-call-parser hermes" in check.stderr
        # The first case that proves the parser wrong ends the check: the rest not sent.
        assert "more not sent: the parser was proven wrong" in check.stderr
    finally:
        invoke("down", "--project", parser, timeout=120)


def test_chat_with_tools_is_a_valid_openai_response(server: object) -> None:
    # The tiny model knows the kit's own cases (data/tool_cases.json), not any phrasing:
    # with `required`, vLLM constrains the call's shape, not that `city` is filled in
    # (an untaught "Weather in Paris?" got `{}` from the retrained model).
    cases = json.loads((ROOT / "src/glmkit/data/tool_cases.json").read_text())
    data = chat({"messages": [{"role": "user", "content":
                               "Weather in Paris for 3 days, metric, hourly in English?"}],
                 "tools": cases["tools"], "tool_choice": "required",
                 "chat_template_kwargs": {"enable_thinking": False},
                 "temperature": 0, "seed": 0, "max_tokens": 64})
    assert data["object"] == "chat.completion"
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant"
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["city"] == "Paris"
    assert data["usage"]["completion_tokens"] > 0


def test_streaming_with_tools_ends_with_done(server: object) -> None:
    body = {"model": MODEL, "stream": True, "tools": [WEATHER], "max_tokens": 16,
            "messages": [{"role": "user", "content": "Weather?"}], "temperature": 0}
    with requests.post(f"{BASE}/v1/chat/completions", json=body, stream=True,
                       timeout=120) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines(decode_unicode=True) if line]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0].removeprefix("data: "))["object"] == "chat.completion.chunk"


def test_reasoning_on_and_off(server: object) -> None:
    thinking = chat({"messages": [{"role": "user", "content": "Why is the sky blue?"}],
                     "chat_template_kwargs": {"enable_thinking": True},
                     "temperature": 0, "seed": 0, "max_tokens": 24})
    message = thinking["choices"][0]["message"]
    assert message.get("reasoning") or message.get("reasoning_content")
    plain = chat({"messages": [{"role": "user", "content": "Why is the sky blue?"}],
                  "chat_template_kwargs": {"enable_thinking": False},
                  "temperature": 0, "seed": 0, "max_tokens": 24})
    assert not (plain["choices"][0]["message"].get("reasoning")
                or plain["choices"][0]["message"].get("reasoning_content"))


def test_status_lists_the_server(server: object) -> None:
    done = invoke("status", timeout=60)
    assert done.returncode == 0
    assert PROJECT in done.stdout and "ready" in done.stdout and MODEL in done.stdout
    rows = [r for r in json.loads(invoke("status", "--json", timeout=60).stdout)
            if r["project"] == PROJECT]
    assert len(rows) == 1 and rows[0]["api"] == "ready" and rows[0]["vendor"] == "cpu"
    logs = invoke("logs", "--project", PROJECT, "--tail", "20", timeout=60)
    assert logs.returncode == 0 and "vllm-1  |" in logs.stdout


def test_token_never_written(server: object) -> None:
    compose_file = ROOT / "compose" / f"{PROJECT}.yaml"
    assert compose_file.exists()
    assert FAKE_TOKEN not in compose_file.read_text()
    assert FAKE_TOKEN not in server.stdout + server.stderr  # type: ignore[attr-defined]
    # The container does get it, by name, from the environment of `docker compose up`.
    env = docker("inspect", "--format", "{{json .Config.Env}}", project_containers(PROJECT)[0])
    assert f"HF_TOKEN={FAKE_TOKEN}" in json.loads(env)


def new_runs(before: set[Path]) -> list[Path]:
    return runs_of(PROJECT, before)


def existing_runs() -> set[Path]:
    return set(runs_of(PROJECT))


def test_bench_default_is_the_recipe_run_fitted_to_context(server: object) -> None:
    before = existing_runs()
    done = invoke("bench", "--project", PROJECT, "--num-prompts", "4", timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exceed the served context (2048)" in done.stdout
    assert "prefix caching is on" in done.stdout  # hygiene warning: not in bench mode
    (run_dir,) = new_runs(before)
    result = json.loads((run_dir / "points" / "batch-0004.json").read_text())
    assert result["completed"] == 4 and result["failed"] == 0
    assert result["output_throughput"] > 0
    assert result["total_input_tokens"] > 4 * 1000  # 8000:1000 kept, scaled to 2048
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["vendor"] == "cpu" and meta["model"] == MODEL
    assert meta["workload"]["name"] == "prompt-heavy"
    assert meta["image_digest"] and meta["glmkit_version"]
    assert FAKE_TOKEN not in (run_dir / "meta.json").read_text()
    # The server's own view of the point, sampled from /metrics while it ran.
    metrics = json.loads((run_dir / "metrics" / "batch-0004.json").read_text())
    # Every request finished during the point (a counter, exact); the running gauge is
    # sampled every 0.25 s and may miss a point this short, so only its presence is checked.
    assert metrics["summary"]["requests_finished"] == 4
    assert "running_peak" in metrics["summary"]
    assert metrics["summary"]["generation_tok_s"] > 0
    assert "kv_cache_usage_peak" in metrics["summary"] and len(metrics["samples"]) >= 2
    assert "server metrics during each point" in done.stdout
    assert (run_dir / "metrics.png").read_bytes()[:4] == b"\x89PNG"


def sigint_default() -> None:
    """The bench takes Ctrl-C as a user's shell delivers it, even where pytest was started
    with SIGINT ignored (a background `cmd &` without job control ignores it and children
    inherit that: the bench then ran to its end and the interrupt was never tested)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sweep_interrupted_resumed_and_compared(server: object) -> None:
    before = existing_runs()
    args = ["bench", "--project", PROJECT, "--workload", "custom", "--input-len", "64",
            "--output-len", "64", "--batch", "1,4,8"]
    proc = subprocess.Popen([sys.executable, "-m", "invoke", *args, "--label", "first"],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=sigint_default)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        runs = new_runs(before)
        if runs and list((runs[0] / "points").glob("*.json")):
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out + err
    (run_dir,) = new_runs(before)
    assert "--resume" in err and "missing batches" in err
    assert (run_dir / "points" / "batch-0001.json").exists()
    assert not (run_dir / "points" / "batch-0008.json").exists()

    resumed = invoke("bench", "--project", PROJECT, "--resume", run_dir.name, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sorted(p.name for p in (run_dir / "points").glob("*.json")) == \
        ["batch-0001.json", "batch-0004.json", "batch-0008.json"]
    assert (run_dir / "report.png").read_bytes()[:4] == b"\x89PNG"

    second = invoke(*args[:-1], "4,8", "--label", "second", timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    second_dir = next(p for p in new_runs(before) if p != run_dir)
    out_dir = ROOT / "results" / "reports" / "e2e"
    report = invoke("report", "--compare", "--runs", run_dir.name, "--runs", second_dir.name,
                    "--out", str(out_dir), timeout=120)
    assert report.returncode == 0, report.stdout + report.stderr
    assert "second / first" in report.stdout
    assert (out_dir / "report.png").read_bytes()[:4] == b"\x89PNG"
    csv_lines = (out_dir / "report.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 3 + 2


# The server restarts (a minute of the session's only keyless server): after the tests
# that need it as it is.
@pytest.mark.ends_server
def test_a_crashed_server_comes_back_and_status_counts_it(server: object) -> None:
    (container,) = project_containers(PROJECT)
    # vLLM is PID 1: ending it is a crash as Docker sees it, not a `docker stop`.
    docker("exec", container, "python3", "-c", "import os, signal; os.kill(1, signal.SIGTERM)")
    deadline = time.monotonic() + 300
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = invoke("status", "--json", timeout=60)
        assert status.returncode == 0, status.stderr
        row = next(r for r in json.loads(status.stdout) if r["project"] == PROJECT)
        if row["restarts"] >= 1 and row["api"] == "ready":
            break
        time.sleep(2)
    assert row["restarts"] >= 1 and row["api"] == "ready", row
    assert "restarts" in invoke("status", timeout=60).stdout


def test_up_again_keeps_the_healthy_server(server: object) -> None:
    before = docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}",
                    project_containers(PROJECT)[0])
    done = invoke("up", "--project", PROJECT, *SERVE, "--no-smoke", env={"HF_TOKEN": FAKE_TOKEN})
    assert done.returncode == 0, done.stderr
    after = docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}",
                   project_containers(PROJECT)[0])
    assert before == after


def test_port_in_use_is_refused_before_anything_starts(server: object) -> None:
    refused = project("port")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        done = invoke("up", "--vendor", "cpu", "--project", refused,
                      "--port", str(taken), timeout=120)
    assert done.returncode == 3
    assert f"Port {taken} on 127.0.0.1 is in use" in done.stderr
    assert "Traceback" not in done.stderr
    assert project_containers(refused) == []
    assert not (ROOT / "compose" / f"{refused}.yaml").exists()


def test_crash_at_start_fails_fast_with_the_log_tail(server: object) -> None:
    started = time.monotonic()
    # A flag vLLM knows with a value only vLLM's own parser refuses: the server exits at
    # start (an unknown flag is refused by glmkit's policy before anything starts).
    crash = project("crash")
    done = invoke("up", "--vendor", "cpu", "--project", crash, "--port", str(port("crash")),
                  "--", "--max-num-seqs", "many", timeout=300)
    elapsed = time.monotonic() - started
    try:
        assert done.returncode == 5
        assert "--max-num-seqs: invalid" in done.stderr
        assert "exited with code" in done.stderr
        assert elapsed < 120, f"took {elapsed:.0f} s: the crash was not noticed at once"
    finally:
        invoke("down", "--project", crash, timeout=120)


@pytest.mark.ends_server  # replaces the shared server with another configuration
def test_up_with_a_changed_config_recreates_the_server(server: object) -> None:
    before = docker("inspect", "--format", "{{.Id}}", project_containers(PROJECT)[0])
    # GLM-4.7/5.x's tool parser this time: the same answers must parse the same.
    done = invoke("up", "--vendor", "cpu", "--project", PROJECT, "--port", str(PORT),
                  "--enforce-eager", "--", "--tool-call-parser", "glm47")
    assert done.returncode == 0, done.stdout + done.stderr
    (after,) = project_containers(PROJECT)
    assert docker("inspect", "--format", "{{.Id}}", after) != before
    assert "--enforce-eager" in docker("inspect", "--format", "{{json .Config.Cmd}}", after)
    assert requests.get(f"{BASE}/health", timeout=10).status_code == 200
    check = invoke("check", "--project", PROJECT, timeout=600)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.ends_server  # the shared server's end
def test_down_removes_everything_and_is_idempotent(server: object) -> None:
    done = invoke("down", "--project", PROJECT, timeout=120)
    assert done.returncode == 0
    assert project_containers(PROJECT) == []
    again = invoke("down", "--project", PROJECT, timeout=120)
    assert again.returncode == 0
    assert "nothing was running" in again.stdout
