"""The model group's door over HTTP, in this process: the door's aiohttp application in
front of two stand-in vLLM servers (health, sleep, wake, models, chat streamed or not), all
on the loopback. What the state machine does is test_group_door.py's; here, what a client
and the members see of it: answers streamed through unchanged, vLLM's 404, 403 on the dev
routes, 401 without the key, 413 past the body limit, 503 for a crashed member, the
metrics and the one model list."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pytest

from glmkit.run import group_door as door


@dataclass
class StandIn:
    """A vLLM server as the door sees it: the dev routes, /v1/models and chat."""

    name: str
    sleeping: bool = False
    calls: list[str] = field(default_factory=list)
    served: int = 0
    wake_s: float = 0.0  # how long /wake_up takes

    def app(self) -> Any:
        from aiohttp import web

        async def health(request: web.Request) -> web.Response:
            return web.json_response({})

        async def is_sleeping(request: web.Request) -> web.Response:
            return web.json_response({"is_sleeping": self.sleeping})

        async def sleep(request: web.Request) -> web.Response:
            self.calls.append(f"sleep {request.query_string}")
            self.sleeping = True
            return web.json_response({"status": "sleeping"})

        async def wake(request: web.Request) -> web.Response:
            self.calls.append("wake")
            await asyncio.sleep(self.wake_s)
            self.sleeping = False
            return web.json_response({"status": "awake"})

        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": self.name}]})

        async def chat(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            if self.sleeping:  # a sleeping GPU server cannot answer
                return web.json_response({"error": "asleep"}, status=500)
            self.served += 1
            if not body.get("stream"):
                return web.json_response({"model": self.name, "choices": []})
            out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            for i in range(3):
                chunk = {"model": self.name, "choices": [{"delta": {"content": f"t{i}"}}]}
                await out.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await out.write(b"data: [DONE]\n\n")
            await out.write_eof()
            return out

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/is_sleeping", is_sleeping)
        app.router.add_post("/sleep", sleep)
        app.router.add_post("/wake_up", wake)
        app.router.add_get("/v1/models", models)
        app.router.add_post("/v1/chat/completions", chat)
        return app


async def _site(app: Any, **options: Any) -> tuple[Any, str]:
    from aiohttp import web

    runner = web.AppRunner(app, **options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def serve(key: str, test: Callable[[str, dict[str, StandIn], door.Group, Any],
                                   Awaitable[None]]) -> None:
    """The door in front of stand-ins `a` (awake) and `b` (asleep); `test(door_url,
    stand_ins, group, session)`."""
    from aiohttp import ClientSession

    async def body() -> None:
        stand = {"a": StandIn("a"), "b": StandIn("b", sleeping=True)}
        runners, urls = [], {}
        for name, s in stand.items():
            runner, urls[name] = await _site(s.app())
            runners.append(runner)
        async with ClientSession() as probes:
            members = [door.Member((n,), door.HttpBackend(urls[n], lambda: probes))
                       for n in stand]
            group = door.Group(members, misses=1)
            metrics = door.Metrics(group)
            group.on_switch = metrics.record
            runner, url = await _site(door.build_app(group, key, [], metrics),
                                      **door.SERVE_OPTIONS)
            runners.append(runner)
            watch = asyncio.get_running_loop().create_task(group.watch(0.02))
            try:
                while not group.ready:
                    await asyncio.sleep(0.01)
                async with ClientSession() as client:
                    await test(url, stand, group, client)
            finally:
                watch.cancel()
                for r in reversed(runners):
                    await r.cleanup()

    asyncio.run(asyncio.wait_for(body(), 30))


def chat(model: str | None, stream: bool = False) -> dict[str, Any]:
    return {**({"model": model} if model else {}), "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}


def test_answers_come_from_the_model_named_streams_pass_through(aiohttp: ModuleType) -> None:
    async def test(url: str, stand: dict[str, StandIn], group: door.Group, c: Any) -> None:
        async with c.post(f"{url}/v1/chat/completions", json=chat("a")) as r:
            assert r.status == 200 and (await r.json())["model"] == "a"
        async with c.post(f"{url}/v1/chat/completions", json=chat("b", stream=True)) as r:
            text = await r.text()
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        assert text.count("data: ") == 4 and text.endswith("data: [DONE]\n\n")
        assert stand["a"].calls == ["sleep level=1&mode=wait"] and stand["b"].calls == ["wake"]
        # No model: the awake one, no switch.
        async with c.post(f"{url}/v1/chat/completions", json=chat(None)) as r:
            assert (await r.json())["model"] == "b"
        assert (stand["a"].served, stand["b"].served) == (1, 2)
        async with c.get(f"{url}/metrics") as r:
            metrics = await r.text()
        assert 'glmkit_group_switches_total{from_model="a",outcome="ok",to_model="b"} 1.0' \
            in metrics
        assert 'glmkit_group_member_awake{model="b"} 1.0' in metrics
        assert 'glmkit_group_switch_phase_seconds_count{phase="wake"} 1.0' in metrics
        async with c.get(f"{url}/v1/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["a", "b"]

    serve("", test)


def test_unknown_models_dev_routes_keys_and_size(aiohttp: ModuleType,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(door, "MAX_BODY", 1024)
    auth = {"Authorization": "Bearer k3y"}

    async def test(url: str, stand: dict[str, StandIn], group: door.Group, c: Any) -> None:
        async with c.post(f"{url}/v1/chat/completions", json=chat("nope"), headers=auth) as r:
            assert r.status == 404
            assert (await r.json())["error"] == {
                "message": "The model `nope` does not exist. Valid aliases: a, b.",
                "type": "NotFoundError", "param": "model", "code": 404}
        for path in ("/sleep", "/wake_up", "/is_sleeping", "/collective_rpc"):
            for headers in (auth, {}):
                async with c.post(url + path, headers=headers) as r:
                    assert r.status == 403, path
        async with c.post(f"{url}/v1/chat/completions", json=chat("a")) as r:
            assert r.status == 401
        async with c.get(f"{url}/metrics") as r:
            assert r.status == 401
        async with c.get(f"{url}/health") as r:
            assert r.status == 200
        big = {**chat("a"), "pad": "x" * 2048}
        async with c.post(f"{url}/v1/chat/completions", json=big, headers=auth) as r:
            assert r.status == 413
        assert stand["a"].calls == stand["b"].calls == []  # nothing reached a member

    serve("k3y", test)


def test_a_crashed_member_answers_503_and_the_other_serves(aiohttp: ModuleType) -> None:
    async def test(url: str, stand: dict[str, StandIn], group: door.Group, c: Any) -> None:
        b = group.find("b")
        assert b is not None
        b.backend.url = "http://127.0.0.1:9"  # type: ignore[attr-defined]  # its server gone
        while b.state != "crashed":
            await asyncio.sleep(0.01)
        async with c.post(f"{url}/v1/chat/completions", json=chat("b")) as r:
            assert r.status == 503
            assert (await r.json())["error"]["type"] == "ServiceUnavailableError"
        async with c.post(f"{url}/v1/chat/completions", json=chat("a")) as r:
            assert r.status == 200 and (await r.json())["model"] == "a"
        async with c.get(f"{url}/metrics") as r:
            assert 'glmkit_group_member_state{model="b",state="crashed"} 1.0' in await r.text()

    serve("", test)


async def _raw(url: str, request: bytes) -> bytes:
    """One request as bytes on the wire (header bytes no client library sends); the
    answer's status line."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer.split(b"\r\n", 1)[0]


