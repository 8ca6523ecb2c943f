"""The front door of glmkit's router image: vllm-router checks no client key (its
--api-key and OPENAI_API_KEY are what it sends to the workers), so with a key set this
gate checks the client's (`Authorization: Bearer KEY` or `x-api-key: KEY`) on every path
but the health probes and proxies to vllm-router on the loopback. Not only /v1 as vLLM
does: the router's own admin routes (/add_worker, /remove_worker, /workers/{url},
/flush_cache) sit outside /v1, and an open /add_worker would let anyone redirect prompts.
Without a key the gate still stands in front: the client routes (exact paths) pass, and
the admin routes answer 403, so no local user can register a worker on an unkeyed router.
vllm-router itself listens on the container's loopback only. A request body streams
through, counted: past MAX_BODY the gate answers 413 (at once when the declared length is
over), and it never holds a body whole.

    gate.py ROUTER_ARGS...   (--host/--port are where the gate listens)
"""

from __future__ import annotations

import asyncio
import hmac
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

INNER_PORT = 18000  # vllm-router's, on the loopback only
# The largest request body passed on. A 200,000-token prompt is about 1 MB of JSON; images
# and video travel base64 (4/3 of their size), so this holds a 48 MiB video. (It was
# 512 MiB, read whole into memory, for any local user of a keyless router.)
MAX_BODY = 64 * 1024 * 1024
CHUNK = 64 * 1024
# How the gate serves (aiohttp's runner options): a client that goes away cancels its
# request, so the gate's request to the router ends too and vLLM stops generating it
# (aiohttp >= 3.9 lets the handler run on by default, waiting for an answer no one reads).
SERVE_OPTIONS: dict[str, Any] = {"handler_cancellation": True}
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
       "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


def option(args: list[str], name: str, default: str) -> tuple[list[str], str]:
    """`args` without `name VALUE`, and VALUE."""
    if name in args:
        i = args.index(name)
        return args[:i] + args[i + 2:], args[i + 1]
    return args, default


# Exact paths only: `/health/../add_worker` or `//add_worker` is not one of them.
OPEN_PATHS = frozenset({"/health", "/liveness", "/readiness"})


# Without a key, the routes a client calls (vLLM's OpenAI and Anthropic APIs), exactly;
# everything else (/add_worker, /remove_worker, /workers/…, /flush_cache) is refused.
CLIENT_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models",
                          "/v1/responses", "/v1/messages", "/v1/embeddings"})


def needs_key(path: str) -> bool:
    return path not in OPEN_PATHS


def refusal(path: str, headers: dict[str, str], key: str) -> int | None:
    """The status refusing this request (401: the key is missing or wrong; 403: an admin
    route on a router without a key), or None to forward it."""
    if not needs_key(path):
        return None
    if key:
        return None if authorized(headers, key) else 401
    return None if path in CLIENT_PATHS else 403


class BodyTooLarge(Exception):
    """A body went past MAX_BODY while it streamed to the router."""


def declared_too_large(headers: dict[str, str], limit: int) -> bool:
    """The client's own Content-Length says the body is over `limit`."""
    length = headers.get("content-length", "")
    return length.isascii() and length.isdigit() and int(length) > limit


async def bounded(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    """`chunks` passed on as they come, BodyTooLarge past `limit` bytes."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise BodyTooLarge(f"request body over {limit} bytes")
        yield chunk


def too_large(err: BaseException) -> bool:
    """Whether `err` (aiohttp wraps what the body raised) was a body past the limit."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, BodyTooLarge):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def authorized(headers: dict[str, str], key: str) -> bool:
    auth = headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else headers.get("x-api-key", "")
    return hmac.compare_digest(given.encode(), key.encode())


def build_app(key: str, upstream: str) -> Any:
    """The gate as an aiohttp application: `key` checked (or, empty, the admin routes
    refused), everything else proxied to `upstream`, bodies streamed within MAX_BODY."""
    from aiohttp import ClientSession, ClientTimeout, web

    sessions: list[ClientSession] = []  # the one the app opens at start

    def refuse_size() -> web.Response:
        return web.json_response({"error": f"Request body over {MAX_BODY // 2**20} MiB"},
                                 status=413)

    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        status = refusal(request.raw_path.split("?", 1)[0], headers, key)
        if status is not None:
            return web.json_response({"error": "Unauthorized" if status == 401 else
                                      "Forbidden: an admin route of the router"},
                                     status=status)
        if declared_too_large(headers, MAX_BODY):
            return refuse_size()
        forward = {k: v for k, v in headers.items() if k not in HOP}
        if "content-length" in headers:  # a sized body stays sized (not chunked)
            forward["content-length"] = headers["content-length"]
        body = bounded(request.content.iter_chunked(CHUNK), MAX_BODY) \
            if request.body_exists else None
        session: ClientSession = sessions[0]
        try:
            async with session.request(request.method, upstream + request.path_qs,
                                       headers=forward, data=body) as reply:
                out = web.StreamResponse(status=reply.status, headers={
                    k: v for k, v in reply.headers.items() if k.lower() not in HOP})
                await out.prepare(request)
                try:
                    async for chunk in reply.content.iter_any():
                        await out.write(chunk)
                    await out.write_eof()
                except ConnectionResetError:  # the client went away mid-answer
                    pass
                return out
        except Exception as err:
            if too_large(err):
                return refuse_size()
            raise

    async def start(app: web.Application) -> None:
        sessions.append(ClientSession(timeout=ClientTimeout(total=None),
                                      auto_decompress=False))

    async def stop(app: web.Application) -> None:
        await sessions.pop().close()

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", proxy)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def main(argv: list[str]) -> None:
    from aiohttp import web

    args, host = option(argv, "--host", "0.0.0.0")
    args, port = option(args, "--port", "8000")
    router = subprocess.Popen(
        ["vllm-router", *args, "--host", "127.0.0.1", "--port", str(INNER_PORT)])

    tasks: list[asyncio.Task[None]] = []  # kept: a task no one holds may be collected

    async def watch(app: web.Application) -> None:
        async def loop() -> None:
            while router.poll() is None:  # the gate lives as long as the router
                await asyncio.sleep(1)
            os.kill(os.getpid(), signal.SIGTERM)
        tasks.append(asyncio.get_running_loop().create_task(loop()))

    app = build_app(os.environ.get("OPENAI_API_KEY", ""), f"http://127.0.0.1:{INNER_PORT}")
    app.on_startup.append(watch)
    try:
        web.run_app(app, host=host, port=int(port), print=None, access_log=None,
                    **SERVE_OPTIONS)
    finally:
        router.terminate()
    sys.exit(router.wait() or 1)


if __name__ == "__main__":
    main(sys.argv[1:])
