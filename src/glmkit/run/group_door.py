"""The front door of a model group (`invoke up --model A --model B`): one published port in
front of several vLLM servers, one of them awake at a time (vLLM's sleep mode).

Every client request is routed by its `model` field (a member's served name or one of its
aliases). A request for the awake member goes straight through; one for a sleeping member
waits while the door drains the awake member's requests in flight, puts it to sleep
(`POST /sleep?level=L&mode=wait`), wakes the other (`POST /wake_up`) and then sends every
request that queued for it. A model no member serves gets vLLM's own 404; a member that
crashed, asleep or waking, gets 503 while the others keep serving.

The members listen on the loopback of the door's network namespace (compose
`network_mode: service:door`): vLLM's dev routes there (`/sleep`, `/wake_up`,
`/collective_rpc`, ...; VLLM_SERVER_DEV_MODE=1) are reachable from the door and the
members only. The door passes the client routes alone, by exact path; everything else
answers 403, with or without an API key. With VLLM_API_KEY set, every route but /health
needs it (`Authorization: Bearer KEY` or `x-api-key: KEY`), /metrics too.

    python3 group_door.py --port 8000 --member http://127.0.0.1:8001 NAME [ALIAS ...] \
        --member http://127.0.0.1:8002 NAME2 [--sleep-level 1]

The first member is the one left awake at start-up; the others are put to sleep as they
come up healthy. This file is run on its own in the serving image (vLLM's wheel set has
aiohttp and prometheus_client) and by scripts/sleep_truth.py: it imports nothing of glmkit.
The state machine (`Group`) knows no HTTP, so unit tests drive it with fake members.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# The largest request body passed on (as the router gate): a 200,000-token prompt is about
# 1 MB of JSON; images and video travel base64, so this holds a 48 MiB video. The door
# reads a body whole to find its `model`, so this also bounds what one request holds.
MAX_BODY = 64 * 1024 * 1024
CHUNK = 64 * 1024
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
       "trailers", "transfer-encoding", "upgrade", "host", "content-length"}
# Exact paths: what a client of vLLM's OpenAI and Anthropic APIs calls. Every other path
# (vLLM's dev routes above all: /sleep, /wake_up, /is_sleeping, /collective_rpc,
# /reset_prefix_cache, /server_info, /pause, /update_weights, ...) answers 403.
CLIENT_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses",
                          "/v1/messages", "/v1/messages/count_tokens", "/v1/embeddings",
                          "/tokenize", "/detokenize", "/v1/models", "/version"})
OPEN_PATHS = frozenset({"/health"})
STATES = ("starting", "awake", "asleep", "sleeping", "waking", "crashed")
QUEUE_LIMIT = 1024  # requests waiting for one member; past it: 503 at once
# How the door serves (aiohttp's runner options): a client that goes away cancels its
# request, so it leaves the queue and is not sent on to a member (aiohttp >= 3.9 lets the
# handler run on by default).
SERVE_OPTIONS: dict[str, Any] = {"handler_cancellation": True}


class Unavailable(Exception):
    """The member asked for cannot serve now: 503 with this message."""


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} glmkit-door: {message}", flush=True)


# --- the state machine (no HTTP) --------------------------------------------------------------

class Backend(Protocol):
    """What the door needs of one vLLM server."""

    async def health(self) -> bool: ...

    async def is_sleeping(self) -> bool: ...

    async def sleep(self, level: int) -> None: ...

    async def wake(self, level: int) -> None: ...


@dataclass(eq=False)
class Member:
    names: tuple[str, ...]  # its served name first, then its aliases
    backend: Backend
    first: bool = False  # the one left awake at start-up
    state: str = "starting"
    inflight: int = 0
    # (when it arrived, its future): requests queued for this member, oldest first.
    waiters: deque[tuple[float, asyncio.Future[None]]] = field(default_factory=deque)
    changed_at: float | None = None  # wall clock of its last change of state
    detail: str = ""  # why it crashed
    misses: int = 0  # /health probes failed in a row
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class Switch:
    """One switch, as the metrics record it."""

    frm: str | None
    to: str
    ok: bool
    seconds: float
    phases: dict[str, float]


class Group:
    """Which member is awake, the requests in flight and queued, and the switches."""

    def __init__(self, members: Sequence[Member], *, level: int = 1,
                 drain_timeout: float = 600.0, switch_timeout: float = 900.0,
                 misses: int = 3, queue_limit: int = QUEUE_LIMIT,
                 on_switch: Callable[[Switch], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not members:
            raise ValueError("a group has members")
        self.members = list(members)
        self.members[0].first = True
        self.level = level
        self.drain_timeout = drain_timeout
        self.switch_timeout = switch_timeout
        self.max_misses = misses
        self.queue_limit = queue_limit
        self.on_switch = on_switch
        self.clock = clock
        self.awake: Member | None = None
        self.previous: Member | None = None  # the last one awake: woken again after a failure
        self.target: Member | None = None  # the member a running switch wakes
        self.task: asyncio.Task[None] | None = None  # the one switch (or sleep) running
        self.ready = False  # every member came up once, one awake
        self.strays: list[Member] = []  # awake but not the awake one: to be put to sleep
        self.switches = 0

    # -- lookups ------------------------------------------------------------------------------
    def find(self, name: str) -> Member | None:
        return next((m for m in self.members if name in m.names), None)

    def default(self) -> Member:
        """The member a request without a model goes to: the awake one, no switch."""
        if self.awake is not None:
            return self.awake
        return next((m for m in self.members if m.state != "crashed"), self.members[0])

    # -- requests -----------------------------------------------------------------------------
    async def enter(self, member: Member) -> None:
        """Admit one request for `member`: at once when it is awake and no switch is
        pending, else when a switch has woken it. Unavailable when it cannot serve."""
        if not self.ready:
            raise Unavailable("the model group is still starting")
        if member.state == "crashed":
            raise Unavailable(f"the model `{member.name}` is unavailable: {member.detail} "
                              "(`invoke status`; `invoke down` then `invoke up` restarts "
                              "the group)")
        if member is self.awake and member.state == "awake" and self.task is None:
            self._admit_one(member)
            return
        if len(member.waiters) >= self.queue_limit:
            raise Unavailable(f"{len(member.waiters)} requests already wait for the model "
                              f"`{member.name}`")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        member.waiters.append((time.monotonic(), future))
        self.kick()
        try:
            await future
        except asyncio.CancelledError:
            # The client went away: out of the queue, or, admitted meanwhile, released.
            if future.done() and not future.cancelled() and future.exception() is None:
                self.leave(member)
            for waiter in [w for w in member.waiters if w[1] is future]:
                member.waiters.remove(waiter)
            raise

    def leave(self, member: Member) -> None:
        """One admitted request of `member` has ended (answered, failed or abandoned)."""
        member.inflight -= 1
        if member.inflight <= 0:
            member.inflight = 0
            member.idle.set()

    def _admit_one(self, member: Member) -> None:
        member.inflight += 1
        member.idle.clear()

    def _admit(self, member: Member) -> None:
        while member.waiters:
            _, future = member.waiters.popleft()
            if not future.done():
                self._admit_one(member)
                future.set_result(None)

    def _fail(self, member: Member, why: str) -> None:
        while member.waiters:
            _, future = member.waiters.popleft()
            if not future.done():
                future.set_exception(Unavailable(why))

    # -- switching ----------------------------------------------------------------------------
    def kick(self) -> None:
        """Start the next switch when one is due and none runs: a stray awake member is put
        to sleep first, then the member whose request waits longest is woken, else, after
        a failure left none awake, the last one that was."""
        if self.task is not None:
            return
        loop = asyncio.get_running_loop()
        if self.strays:
            self.task = loop.create_task(self._sleep_stray(self.strays.pop(0)))
            return
        waiting = [m for m in self.members if m.waiters]
        if waiting:
            nxt = min(waiting, key=lambda m: m.waiters[0][0])
        elif self.ready and self.awake is None and self.previous is not None and \
                self.previous.state == "asleep":
            nxt = self.previous
        else:
            return
        if nxt.state == "crashed":
            self._fail(nxt, f"the model `{nxt.name}` is unavailable: {nxt.detail}")
            self.kick()
            return
        if nxt is self.awake and nxt.state == "awake":
            self._admit(nxt)
            self.kick()
            return
        self.task = loop.create_task(self._switch(nxt))

    async def _alive(self, member: Member) -> bool:
        try:
            return await asyncio.wait_for(member.backend.health(), 10)
        except Exception:
            return False

    def crashed(self, member: Member, why: str) -> None:
        log(f"{member.name}: {why}")
        member.state, member.detail, member.changed_at = "crashed", why, self.clock()
        if self.awake is member:
            self.awake = None
        self._fail(member, f"the model `{member.name}` is unavailable: {why}")

    async def _switch(self, to: Member) -> None:
        frm = self.awake if self.awake is not to else None
        started, phases, ok = time.monotonic(), {}, False
        self.target = to
        log(f"switch {frm.name if frm else '(none awake)'} -> {to.name}: "
            f"{sum(len(m.waiters) for m in self.members)} request(s) queued")
        try:
            if frm is not None:
                at = time.monotonic()
                try:
                    await asyncio.wait_for(frm.idle.wait(), self.drain_timeout)
                except asyncio.TimeoutError:
                    log(f"{frm.name}: {frm.inflight} request(s) still running after "
                        f"{self.drain_timeout:g} s; sleeping it (vLLM finishes them first)")
                phases["drain"] = time.monotonic() - at
                at = time.monotonic()
                frm.state = "sleeping"
                try:
                    await asyncio.wait_for(frm.backend.sleep(self.level), self.switch_timeout)
                except Exception as err:
                    if await self._alive(frm):
                        # It still runs and holds its memory: waking another would not fit.
                        frm.state = "awake"
                        self._fail(to, f"the model `{to.name}` is unavailable: "
                                   f"`{frm.name}` did not go to sleep ({_short(err)})")
                        return
                    self.crashed(frm, f"crashed while going to sleep ({_short(err)})")
                else:
                    frm.state, frm.changed_at = "asleep", self.clock()
                    self.previous = frm
                self.awake = None
                phases["sleep"] = time.monotonic() - at
            at = time.monotonic()
            to.state = "waking"
            try:
                await asyncio.wait_for(to.backend.wake(self.level), self.switch_timeout)
            except Exception as err:
                self.crashed(to, f"crashed while waking ({_short(err)})")
                return
            phases["wake"] = time.monotonic() - at
            to.state, to.changed_at, to.misses = "awake", self.clock(), 0
            self.awake = to
            ok = True
            self._admit(to)
        finally:
            seconds = time.monotonic() - started
            self.target, self.task = None, None
            self.switches += 1
            log(f"switch {frm.name if frm else '(none awake)'} -> {to.name}: "
                f"{'done' if ok else 'FAILED'} in {seconds:.2f} s "
                + " ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
            if self.on_switch is not None:
                self.on_switch(Switch(frm.name if frm else None, to.name, ok, seconds, phases))
            self.kick()

    async def _sleep_stray(self, member: Member) -> None:
        """A member awake beside the awake one (at start-up, or back after a crash): put
        to sleep before anything else wakes."""
        try:
            if member.state != "awake" or member is self.awake:
                return
            member.state = "sleeping"
            try:
                await asyncio.wait_for(member.backend.sleep(self.level), self.switch_timeout)
            except Exception as err:
                self.crashed(member, f"would not go to sleep ({_short(err)})")
            else:
                member.state, member.changed_at = "asleep", self.clock()
                log(f"{member.name}: asleep")
        finally:
            self.task = None
            self.kick()

    # -- watching the members -----------------------------------------------------------------
    async def poll(self) -> None:
        """One look at every member not in a transition: a member that stops answering
        /health is crashed after `misses` looks in a row; one that comes up (at start, or
        back) is taken as it is: asleep, the awake one, or a stray to put to sleep."""
        for m in self.members:
            if m.state in ("sleeping", "waking") or m is self.target:
                continue
            alive = await self._alive(m)
            if m.state in ("sleeping", "waking") or m is self.target:
                continue
            if not alive:
                m.misses += 1
                if m.state not in ("starting", "crashed") and m.misses >= self.max_misses:
                    self.crashed(m, "its server stopped answering")
                continue
            m.misses = 0
            if m.state not in ("starting", "crashed"):
                continue
            try:
                sleeping = await asyncio.wait_for(m.backend.is_sleeping(), 10)
            except Exception:
                continue
            if m.state not in ("starting", "crashed"):
                continue
            m.detail, m.changed_at = "", self.clock()
            if sleeping:
                m.state = "asleep"
            elif self.awake is None and self.target is None and (m.first or self.ready):
                m.state, self.awake = "awake", m
            else:
                m.state = "awake"
                if m not in self.strays:
                    self.strays.append(m)
            log(f"{m.name}: up, {m.state}" + (" (to be put to sleep)" if m in self.strays
                                              else ""))
        settled = all(m.state in ("awake", "asleep", "crashed") for m in self.members)
        if not self.ready and settled and not self.strays and self.task is None:
            self.ready = True
            log("ready: " + ", ".join(f"{m.name} {m.state}" for m in self.members))
        self.kick()

    async def watch(self, every: float = 2.0) -> None:
        while True:
            try:
                await self.poll()
            except Exception as err:  # a look that failed is tried again, never fatal
                log(f"watch: {_short(err)}")
            await asyncio.sleep(every)


def _short(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text.splitlines()[0][:200] if text else type(err).__name__


# --- requests as vLLM reads them ----------------------------------------------------------------

def requested_model(body: bytes) -> str | None:
    """The `model` of a JSON request body; None when it names none (vLLM then serves its
    default model: here the awake member)."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):  # not JSON, or nested past what json.loads follows
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) and model else None


