"""Prefill/decode disaggregation on CPU, for real: the tiny model in a prefill and a decode
container (one core each) behind vllm-router, KV moved by NIXL over UCX/TCP, with an API
key. Disaggregation is proved from the servers' own metrics, not from routing alone."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .common import invoke, port, project, serving

pytestmark = pytest.mark.e2e

PROJECT = project("pd")
PORT = port("pd")
KEY = "pd-e2e-key"
ENV = {"VLLM_API_KEY": KEY}
URL = f"http://127.0.0.1:{PORT}"
MODEL = "glmkit/glm-tiny"


@pytest.fixture(scope="module")
def pd() -> Iterator[subprocess.CompletedProcess[str]]:
    with serving(PROJECT, "--vendor", "cpu", "--strategy", "pd_cluster", "--port", str(PORT),
                 # No prefix cache: every prompt is computed or transferred, never reused.
                 "--enforce-eager", "--bench-mode", env=ENV) as done:
        yield done


def in_pool(pool: str, code: str) -> str:
    done = subprocess.run(["docker", "exec", f"{PROJECT}-{pool}-1", "python3", "-c", code],
                          capture_output=True, text=True, check=True, timeout=120)
    return done.stdout


def metrics(pool: str) -> dict[str, float]:
    """The pool's counters (summed over labels but `source`), read inside its container."""
    text = in_pool(pool, "import urllib.request; print(urllib.request.urlopen("
                         "'http://127.0.0.1:8000/metrics').read().decode())")
    out: dict[str, float] = {}
    for name, labels, value in re.findall(r"^(vllm:[a-z_]+)\{([^}]*)\} (\S+)$", text, re.M):
        source = re.search(r'source="([a-z_]+)"', labels)
        key = f"{name}:{source.group(1)}" if source else name
        out[key] = out.get(key, 0.0) + float(value)
    if block := re.search(r'vllm:cache_config_info\{[^}]*block_size="(\d+)"', text):
        out["block_size"] = float(block.group(1))
    return out


def delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def chat(prompt: str, key: str | None = KEY, url: str = URL) -> requests.Response:
    return requests.post(f"{url}/v1/chat/completions", timeout=300, headers={
        "Authorization": f"Bearer {key}"} if key else {}, json={
        "model": MODEL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 16,
        "temperature": 0, "seed": 0, "chat_template_kwargs": {"enable_thinking": False}})


