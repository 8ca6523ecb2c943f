"""The front door of glmkit's router image: vllm-router checks no client key (its
--api-key and OPENAI_API_KEY are what it sends to the workers), so with a key set this
gate checks the client's (`Authorization: Bearer KEY` or `x-api-key: KEY`) on every path
but the health probes and proxies to vllm-router on the loopback. Not only /v1 as vLLM
does: the router's own admin routes (/add_worker, /remove_worker, /workers/{url},
/flush_cache) sit outside /v1, and an open /add_worker would let anyone redirect prompts.
Without a key the gate still stands in front: the client routes (exact paths) pass, and
the admin routes answer 403, so no local user can register a worker on an unkeyed router.
vllm-router itself listens on the container's loopback only.

    gate.py ROUTER_ARGS...   (--host/--port are where the gate listens)
"""

from __future__ import annotations

import asyncio
import hmac
import os
import signal
import subprocess
import sys
from typing import Any

INNER_PORT = 18000  # vllm-router's, on the loopback only
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


def authorized(headers: dict[str, str], key: str) -> bool:
    auth = headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else headers.get("x-api-key", "")
    return hmac.compare_digest(given.encode(), key.encode())


def build_app(key: str, upstream: str) -> Any:
    """The gate as an aiohttp application: `key` checked (or, empty, the admin routes
    refused), everything else proxied to `upstream`."""
    from aiohttp import ClientSession, ClientTimeout, web

    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        status = refusal(request.raw_path.split("?", 1)[0], headers, key)
        if status is not None:
            return web.json_response({"error": "Unauthorized" if status == 401 else
                                      "Forbidden: an admin route of the router"},
                                     status=status)
        forward = {k: v for k, v in headers.items() if k not in HOP}
        session: ClientSession = request.app["session"]
        async with session.request(request.method, upstream + request.path_qs,
                                   headers=forward, data=await request.read()) as reply:
            out = web.StreamResponse(status=reply.status, headers={
                k: v for k, v in reply.headers.items() if k.lower() not in HOP})
            await out.prepare(request)
            try:
                async for chunk in reply.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
            except ConnectionResetError:  # the client went away mid-answer: its business
                pass
            return out

    async def start(app: web.Application) -> None:
        app["session"] = ClientSession(timeout=ClientTimeout(total=None), auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    app = web.Application(client_max_size=512 * 1024 * 1024)
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

    async def watch(app: web.Application) -> None:
        async def loop() -> None:
            while router.poll() is None:  # the gate lives as long as the router
                await asyncio.sleep(1)
            os.kill(os.getpid(), signal.SIGTERM)
        app["watch"] = asyncio.get_running_loop().create_task(loop())

    app = build_app(os.environ.get("OPENAI_API_KEY", ""), f"http://127.0.0.1:{INNER_PORT}")
    app.on_startup.append(watch)
    try:
        web.run_app(app, host=host, port=int(port), print=None, access_log=None)
    finally:
        router.terminate()
    sys.exit(router.wait() or 1)


if __name__ == "__main__":
    main(sys.argv[1:])