def error_body(message: str, kind: str, code: int, param: str | None = None) -> dict[str, Any]:
    """vLLM's error shape (ErrorResponse: {"error": {message, type, param, code}})."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def not_found(model: str, names: Sequence[str]) -> dict[str, Any]:
    """What vLLM answers for a model it does not serve (serving.py `_check_model`)."""
    return error_body(f"The model `{model}` does not exist. Valid aliases: "
                      f"{', '.join(names)}.", "NotFoundError", 404, "model")


def authorized(headers: dict[str, str], key: str) -> bool:
    auth = headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else headers.get("x-api-key", "")
    # aiohttp keeps header bytes that are not UTF-8 as lone surrogates: compared, not refused
    # with a traceback.
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               key.encode("utf-8", "surrogatepass"))


def refusal(path: str, headers: dict[str, str], key: str) -> int | None:
    """403 (not a client route: vLLM's dev routes above all, whatever key the door has
    and the request carries), 401 (a key is set and missing or wrong), or None to serve."""
    if path in OPEN_PATHS:
        return None
    if path not in CLIENT_PATHS and path != "/metrics":
        return 403
    return 401 if key and not authorized(headers, key) else None


class TooLarge(Exception):
    pass


# --- HTTP (aiohttp, as in every vLLM image) ------------------------------------------------------

class HttpBackend:
    """A member's vLLM server, reached at `url` with the door's session."""

    def __init__(self, url: str, session: Callable[[], Any]) -> None:
        self.url = url.rstrip("/")
        self.session = session

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session().request(method, self.url + path, **kwargs) as reply:
            text = await reply.text()
            if reply.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {reply.status} {text[:200]}")
            return json.loads(text) if text else None

    async def health(self) -> bool:
        async with self.session().get(self.url + "/health") as reply:
            return bool(reply.status == 200)

    async def is_sleeping(self) -> bool:
        data = await self._call("GET", "/is_sleeping")
        if not isinstance(data, dict) or not isinstance(data.get("is_sleeping"), bool):
            raise RuntimeError(f"/is_sleeping answered {str(data)[:100]}")
        return bool(data["is_sleeping"])

    async def sleep(self, level: int) -> None:
        # mode=wait: vLLM (0.32) lets running requests finish first; older ones ignore it.
        await self._call("POST", f"/sleep?level={level}&mode=wait")

    async def wake(self, level: int) -> None:
        await self._call("POST", "/wake_up")
        if level == 2:
            # Level 2 dropped the weights: back from disk, and the prefix cache made with
            # them forgotten (vLLM's sleep-mode post, 2025-10-26).
            await self._call("POST", "/collective_rpc", json={"method": "reload_weights"})
            await self._call("POST", "/reset_prefix_cache")
        if await self.is_sleeping():
            raise RuntimeError("/is_sleeping still says true after /wake_up")


class Metrics:
    """The door's Prometheus metrics: switches counted and timed, each member's state."""

    def __init__(self, group: Group) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.core import GaugeMetricFamily

        self.registry = CollectorRegistry()
        self.switches = Counter("glmkit_group_switches", "Switches between the group's "
                                "models", ["from_model", "to_model", "outcome"],
                                registry=self.registry)
        buckets = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60, 120, 300, 600)
        self.seconds = Histogram("glmkit_group_switch_seconds", "Time from a switch's start "
                                 "(draining the awake model) to the woken model serving",
                                 ["to_model"], buckets=buckets, registry=self.registry)
        self.phases = Histogram("glmkit_group_switch_phase_seconds", "A switch's phases: "
                                "drain, sleep, wake", ["phase"], buckets=buckets,
                                registry=self.registry)

        class States:
            def collect(self) -> Any:
                ready = GaugeMetricFamily("glmkit_group_ready", "1 once every member "
                                          "came up and one is awake")
                ready.add_metric([], 1.0 if group.ready else 0.0)
                awake = GaugeMetricFamily("glmkit_group_member_awake", "1 for the awake "
                                          "member", labels=["model"])
                state = GaugeMetricFamily("glmkit_group_member_state", "1 for the member's "
                                          "state", labels=["model", "state"])
                since = GaugeMetricFamily("glmkit_group_member_last_switch_timestamp_seconds",
                                          "When the member last changed state (Unix time)",
                                          labels=["model"])
                queued = GaugeMetricFamily("glmkit_group_member_queued", "Requests waiting "
                                           "for the member to wake", labels=["model"])
                running = GaugeMetricFamily("glmkit_group_member_inflight", "Requests the "
                                            "member is serving", labels=["model"])
                for m in group.members:
                    awake.add_metric([m.name], 1.0 if m is group.awake else 0.0)
                    for s in STATES:
                        state.add_metric([m.name, s], 1.0 if m.state == s else 0.0)
                    if m.changed_at is not None:
                        since.add_metric([m.name], m.changed_at)
                    queued.add_metric([m.name], float(len(m.waiters)))
                    running.add_metric([m.name], float(m.inflight))
                yield from (ready, awake, state, since, queued, running)

        self.registry.register(States())

    def record(self, switch: Switch) -> None:
        self.switches.labels(switch.frm or "", switch.to,
                             "ok" if switch.ok else "failed").inc()
        if switch.ok:
            self.seconds.labels(switch.to).observe(switch.seconds)
        for phase, seconds in switch.phases.items():
            self.phases.labels(phase).observe(seconds)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


def build_app(group: Group, key: str, sessions: list[Any], metrics: Metrics | None = None
              ) -> Any:
    """The door as an aiohttp application over `group` (its members' backends use the
    session opened at start, `sessions[0]`)."""
    from aiohttp import ClientError, ClientSession, ClientTimeout, web

    def refuse(status: int, message: str, kind: str) -> web.Response:
        return web.json_response(error_body(message, kind, status), status=status)

    async def body_of(request: web.Request) -> bytes:
        length = request.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > MAX_BODY:
            raise TooLarge
        chunks, seen = [], 0
        async for chunk in request.content.iter_chunked(CHUNK):
            seen += len(chunk)
            if seen > MAX_BODY:
                raise TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def models(request: web.Request, headers: dict[str, str]) -> web.Response:
        """Every member's /v1/models, one list (a sleeping vLLM answers it too)."""
        data: list[Any] = []
        for m in group.members:
            if m.state == "crashed" or not isinstance(m.backend, HttpBackend):
                continue
            try:
                async with sessions[0].get(m.backend.url + "/v1/models",
                                           headers=headers) as reply:
                    if reply.status == 401:
                        return refuse(401, "Unauthorized", "Unauthorized")
                    if reply.status == 200:
                        data += (await reply.json()).get("data") or []
            except (ClientError, ValueError, asyncio.TimeoutError):
                continue
        return web.json_response({"object": "list", "data": data})

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in request.headers.items()}
        if path == "/health":
            return web.json_response({"ready": group.ready}, status=200 if group.ready
                                     else 503)
        status = refusal(path, headers, key)
        if status == 401:
            return refuse(401, "Unauthorized", "Unauthorized")
        if status == 403:
            return refuse(403, "Forbidden: not a client route of this model group",
                          "Forbidden")
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST

            return web.Response(body=metrics.text() if metrics else b"",
                                headers={"Content-Type": CONTENT_TYPE_LATEST})
        forward = {k: v for k, v in headers.items() if k not in HOP}
        if path == "/v1/models":
            return await models(request, forward)
        try:
            body = await body_of(request) if request.body_exists else b""
        except TooLarge:
            return refuse(413, f"Request body over {MAX_BODY // 2**20} MiB",
                          "RequestEntityTooLarge")
        name = requested_model(body)
        member = group.find(name) if name else group.default()
        if member is None:
            names = [n for m in group.members for n in m.names]
            return web.json_response(not_found(str(name), names), status=404)
        try:
            await group.enter(member)
        except Unavailable as err:
            return refuse(503, str(err), "ServiceUnavailableError")
        out: web.StreamResponse | None = None
        try:
            assert isinstance(member.backend, HttpBackend)
            async with sessions[0].request(request.method, member.backend.url + request.path_qs,
                                           headers=forward, data=body or None) as reply:
                out = web.StreamResponse(status=reply.status, headers={
                    k: v for k, v in reply.headers.items() if k.lower() not in HOP})
                await out.prepare(request)
                with contextlib.suppress(ConnectionResetError):  # the client went away
                    async for chunk in reply.content.iter_any():
                        await out.write(chunk)
                    await out.write_eof()
                return out
        except (ClientError, asyncio.TimeoutError) as err:
            if out is not None and out.prepared:  # cut off mid-answer: nothing more to say
                return out
            return refuse(503, f"the model `{member.name}` did not answer ({_short(err)})",
                          "ServiceUnavailableError")
        finally:
            group.leave(member)

    async def start(app: web.Application) -> None:
        sessions.append(ClientSession(timeout=ClientTimeout(total=None, connect=10),
                                      auto_decompress=False))

    async def stop(app: web.Application) -> None:
        await sessions.pop().close()

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", handle)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="group_door", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--member", nargs="+", action="append", required=True,
                   metavar=("URL", "NAME"), help="a member: its URL, its served name and "
                   "aliases; the first given is left awake at start")
    p.add_argument("--sleep-level", type=int, choices=(1, 2), default=1)
    p.add_argument("--drain-timeout", type=float, default=600.0)
    p.add_argument("--switch-timeout", type=float, default=900.0)
    p.add_argument("--poll", type=float, default=2.0)
    args = p.parse_args(list(argv))
    if any(len(m) < 2 for m in args.member):
        p.error("--member URL NAME [ALIAS ...]")
    names = [n for m in args.member for n in m[1:]]
    if len(set(names)) != len(names):
        p.error("a name is given to two members")
    return args