def test_a_key_header_that_is_not_utf8_answers_401(aiohttp: ModuleType) -> None:
    async def test(url: str, stand: dict[str, StandIn], group: door.Group, c: Any) -> None:
        body = json.dumps(chat("a")).encode()
        for header in (b"Authorization: Bearer \xff\xfe", b"x-api-key: k3y\xc3"):
            status = await _raw(url, b"POST /v1/chat/completions HTTP/1.1\r\nHost: door\r\n"
                                + header + b"\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: %d\r\n\r\n"
                                % len(body) + body)
            assert status == b"HTTP/1.1 401 Unauthorized", header
        assert stand["a"].served == 0

    serve("k3y", test)


def test_a_client_that_leaves_while_queued_is_not_sent_on(aiohttp: ModuleType) -> None:
    async def test(url: str, stand: dict[str, StandIn], group: door.Group, c: Any) -> None:
        b = group.find("b")
        assert b is not None
        stand["b"].wake_s = 0.3
        host, port = url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        body = json.dumps(chat("b")).encode()
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: door\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        while not b.waiters:  # queued while b wakes
            await asyncio.sleep(0.01)
        writer.close()  # the client gives up
        while group.awake is not b or group.task is not None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert stand["b"].served == 0 and b.inflight == 0 and not b.waiters
        async with c.post(f"{url}/v1/chat/completions", json=chat("b")) as r:
            assert r.status == 200 and (await r.json())["model"] == "b"
        assert stand["b"].served == 1

    serve("", test)
