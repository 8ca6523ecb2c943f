"""The model group's front door (glmkit/run/group_door.py): its state machine driven with
fake vLLM servers on one fake GPU that holds one awake model, its request parsing and its
route policy. The door over real vLLM servers is tests/e2e/test_groups_e2e.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glmkit.run import group_door as door
from glmkit.run.group_door import Group, Member, Unavailable


class Gpu:
    """One card: at most one member's weights on it; a wake while another is awake is
    the out-of-memory a real card gives."""

    def __init__(self) -> None:
        self.awake: set[str] = set()
        self.events: list[tuple[str, str]] = []

    def wake(self, name: str) -> None:
        if self.awake - {name}:
            raise RuntimeError(f"out of memory: {sorted(self.awake)} awake")
        self.awake.add(name)


class Fake:
    """A vLLM server: up or not, asleep or not; sleep and wake take `delay` seconds."""

    def __init__(self, name: str, gpu: Gpu, *, sleeping: bool = False, up: bool = True,
                 delay: float = 0.0) -> None:
        self.name, self.gpu, self.sleeping, self.up, self.delay = name, gpu, sleeping, up, delay
        self.fail_wake = self.fail_sleep = False
        if up and not sleeping:
            gpu.wake(name)

    async def health(self) -> bool:
        return self.up

    async def is_sleeping(self) -> bool:
        if not self.up:
            raise ConnectionError("refused")
        return self.sleeping

    async def sleep(self, level: int) -> None:
        self.gpu.events.append(("sleep", self.name))
        await asyncio.sleep(self.delay)
        if not self.up:
            raise ConnectionError("refused")
        if self.fail_sleep:
            raise RuntimeError("HTTP 500")
        self.sleeping = True
        self.gpu.awake.discard(self.name)

    async def wake(self, level: int) -> None:
        self.gpu.events.append(("wake", self.name))
        await asyncio.sleep(self.delay)
        if self.fail_wake:
            self.up = False  # it died waking
            raise ConnectionError("refused")
        self.gpu.wake(self.name)
        self.sleeping = False

    def start(self) -> None:
        """Its container comes up: awake, as a fresh vLLM is."""
        self.up, self.sleeping = True, False
        self.gpu.wake(self.name)

    def crash(self) -> None:
        self.up = False
        self.gpu.awake.discard(self.name)


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(body(), 20))


def started_group(names: tuple[str, ...] = ("a", "b"), delay: float = 0.0
                  ) -> tuple[Group, dict[str, Fake], Gpu]:
    """A group after start-up: the first awake, the others asleep, ready."""
    gpu = Gpu()
    fakes = {n: Fake(n, gpu, sleeping=i > 0, delay=delay) for i, n in enumerate(names)}
    group = Group([Member((n,), fakes[n]) for n in names])
    return group, fakes, gpu


async def ready(group: Group) -> None:
    await group.poll()
    while group.task is not None:
        await asyncio.sleep(0)
    await group.poll()
    assert group.ready


async def request(group: Group, name: str, served: list[str], work: float = 0.0) -> str:
    """One request: admitted, 'served' by the awake member, released."""
    member = group.find(name)
    assert member is not None
    await group.enter(member)
    try:
        assert group.awake is member and member.state == "awake", (name, member.state)
        assert member.backend.gpu.awake == {name}  # type: ignore[attr-defined]
        served.append(name)
        await asyncio.sleep(work)
        return name
    finally:
        group.leave(member)


async def crash(group: Group, fake: Any) -> None:
    """`fake` stops answering, and the door's polls find it gone."""
    fake.crash()
    for _ in range(group.max_misses):
        await group.poll()


async def served_by(group: Group, name: str) -> list[str]:
    """The members that served one request for `name`."""
    served: list[str] = []
    await request(group, name, served)
    return served


