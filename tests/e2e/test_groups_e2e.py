"""A model group on CPU, for real (#37): the tiny text and vision models behind the group's
door, one port, with an API key. One client alternates between the two models while
another streams from the text model; every answer comes from the model it named, none is
lost or served twice (each member's own request counter says how many it served), and the
door's sleep and wake calls reach vLLM's endpoints (`/is_sleeping` follows them; vLLM's CPU
worker logs that it ignores sleep, since its backend has no sleep mode). vLLM's dev routes
answer 403 from the host, with the key or without.

The group is its own deployment (a door and two vLLM servers started in turn), so it
cannot share the single-model servers of tests/e2e/common.py; it starts with
--enforce-eager and a short context to keep the module quick."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .common import invoke, port, project, runs_of, serving

pytestmark = pytest.mark.e2e

PROJECT = project("groups")
PORT = port("groups")
URL = f"http://127.0.0.1:{PORT}"
KEY = "groups-e2e-key"
ENV = {"VLLM_API_KEY": KEY}
AUTH = {"Authorization": f"Bearer {KEY}"}
TEXT, VISION = "glmkit/glm-tiny", "glmkit/glm-tiny-vision"
MEMBERS = {TEXT: ("member1", 8001), VISION: ("member2", 8002)}


@pytest.fixture(scope="module")
def group() -> Iterator[subprocess.CompletedProcess[str]]:
    with serving(PROJECT, "--vendor", "cpu", "--port", str(PORT), "--model", TEXT,
                 "--model", VISION, "--enforce-eager", "--max-model-len", "2048",
                 env=ENV) as done:
        yield done


def inside(model: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    """A request to a member's own vLLM, from inside its container (its API is on the
    door's loopback only): status and body."""
    service, member_port = MEMBERS[model]
    code = ("import json, sys, urllib.request, urllib.error\n"
            "data = sys.argv[2].encode() if sys.argv[2] else None\n"
            "req = urllib.request.Request(sys.argv[1], data=data, headers={"
            "'Content-Type': 'application/json', 'Authorization': 'Bearer ' + sys.argv[3]})\n"
            "try:\n    r = urllib.request.urlopen(req, timeout=60); print(r.status)\n"
            "except urllib.error.HTTPError as e:\n    r = e; print(e.code)\n"
            "print(r.read().decode())\n")
    done = subprocess.run(["docker", "exec", f"{PROJECT}-{service}-1", "python3", "-c", code,
                           f"http://127.0.0.1:{member_port}{path}",
                           json.dumps(body) if body is not None else "", KEY],
                          capture_output=True, text=True, check=True, timeout=120)
    status, _, text = done.stdout.partition("\n")
    return int(status), text


def served_count(model: str) -> float:
    """Requests the member's vLLM finished (vllm:request_success_total, all reasons)."""
    _, text = inside(model, "/metrics")
    return sum(float(v) for v in re.findall(r"^vllm:request_success_total\{[^}]*\} (\S+)$",
                                            text, re.M))


def sleeping(model: str) -> bool:
    _, text = inside(model, "/is_sleeping")
    return bool(json.loads(text)["is_sleeping"])


def chat(model: str, *, stream: bool = False, key: str | None = KEY) -> requests.Response:
    return requests.post(f"{URL}/v1/chat/completions", timeout=120, stream=stream,
                         headers={"Authorization": f"Bearer {key}"} if key else {},
                         json={"model": model, "max_tokens": 8, "temperature": 0,
                               "messages": [{"role": "user", "content": "hi"}],
                               "stream": stream})


def test_dev_routes_answer_403_from_the_host_keyed_or_not(
        group: subprocess.CompletedProcess[str]) -> None:
    for path in ("/sleep?level=1", "/wake_up", "/is_sleeping", "/collective_rpc",
                 "/reset_prefix_cache", "/server_info", "/pause", "/update_weights",
                 "//sleep", "/v1/../sleep"):
        for headers in (AUTH, {}):
            method = requests.get if path == "/is_sleeping" else requests.post
            reply = method(URL + path, headers=headers, timeout=30, json={"method": "x"})
            assert reply.status_code == 403, (path, headers, reply.text)
    assert requests.get(f"{URL}/health", timeout=30).status_code == 200
    assert chat(TEXT, key=None).status_code == 401
    assert chat(TEXT, key="wrong").status_code == 401
    # Only the door is published: no other port of the project's containers.
    listed = subprocess.run(["docker", "ps", "--filter", f"label=com.docker.compose.project="
                             f"{PROJECT}", "--format", "{{.Names}} {{.Ports}}"],
                            capture_output=True, text=True, check=True, timeout=60).stdout
    published = [line for line in listed.splitlines() if "->" in line]
    assert len(published) == 1 and "-door-" in published[0], listed


def test_a_model_no_member_serves_gets_vllms_own_404(
        group: subprocess.CompletedProcess[str]) -> None:
    door = chat("glmkit/no-such-model")
    status, own = inside(TEXT, "/v1/chat/completions", {
        "model": "glmkit/no-such-model", "messages": [{"role": "user", "content": "hi"}]})
    assert door.status_code == status == 404
    ours, theirs = door.json()["error"], json.loads(own)["error"]
    assert set(ours) == set(theirs)
    assert {k: ours[k] for k in ("type", "param", "code")} == \
        {k: theirs[k] for k in ("type", "param", "code")}
    assert ours["message"].startswith("The model `glmkit/no-such-model` does not exist.")


