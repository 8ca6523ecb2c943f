"""The router image's gate: with a key, every route but the health probes needs it.

vllm-router checks no client key, and its admin routes (/add_worker, /remove_worker,
/workers/{url}, /flush_cache) are outside /v1: a gate that only guarded /v1 let anyone
add a worker and so receive the prompts."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import io
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

GATE = Path(__file__).resolve().parents[2] / "docker" / "router" / "gate.py"


def _gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("router_gate", GATE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gate = _gate()


@pytest.mark.parametrize("path", ["/add_worker", "/remove_worker", "/workers/http:%2F%2Fx",
                                  "/flush_cache", "/list_workers", "/get_loads", "/metrics",
                                  "/v1/chat/completions", "/v1/messages", "/generate",
                                  "/health/../add_worker", "//add_worker", "/health%2F..",
                                  "/HEALTH", "/health/", ""])
def test_every_route_but_the_probes_needs_the_key(path: str) -> None:
    assert gate.needs_key(path)


@pytest.mark.parametrize("path", ["/health", "/liveness", "/readiness"])
def test_the_health_probes_are_open(path: str) -> None:
    assert not gate.needs_key(path)


@given(st.text(max_size=40))
def test_only_the_three_probe_paths_are_open(path: str) -> None:
    assert gate.needs_key(path) == (path not in {"/health", "/liveness", "/readiness"})


def test_the_key_is_accepted_as_bearer_or_x_api_key_and_nothing_else() -> None:
    assert gate.authorized({"authorization": "Bearer k3y"}, "k3y")
    assert gate.authorized({"authorization": "bearer k3y"}, "k3y")
    assert gate.authorized({"x-api-key": "k3y"}, "k3y")
    assert not gate.authorized({"authorization": "Bearer wrong"}, "k3y")
    assert not gate.authorized({"authorization": "Basic k3y"}, "k3y")
    assert not gate.authorized({}, "k3y")


# --- #27, M5: without a key the admin routes are refused, the client routes pass ----------

@pytest.mark.parametrize("path", ["/add_worker", "/remove_worker", "/workers/http%3A%2F%2Fx",
                                  "/flush_cache", "/v1/../add_worker", "//add_worker",
                                  "/v1/chat/completions/../../add_worker", "/"])
def test_without_a_key_the_admin_routes_are_refused(path: str) -> None:
    assert gate.refusal(path, {}, "") == 403


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/models",
                                  "/v1/responses", "/v1/messages", "/health"])
def test_without_a_key_the_client_routes_pass(path: str) -> None:
    assert gate.refusal(path, {}, "") is None


def test_with_a_key_every_route_but_the_probes_needs_it() -> None:
    assert gate.refusal("/v1/models", {}, "k") == 401
    assert gate.refusal("/add_worker", {"authorization": "Bearer k"}, "k") is None
    assert gate.refusal("/health", {}, "k") is None


def test_the_gate_always_fronts_the_router() -> None:
    """It used to exec vllm-router in its place without a key: the admin routes open."""
    assert "execvp" not in GATE.read_text()


# --- #35, Low: the keyless gate read 512 MiB bodies into memory ---------------------------

MIB = 1024 * 1024


@dataclass
class Upstream:
    """What vllm-router behind the gate received: each request's bytes and headers."""

    bodies: list[int] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)


async def _serving(aiohttp: ModuleType, key: str, send: Callable[[str], Awaitable[Any]],
                   handler: Callable[[Any], Awaitable[Any]] | None = None
                   ) -> tuple[Any, Upstream]:
    """The gate in front of a stand-in router (`handler`, or one that counts the body),
    both on the loopback in this process; `send(gate_url)`'s answer, and what the
    stand-in received. The stand-in stops a request whose client went away, as vLLM
    does; the gate is served as gate.main serves it."""
    from aiohttp import web

    seen = Upstream()

    async def router(request: web.Request) -> web.Response:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_chunked(MIB):  # counted, not kept
            digest.update(chunk)
            size += len(chunk)
        seen.bodies.append(size)
        seen.digests.append(digest.hexdigest())
        seen.headers.append({k.lower(): v for k, v in request.headers.items()})
        return web.json_response({"received": size})

    inner = web.Application()
    inner.router.add_route("*", "/{tail:.*}", handler or router)
    runners = []
    try:
        for app in (inner, None):
            options: dict[str, Any] = {"handler_cancellation": True}
            if app is None:
                port = runners[0].addresses[0][1]
                app = gate.build_app(key, f"http://127.0.0.1:{port}")
                options = gate.SERVE_OPTIONS
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1, **options)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            runners.append(runner)
        answer = await send(f"http://127.0.0.1:{runners[1].addresses[0][1]}")
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
    return answer, seen