def test_start_up_puts_each_member_to_sleep_as_it_comes_up_and_leaves_the_first_awake() -> None:
    async def body() -> None:
        gpu = Gpu()
        fakes = {n: Fake(n, gpu, up=False) for n in ("a", "b", "c")}
        group = Group([Member((n,), fakes[n]) for n in ("a", "b", "c")])
        # The kit starts them last first, each once the one before is asleep.
        for name in ("c", "b", "a"):
            fakes[name].start()
            await group.poll()
            while group.task is not None:
                await asyncio.sleep(0)
            assert not fakes[name].sleeping if name == "a" else fakes[name].sleeping
        await group.poll()
        assert group.ready and group.awake is group.find("a")
        assert gpu.awake == {"a"}
        assert [m.state for m in group.members] == ["awake", "asleep", "asleep"]

    run(body)


def test_not_ready_before_every_member_came_up() -> None:
    async def body() -> None:
        gpu = Gpu()
        a, b = Fake("a", gpu, up=False), Fake("b", gpu, up=False)
        group = Group([Member(("a",), a), Member(("b",), b)])
        await group.poll()
        assert not group.ready
        with pytest.raises(Unavailable, match="starting"):
            await group.enter(group.members[0])

    run(body)


def test_a_request_for_the_awake_member_goes_straight_through() -> None:
    async def body() -> None:
        group, _, gpu = started_group()
        await ready(group)
        served: list[str] = []
        await asyncio.gather(*(request(group, "a", served) for _ in range(5)))
        assert served == ["a"] * 5 and gpu.events == [] and group.switches == 0

    run(body)


def test_a_switch_drains_the_awake_member_then_sleeps_it_then_wakes_the_other() -> None:
    async def body() -> None:
        group, _, gpu = started_group(delay=0.01)
        await ready(group)
        served: list[str] = []
        long_a = asyncio.create_task(request(group, "a", served, work=0.2))
        await asyncio.sleep(0.01)
        b = asyncio.create_task(request(group, "b", served))
        await asyncio.sleep(0.05)
        # b waits: a is still answering, so a is not put to sleep yet.
        assert gpu.events == [] and not b.done()
        # A request for a that arrives meanwhile queues behind the switch (else a would
        # never drain).
        late_a = asyncio.create_task(request(group, "a", served))
        await asyncio.gather(long_a, b, late_a)
        assert served == ["a", "b", "a"]
        assert gpu.events == [("sleep", "a"), ("wake", "b"), ("sleep", "b"), ("wake", "a")]

    run(body)


def test_requests_queued_for_one_member_are_all_served_by_one_switch() -> None:
    async def body() -> None:
        group, _, gpu = started_group(delay=0.01)
        await ready(group)
        served: list[str] = []
        await asyncio.gather(*(request(group, "b", served) for _ in range(8)))
        assert served == ["b"] * 8
        assert gpu.events == [("sleep", "a"), ("wake", "b")] and group.switches == 1

    run(body)


def test_a_model_no_member_serves_is_none_and_vllms_404_names_the_served_ones() -> None:
    group, _, _ = started_group()
    assert group.find("c") is None
    body = door.not_found("c", ["a", "b"])
    assert body == {"error": {"message": "The model `c` does not exist. Valid aliases: a, b.",
                              "type": "NotFoundError", "param": "model", "code": 404}}


def test_aliases_route_to_their_member() -> None:
    gpu = Gpu()
    group = Group([Member(("a", "claude-x"), Fake("a", gpu)),
                   Member(("b",), Fake("b", gpu, sleeping=True))])
    assert group.find("claude-x") is group.members[0]
    assert group.find("b") is group.members[1]


def test_a_member_that_crashes_asleep_answers_503_and_the_other_keeps_serving() -> None:
    async def body() -> None:
        group, fakes, _ = started_group()
        await ready(group)
        await crash(group, fakes["b"])
        assert group.find("b").state == "crashed"  # type: ignore[union-attr]
        with pytest.raises(Unavailable, match="unavailable"):
            await group.enter(group.find("b"))  # type: ignore[arg-type]
        assert await served_by(group, "a") == ["a"]

    run(body)