def test_alternating_and_streaming_clients_each_get_the_model_they_named(
        group: subprocess.CompletedProcess[str]) -> None:
    """One client alternates vision, text, vision, ...; another streams from the text
    model the whole time. No error, every answer from the model named, and each member
    served exactly the requests sent for it: none lost, none twice."""
    before = {m: served_count(m) for m in MEMBERS}
    switches_before = _switches()
    streams: list[tuple[int, set[str], bool]] = []
    errors: list[str] = []
    done = threading.Event()

    def streamer() -> None:
        while not done.is_set():
            try:
                with chat(TEXT, stream=True) as reply:
                    models, finished = set(), False
                    for line in reply.iter_lines():
                        if line == b"data: [DONE]":
                            finished = True
                        elif line.startswith(b"data: "):
                            models.add(json.loads(line[6:])["model"])
                    streams.append((reply.status_code, models, finished))
            except requests.RequestException as err:
                errors.append(f"stream: {err}")
                return

    thread = threading.Thread(target=streamer)
    thread.start()
    answers: list[tuple[str, int, str]] = []
    try:
        time.sleep(0.5)  # the stream runs when the first switch comes
        for i in range(6):
            model = (VISION, TEXT)[i % 2]
            reply = chat(model)
            answers.append((model, reply.status_code, reply.json().get("model", reply.text)))
    finally:
        done.set()
        thread.join(timeout=120)
    assert not errors and not thread.is_alive()
    assert [(m, s, got) for m, s, got in answers if s != 200 or got != m] == []
    assert streams and all(s == 200 and models == {TEXT} and finished
                           for s, models, finished in streams), streams
    after = {m: served_count(m) for m in MEMBERS}
    assert after[VISION] - before[VISION] == 3
    assert after[TEXT] - before[TEXT] == 3 + len(streams)
    # Every alternation was a switch (the streams queue behind them, never in between).
    assert _switches() - switches_before >= 5
    # The door's last switch woke the text model: vLLM's own state says so.
    assert not sleeping(TEXT) and sleeping(VISION)


def _switches() -> float:
    text = requests.get(f"{URL}/metrics", headers=AUTH, timeout=30).text
    return sum(float(v) for v in re.findall(
        r'^glmkit_group_switches_total\{[^}]*outcome="ok"[^}]*\} (\S+)$', text, re.M))


def test_sleep_and_wake_reach_vllms_endpoints(group: subprocess.CompletedProcess[str]) -> None:
    assert chat(VISION).status_code == 200
    assert sleeping(TEXT) and not sleeping(VISION)
    assert chat(TEXT).status_code == 200
    assert not sleeping(TEXT) and sleeping(VISION)
    logs = subprocess.run(["docker", "logs", f"{PROJECT}-member2-1"], capture_output=True,
                          text=True, check=True, timeout=60)
    text = logs.stdout + logs.stderr
    assert re.search(r'"POST /sleep\?level=1&mode=wait HTTP/1.1" 200', text)
    assert re.search(r'"POST /wake_up HTTP/1.1" 200', text)
    assert "sleep mode is not supported on CPU" in text  # vLLM's CPU worker, honest


def test_status_says_which_member_is_awake(group: subprocess.CompletedProcess[str]) -> None:
    done = invoke("status", "--json", env=ENV)
    assert done.returncode == 0, done.stderr
    rows = {r["node"]: r for r in json.loads(done.stdout) if r["project"] == PROJECT}
    assert rows["member1"]["api"].startswith("awake since"), rows
    assert rows["member2"]["api"].startswith("asleep since"), rows
    assert rows["door"]["api"] == "ready"


def test_bench_aims_at_one_member_through_the_door(
        group: subprocess.CompletedProcess[str]) -> None:
    before = runs_of(PROJECT)
    done = invoke("bench", "--project", PROJECT, "--model", VISION, "--workload", "custom",
                  "--input-len", "16", "--output-len", "4", "--batch", "2", timeout=300,
                  env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = runs_of(PROJECT, before)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["model"] == VISION and meta["container"] == f"{PROJECT}-member2-1"
    assert not sleeping(VISION) and sleeping(TEXT)  # the bench went through the door
    wrong = invoke("bench", "--project", PROJECT, "--model", "glmkit/nope", env=ENV)
    assert wrong.returncode == 2 and "has no member 'glmkit/nope'" in wrong.stdout + wrong.stderr


def test_a_member_that_crashes_asleep_answers_503_and_the_other_keeps_serving(
        group: subprocess.CompletedProcess[str]) -> None:
    assert chat(TEXT).status_code == 200  # the text model awake, vision asleep
    subprocess.run(["docker", "kill", f"{PROJECT}-member2-1"], capture_output=True,
                   check=True, timeout=60)
    deadline = time.monotonic() + 60
    while (reply := chat(VISION)).status_code != 503 and time.monotonic() < deadline:
        time.sleep(1)
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"]["type"] == "ServiceUnavailableError"
    answer = chat(TEXT)
    assert answer.status_code == 200 and answer.json()["model"] == TEXT
    done = invoke("status", "--json", env=ENV)
    rows = {r["node"]: r for r in json.loads(done.stdout) if r["project"] == PROJECT}
    assert rows["member2"]["api"].startswith("CRASHED"), rows
    assert rows["member1"]["api"].startswith("awake"), rows


def test_down_brings_the_whole_group_down(group: subprocess.CompletedProcess[str]) -> None:
    done = invoke("down", "--project", PROJECT, env=ENV)
    assert done.returncode == 0, done.stderr
    left = subprocess.run(["docker", "ps", "-a", "--filter",
                           f"label=com.docker.compose.project={PROJECT}", "-q"],
                          capture_output=True, text=True, check=True, timeout=60).stdout
    assert left.strip() == ""