def main(argv: Sequence[str]) -> None:
    from aiohttp import ClientSession, ClientTimeout, web

    args = parse_args(argv)
    probes: list[ClientSession] = []  # health, sleep and wake calls: bounded each

    def session() -> ClientSession:
        return probes[0]

    group = Group([Member(tuple(m[1:]), HttpBackend(m[0], session)) for m in args.member],
                  level=args.sleep_level, drain_timeout=args.drain_timeout,
                  switch_timeout=args.switch_timeout)
    metrics = Metrics(group)
    group.on_switch = metrics.record
    tasks: list[asyncio.Task[None]] = []  # kept: a task no one holds may be collected

    async def watch(app: web.Application) -> None:
        probes.append(ClientSession(timeout=ClientTimeout(total=args.switch_timeout,
                                                          connect=5)))
        tasks.append(asyncio.get_running_loop().create_task(group.watch(args.poll)))

    async def unwatch(app: web.Application) -> None:
        for task in tasks:
            task.cancel()
        if probes:
            await probes.pop().close()

    app = build_app(group, os.environ.get("VLLM_API_KEY", ""), [], metrics)
    app.on_startup.append(watch)
    app.on_cleanup.append(unwatch)
    log(f"listening on {args.host}:{args.port}; members: "
        + "; ".join(f"{' '.join(m[1:])} at {m[0]}" for m in args.member)
        + f"; sleep level {args.sleep_level}")
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None,
                **SERVE_OPTIONS)


if __name__ == "__main__":
    main(sys.argv[1:])