def test_a_member_that_crashes_waking_fails_its_queue_and_the_other_is_woken_again() -> None:
    async def body() -> None:
        group, fakes, gpu = started_group()
        await ready(group)
        fakes["b"].fail_wake = True
        with pytest.raises(Unavailable, match="crashed while waking"):
            await request(group, "b", [])
        while group.task is not None or group.awake is None:
            await asyncio.sleep(0.001)
        assert group.awake is group.find("a") and gpu.awake == {"a"}
        assert await served_by(group, "a") == ["a"]
        assert group.find("b").state == "crashed"  # type: ignore[union-attr]

    run(body)


def test_a_member_that_will_not_sleep_keeps_serving_and_the_switch_fails() -> None:
    async def body() -> None:
        group, fakes, gpu = started_group()
        await ready(group)
        fakes["a"].fail_sleep = True  # HTTP 500, but it still runs: b must not wake
        with pytest.raises(Unavailable, match="did not go to sleep"):
            await request(group, "b", [])
        assert gpu.awake == {"a"} and group.awake is group.find("a")
        assert await served_by(group, "a") == ["a"]

    run(body)


def test_the_awake_member_crashing_lets_a_request_wake_another() -> None:
    async def body() -> None:
        group, fakes, gpu = started_group()
        await ready(group)
        await crash(group, fakes["a"])
        assert group.awake is None
        assert await served_by(group, "b") == ["b"] and gpu.awake == {"b"}

    run(body)


def test_a_crashed_member_that_comes_back_is_taken_as_it_is() -> None:
    async def body() -> None:
        group, fakes, _ = started_group()
        await ready(group)
        await crash(group, fakes["b"])
        fakes["b"].up, fakes["b"].sleeping = True, True  # restarted by hand, then slept
        await group.poll()
        assert group.find("b").state == "asleep"  # type: ignore[union-attr]
        assert await served_by(group, "b") == ["b"]

    run(body)


def test_a_client_that_leaves_the_queue_is_not_admitted_and_admitted_ones_are_released() -> None:
    async def body() -> None:
        group, _, _ = started_group(delay=0.05)
        await ready(group)
        b = group.find("b")
        assert b is not None
        waiting = asyncio.create_task(group.enter(b))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not b.waiters
        while group.task is not None:
            await asyncio.sleep(0.001)
        assert b.inflight == 0 and b.idle.is_set()

    run(body)


def test_a_queue_past_its_limit_answers_503_at_once() -> None:
    async def body() -> None:
        group, _, _ = started_group(delay=0.05)
        group.queue_limit = 2
        await ready(group)
        b = group.find("b")
        assert b is not None
        first = [asyncio.create_task(request(group, "b", [])) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="already wait"):
            await group.enter(b)
        await asyncio.gather(*first)

    run(body)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 3)), min_size=1,
                max_size=30))
def test_under_any_mix_of_requests_each_is_served_once_by_the_model_it_named(
        plan: list[tuple[str, int]]) -> None:
    """Requests for three members arriving in any order, overlapping: every one is served
    exactly once, by the member it named, with that member alone on the GPU (Fake and
    Gpu check it), and nothing is left queued or in flight."""
    async def body() -> None:
        group, _, gpu = started_group(("a", "b", "c"))
        await ready(group)
        served: list[str] = []

        async def one(name: str, pause: int) -> str:
            await asyncio.sleep(pause * 0.001)
            return await request(group, name, served, work=0.001 * pause)

        answers = await asyncio.gather(*(one(n, p) for n, p in plan))
        assert answers == [n for n, _ in plan]
        assert sorted(served) == sorted(n for n, _ in plan)
        assert all(not m.waiters and m.inflight == 0 for m in group.members)
        assert len(gpu.awake) == 1

    run(body)


def test_switches_are_reported_with_their_phases() -> None:
    async def body() -> None:
        group, _, _ = started_group(delay=0.01)
        seen: list[door.Switch] = []
        group.on_switch = seen.append
        await ready(group)
        await request(group, "b", [])
        assert [(s.frm, s.to, s.ok) for s in seen] == [("a", "b", True)]
        assert set(seen[0].phases) == {"drain", "sleep", "wake"}
        assert seen[0].seconds >= seen[0].phases["sleep"] + seen[0].phases["wake"]

    run(body)


# --- requests and routes -------------------------------------------------------------------