async def _post(url: str, data: Any, headers: dict[str, str] | None = None) -> tuple[int, str]:
    from aiohttp import ClientSession, ClientTimeout

    async with ClientSession(timeout=ClientTimeout(total=60)) as session, session.post(
            f"{url}/v1/chat/completions", data=data, headers=headers or {}) as reply:
        return reply.status, await reply.text()


async def _chunks(total: int, size: int = MIB) -> AsyncIterator[bytes]:
    """A body sent chunked (no Content-Length), made as it is sent."""
    block = b"x" * size
    for _ in range(total // size):
        yield block


def test_a_body_past_the_limit_is_refused_while_it_streams_never_held(
        aiohttp: ModuleType) -> None:
    """A keyless router (any local user may call it) took bodies up to 512 MiB, read
    whole into the gate's memory before the first byte went on: now 413 past
    gate.MAX_BODY, counted as it streams to the router, so the gate holds a few chunks
    at most."""
    total = gate.MAX_BODY + 16 * MIB
    tracemalloc.start()
    try:
        (status, _text), seen = asyncio.run(_serving(aiohttp, "", lambda url: _post(
            url, _chunks(total))))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 413
    assert all(size <= gate.MAX_BODY for size in seen.bodies)
    assert peak < 16 * MIB, f"{peak / MIB:.0f} MiB held while {total // MIB} MiB streamed"


def test_a_declared_length_past_the_limit_is_refused_before_any_byte_is_read(
        aiohttp: ModuleType) -> None:
    async def send(url: str) -> tuple[int, str]:
        # The header alone: a gate that waited for the body would wait for the timeout.
        reader, writer = await asyncio.open_connection(*url.removeprefix("http://").split(":"))
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + str(512 * MIB).encode() + b"\r\n\r\n{")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        return int(line.split()[1]), line.decode()

    (status, _line), seen = asyncio.run(_serving(aiohttp, "", send))
    assert status == 413
    assert seen.bodies == []  # the router never saw it


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_within_the_limit_reaches_the_router_whole(aiohttp: ModuleType,
                                                          chunked: bool) -> None:
    body = bytes(range(256)) * (4 * MIB // 256)
    data: Any = _chunks(len(body)) if chunked else io.BytesIO(body)
    sent = hashlib.sha256(b"x" * len(body) if chunked else body).hexdigest()
    (status, text), seen = asyncio.run(_serving(aiohttp, "k", lambda url: _post(
        url, data, {"Authorization": "Bearer k"})))
    assert status == 200, text
    assert seen.bodies == [len(body)] and seen.digests == [sent]
    if not chunked:  # a sized body stays sized
        assert seen.headers[0]["content-length"] == str(len(body))


def test_the_key_is_checked_before_the_size(aiohttp: ModuleType) -> None:
    (status, _text), seen = asyncio.run(_serving(aiohttp, "k", lambda url: _post(
        url, _chunks(gate.MAX_BODY + MIB))))
    assert status == 401 and seen.bodies == []


# --- #35: a client that went away left its request generating behind the gate -----------

@pytest.mark.parametrize("stream", [False, True], ids=["whole-answer", "streamed"])
def test_a_client_that_leaves_stops_its_request_upstream(aiohttp: ModuleType,
                                                         stream: bool) -> None:
    """vLLM stops a request whose client goes away, but the gate's handler ran on after
    its client left (aiohttp >= 3.9 cancels it only with handler_cancellation), holding
    the router's request open: a timed-out agent left its answer generating for nobody.
    Served as gate.main serves it, the gate's request upstream ends when its client's
    does, whether the answer comes whole or streams (and is between two chunks)."""
    from aiohttp import web

    began, stopped = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await request.read()
        out = web.StreamResponse()
        if stream:
            await out.prepare(request)
            await out.write(b"data: first\n\n")
        began.set()
        try:
            await asyncio.sleep(30)  # generating
        except asyncio.CancelledError:
            stopped.set()
            raise
        return out

    async def send(url: str) -> bool:
        reader, writer = await asyncio.open_connection(*url.removeprefix("http://").split(":"))
        body = b'{"stream": true}' if stream else b"{}"
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        await asyncio.wait_for(began.wait(), 10)
        if stream:  # the client has read the first chunk
            assert b"first" in await asyncio.wait_for(reader.readuntil(b"first"), 10)
        writer.close()  # the client gives up
        try:
            await asyncio.wait_for(stopped.wait(), 5)
        except asyncio.TimeoutError:  # the builtin only from Python 3.11
            return False
        return True

    stopped_upstream, _seen = asyncio.run(_serving(aiohttp, "", send, slow))
    assert stopped_upstream, "the router's request ran on after its client left"