def direct(pool: str, prompt: str) -> dict[str, Any]:
    """The same request straight to a pool's own server: no router, no KV transfer."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": prompt}],
                       "max_tokens": 16, "temperature": 0, "seed": 0,
                       "chat_template_kwargs": {"enable_thinking": False}})
    code = ("import json, os, sys, urllib.request; req = urllib.request.Request("
            "'http://127.0.0.1:8000/v1/chat/completions', data=sys.argv[1].encode(), "
            "headers={'Content-Type': 'application/json', 'Authorization': 'Bearer ' + "
            "os.environ['VLLM_API_KEY']}); print(urllib.request.urlopen(req).read().decode())")
    done = subprocess.run(["docker", "exec", f"{PROJECT}-{pool}-1", "python3", "-c", code, body],
                          capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def long_prompt(blocks: int, block_size: int) -> str:
    # About five tokens a group (byte-level BPE on made-up words): a little over `blocks`.
    return " ".join(f"item{i} alpha beta gamma" for i in range(blocks * block_size // 4))


def test_up_starts_two_pools_and_a_router(pd: subprocess.CompletedProcess[str]) -> None:
    assert "pd_cluster: 1 prefill + 1 decode server(s) behind vllm-router" in pd.stdout
    assert "KV over NixlConnector" in pd.stdout
    assert "tool call (auto, not streamed, thinking off): ok" in pd.stdout
    published = subprocess.run(["docker", "ps", "--filter", f"label=com.docker.compose.project="
                                f"{PROJECT}", "--format", "{{.Names}} {{.Ports}}"],
                               capture_output=True, text=True, check=True).stdout
    assert {line.split()[0] for line in published.splitlines() if "->" in line} == \
        {f"{PROJECT}-router-1"}


def test_chat_is_prefilled_by_one_server_and_decoded_by_the_other(pd: object) -> None:
    block = int(metrics("decode").get("block_size") or 16)
    prompts = [f"question {n} " + long_prompt(3, block) for n in range(3)]
    before = {pool: metrics(pool) for pool in ("prefill", "decode")}
    replies = [chat(p) for p in prompts]
    after = {pool: metrics(pool) for pool in ("prefill", "decode")}
    assert [r.status_code for r in replies] == [200, 200, 200], replies[0].text
    prompt_tokens = [r.json()["usage"]["prompt_tokens"] for r in replies]
    assert min(prompt_tokens) >= 3 * block  # several full KV blocks each
    # Prefill: one token per request, the whole prompt computed there.
    assert delta(before["prefill"], after["prefill"], "vllm:generation_tokens_total") == 3
    assert delta(before["prefill"], after["prefill"],
                 "vllm:prompt_tokens_by_source_total:local_compute") == sum(prompt_tokens)
    # Decode: the KV came over NIXL; at most the last partial block computed locally.
    loaded = delta(before["decode"], after["decode"],
                   "vllm:prompt_tokens_by_source_total:external_kv_transfer")
    computed = delta(before["decode"], after["decode"],
                     "vllm:prompt_tokens_by_source_total:local_compute")
    assert loaded > 0 and loaded + computed == sum(prompt_tokens)
    assert computed <= 3 * block, (loaded, computed)
    assert delta(before["decode"], after["decode"], "vllm:nixl_bytes_transferred_sum") > 0
    # The same text as the non-disaggregated path: each pool's own server at temperature 0.
    for prompt, reply in zip(prompts[:1], replies[:1], strict=True):
        text = reply.json()["choices"][0]["message"]["content"]
        before_direct = metrics("decode")
        assert direct("decode", prompt)["choices"][0]["message"]["content"] == text
        assert delta(before_direct, metrics("decode"),
                     "vllm:prompt_tokens_by_source_total:local_compute") == \
            reply.json()["usage"]["prompt_tokens"]
        assert direct("prefill", prompt)["choices"][0]["message"]["content"] == text


def test_the_router_takes_only_the_right_key(pd: object) -> None:
    # vllm-router checks no client key itself; the image's gate does, before it.
    assert chat("hello", key=None).status_code == 401
    assert chat("hello", key="wrong").status_code == 401
    assert chat("hello").status_code == 200
    assert requests.get(f"{URL}/health", timeout=30).status_code == 200
    # The router's admin routes are outside /v1: without the key, no one adds a worker
    # (which would receive the prompts) or lists them.
    for method, path in (("POST", "/add_worker?url=http://127.0.0.1:9"), ("GET", "/workers"),
                         ("GET", "/list_workers"), ("POST", "/flush_cache")):
        assert requests.request(method, URL + path, timeout=30).status_code == 401, path
    # The pools require it too (the router sends its own copy).
    reply = subprocess.run(
        ["docker", "exec", f"{PROJECT}-decode-1", "curl", "-s", "-o", "/dev/null", "-w",
         "%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
         "http://127.0.0.1:8000/v1/chat/completions", "-d",
         json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})],
        capture_output=True, text=True, check=True)
    assert reply.stdout == "401"


def test_check_passes_through_the_router(pd: object) -> None:
    done = invoke("check", "--project", PROJECT, "--api", "chat", env=ENV, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_dead_pool_is_named_and_down_removes_all_three(pd: object) -> None:
    subprocess.run(["docker", "kill", f"{PROJECT}-decode-1"], check=True, capture_output=True)
    status = invoke("status", "--json", timeout=60)
    rows = [r for r in json.loads(status.stdout) if r["project"] == PROJECT]
    router = next(r for r in rows if r["node"] == "router")
    assert "DEGRADED: decode down" in router["api"]
    done = invoke("down", "--project", PROJECT, timeout=120)
    assert done.returncode == 0, done.stderr
    left = subprocess.run(["docker", "ps", "-a", "--filter", "label=com.docker.compose.project="
                           f"{PROJECT}", "--format", "{{.Names}}"],
                          capture_output=True, text=True, check=True).stdout
    assert left.strip() == ""