@pytest.mark.parametrize("body,model", [
    (b'{"model": "a", "messages": []}', "a"), (b'{"messages": []}', None),
    (b'{"model": 3}', None), (b"not json", None), (b"", None), (b'["model"]', None),
    (b'{"model": ""}', None), pytest.param(b"[" * 100_000, None, id="deep-list"),
    pytest.param(b'{"a": ' * 100_000, None, id="deep-object")])
def test_the_model_is_read_from_a_json_body_or_none(body: bytes, model: str | None) -> None:
    assert door.requested_model(body) == model


@pytest.mark.parametrize("path", ["/sleep", "/wake_up", "/is_sleeping", "/collective_rpc",
                                  "/reset_prefix_cache", "/reset_mm_cache", "/server_info",
                                  "/pause", "/resume", "/update_weights", "/abort_requests",
                                  "/release_kv_cache_memory", "/start_profile",
                                  "/v1/load_lora_adapter",
                                  "//sleep", "/v1/../sleep", "/health/../sleep", "/SLEEP", ""])
@pytest.mark.parametrize("key,headers", [("", {}), ("k3y", {"authorization": "Bearer k3y"}),
                                         ("k3y", {"x-api-key": "k3y"}), ("k3y", {}),
                                         ("k3y", {"authorization": "Bearer nope"})])
def test_dev_routes_answer_403_keyed_or_not(path: str, key: str, headers: dict[str, str]
                                            ) -> None:
    assert door.refusal(path, headers, key) == 403


@pytest.mark.parametrize("path", sorted(door.CLIENT_PATHS | {"/metrics"}))
def test_client_routes_need_the_key_when_one_is_set(path: str) -> None:
    assert door.refusal(path, {}, "") is None
    assert door.refusal(path, {"authorization": "Bearer k3y"}, "k3y") is None
    assert door.refusal(path, {"authorization": "Bearer nope"}, "k3y") == 401
    assert door.refusal(path, {}, "k3y") == 401


@pytest.mark.parametrize("headers", [{"authorization": "Bearer \udcff\udcfe"},
                                     {"x-api-key": "k3y\udc80"}, {"x-api-key": "\ud800"}])
def test_a_key_that_is_not_utf8_is_refused_not_a_traceback(headers: dict[str, str]) -> None:
    # aiohttp hands header bytes that are not UTF-8 over as lone surrogates.
    assert door.refusal("/v1/chat/completions", headers, "k3y") == 401


def test_health_is_open() -> None:
    assert door.refusal("/health", {}, "k3y") is None


@given(st.text(max_size=30))
def test_only_client_paths_pass(path: str) -> None:
    allowed = path in door.CLIENT_PATHS or path in ("/metrics", "/health")
    assert (door.refusal(path, {}, "") is None) == allowed


def test_members_are_given_on_the_command_line_in_order() -> None:
    args = door.parse_args(["--member", "http://127.0.0.1:8001", "a", "claude-x",
                            "--member", "http://127.0.0.1:8002", "b", "--sleep-level", "2"])
    assert args.member == [["http://127.0.0.1:8001", "a", "claude-x"],
                           ["http://127.0.0.1:8002", "b"]]
    assert args.sleep_level == 2
    with pytest.raises(SystemExit):
        door.parse_args(["--member", "http://x:1", "a", "--member", "http://y:2", "a"])
    with pytest.raises(SystemExit):
        door.parse_args(["--member", "http://x:1"])


def test_the_door_imports_nothing_of_glmkit() -> None:
    """It runs alone in the serving image and on a GPU host beside vLLM's wheels."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(door.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {n.split(".")[0] for n in names} <= {
        "__future__", "argparse", "asyncio", "contextlib", "hmac", "json", "os", "sys",
        "time", "collections", "dataclasses", "typing", "aiohttp", "prometheus_client"}


def test_error_bodies_have_vllms_shape() -> None:
    body = json.loads(json.dumps(door.error_body("x", "ServiceUnavailableError", 503)))
    assert body == {"error": {"message": "x", "type": "ServiceUnavailableError", "param": None,
                              "code": 503}}
