"""Model groups (#37): the settings that name one, the plan (each member sized alone plus
what the sleeping ones keep, the sleep level the host's memory allows, the expected switch
time from the measured figures), the compose file, the staged start, `invoke status`'s
reading of the door, and `check`/`bench --model` finding one member."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from glmkit.errors import UsageError
from glmkit.host.facts import memory_available_gib, read_host_facts
from glmkit.host.hardware import Hardware
from glmkit.host.settings import Settings, flags_from_options, resolve_settings
from glmkit.knowledge import sleep_model
from glmkit.knowledge.gpu_model import constant
from glmkit.knowledge.recipes import load_book
from glmkit.plan.deployment import plan_deployment
from glmkit.plan.group import DOOR, GroupPlan, plan_group
from glmkit.render.compose import dump
from glmkit.render.deployment import compose_files, manifests
from tests.unit.compose_schema import check_compose
from tests.unit.helpers import NO_GPU, gpus

ENV = {"GLMKIT_HOME": "/tmp/glmkit-test", "HF_HOME": "/tmp/glmkit-test-hf"}
TINY, VISION = "glmkit/glm-tiny", "glmkit/glm-tiny-vision"
FLASH, AIR = "zai-org/GLM-4.7-Flash", "zai-org/GLM-4.5-Air-FP8"
H100 = gpus("cuda", 1)
H200 = gpus("cuda", 1, 143771, "NVIDIA H200")


def settings(*models: str, **kwargs: Any) -> Settings:
    flags = flags_from_options({"model": list(models), **kwargs}, (), ())
    return resolve_settings(flags, {}, {})[0]


def group(*models: str, hw: Hardware = NO_GPU, memory: float | None = 1000.0,
          **kwargs: Any) -> GroupPlan:
    s = settings(*models, **kwargs)
    facts = dataclasses.replace(read_host_facts(s, ENV, hw), memory_available_gib=memory)
    plan = plan_deployment(s, facts, load_book(ENV))
    assert isinstance(plan, GroupPlan)
    return plan


# --- settings -------------------------------------------------------------------------------

def test_model_repeated_on_the_command_line_is_a_group_led_by_the_first() -> None:
    s = settings(TINY, VISION)
    assert s.models == (TINY, VISION) and s.model == TINY
    assert settings(TINY).models == () and settings(TINY).model == TINY


def test_a_named_group_in_invoke_yaml() -> None:
    config = {"groups": {"coding": [TINY, VISION]}, "group": "coding"}
    s, sources = resolve_settings({}, config, {})
    assert s.models == (TINY, VISION) and s.model == TINY
    assert s.models_source == "invoke.yaml" and sources["models"] == "invoke.yaml"
    # --group on the command line picks it too; a single --model there wins over it.
    assert resolve_settings({"group": "coding"}, {"groups": config["groups"]}, {})[0].models \
        == (TINY, VISION)
    single = resolve_settings({"model": VISION}, config, {})[0]
    assert single.models == () and single.model == VISION


@pytest.mark.parametrize("config,flags,message", [
    ({"groups": {"coding": [TINY, VISION]}}, {"group": "nope"}, "has no such group"),
    ({"groups": {"coding": [TINY]}}, {}, "a group has 2 to 8"),
    ({"groups": {"bad name!": [TINY, VISION]}}, {}, "is not a name"),
    ({"groups": ["coding"]}, {}, "groups"),
    ({"groups": {"coding": [TINY, 3]}}, {}, "groups"),
    ({"groups": {"coding": [TINY, VISION]}}, {"group": "coding", "models": (TINY, VISION)},
     "contradict"),
    ({}, {"models": tuple(f"org/m{i}" for i in range(9))}, "at most 8"),
])
def test_a_bad_group_is_one_line(config: dict[str, Any], flags: dict[str, Any],
                                 message: str) -> None:
    with pytest.raises(UsageError, match=message) as err:
        resolve_settings(flags, config, {})
    assert "\n" not in str(err.value)


def test_the_environment_names_a_group_as_shell_words() -> None:
    s = resolve_settings({}, {}, {"GLMKIT_MODELS": f"{TINY} {VISION}"})[0]
    assert s.models == (TINY, VISION) and s.models_source == "environment"


# --- the plan ---------------------------------------------------------------------------------

def test_cpu_members_listen_on_the_doors_loopback_with_dev_mode_and_no_sleep_flag() -> None:
    plan = group(TINY, VISION, vendor="cpu", port=8311)
    first, second = plan.members
    assert (first.port, second.port) == (8001, 8002)
    for m in plan.members:
        args = list(m.args)
        assert args[args.index("--host") + 1] == "127.0.0.1"
        assert m.env["VLLM_SERVER_DEV_MODE"] == "1" and m.env["GLMKIT_PORT"] == str(m.port)
        assert "--enable-sleep-mode" not in args  # vLLM's CPU backend refuses it
    assert not plan.sleeps and plan.base.base_url == "http://127.0.0.1:8311"
    assert any("no sleep mode" in n for n in plan.base.notes)
    door = list(plan.door_args)
    assert door[door.index("--member") + 1:door.index("--member") + 3] == \
        ["http://127.0.0.1:8001", TINY]
    # Where nothing sleeps, the members start together after the door.
    assert plan.stages() == ((DOOR,), ("member2", "member1"))


def test_on_a_gpu_members_start_one_by_one_last_first_each_asleep_but_the_first() -> None:
    plan = group(FLASH, AIR, hw=H200, vendor="cuda")
    assert plan.sleeps and plan.sleep_level == 1
    assert plan.stages() == ((DOOR,), ("member2",), ("member1",))
    probes = {p.service: p.probe for p in plan.parts() if p.probe}
    assert probes["member2"].asleep and not probes["member1"].asleep  # type: ignore[union-attr]
    assert all("--enable-sleep-mode" in m.args for m in plan.members)


def test_each_member_is_sized_alone_at_the_utilization_one_awake_and_the_rest_asleep_fit(
        ) -> None:
    plan = group(FLASH, AIR, hw=H200, vendor="cuda", gpu_memory_utilization=0.95)
    assert plan.room is not None
    card = 143771 / 1024
    # The awake one's footprint and the sleeper's 4.1 GiB fit the card, at most 0.01 short.
    assert plan.room.awake_gib + plan.room.asleep_gib <= card
    assert plan.room.awake_gib + plan.room.asleep_gib > card - 0.01 * (card - 0.6) - 1e-9
    for m in plan.members:
        args = list(m.args)
        assert args[args.index("--gpu-memory-utilization") + 1] == \
            f"{plan.room.utilization:g}" != "0.95"
    assert any("from 0.95" in n for n in plan.base.notes)


def test_two_flash_servers_fit_an_h100_at_0_9_as_measured() -> None:
    shared = sleep_model.room(81559 / 1024, 2, 0.9, constant("cuda_reserved_gib"))
    assert shared.utilization == 0.9 and shared.spare_gib > 0
    # The measured figures: 74.8 GiB awake + 4.1 asleep on the 79.6 GiB card.
    assert shared.awake_gib == pytest.approx(74.8, abs=0.01)


def test_the_plan_says_the_switch_time_from_the_measured_figures() -> None:
    same = sleep_model.switch_estimate(1, 56.0, 56.0, 2.0)
    assert same.total_s == pytest.approx(38.7 + 1.31 + 0.11)  # the median sleep of three
    level2 = sleep_model.switch_estimate(2, 56.0, 56.0, 2.0)
    assert level2.reload_s == 28.0 and level2.sleep_s == 0.06 and level2.wake_s == 0.29
    plan = group(FLASH, AIR, hw=H200, vendor="cuda")
    (a, b, ab), (_, _, ba) = plan.switches
    assert (a, b) == (FLASH, AIR)
    assert ba.sleep_s > ab.sleep_s  # the larger Air takes longer to put to sleep
    assert any("switch zai-org/GLM-4.7-Flash -> zai-org/GLM-4.5-Air-FP8" in n
               for n in plan.base.notes)


@pytest.mark.parametrize("point", sleep_model.calibration()["held_out"])
def test_a_measured_switch_is_within_half_of_the_plan(point: dict[str, Any]) -> None:
    """Each switch scripts/sleep_truth.py measured, kept in sleep_calibration.json's
    `held_out` (from_weights_gib, to_weights_gib, switch_s), is within 50 % of the plan's."""
    estimate = sleep_model.switch_estimate(1, point["from_weights_gib"],
                                           point["to_weights_gib"], 2.0)
    assert 0.5 <= point["switch_s"] / estimate.total_s <= 1.5, point


@pytest.mark.parametrize("run", sleep_model.calibration()["switch_runs"])
def test_the_plan_does_not_choose_level_1_where_a_switch_ran_out_of_host_memory(
        run: dict[str, Any]) -> None:
    """Two GLM-4.7-Flash servers at level 1 on an H100 host of 125 GiB: the first switch
    put the awake one to sleep while the other's weights were still in host memory, and
    the kernel ended both. The plan's host memory for a switch (every member's weights,
    at the measured GiB of host memory per GiB of weights) is past what that host had, so
    it would have chosen level 2; one sleeping member's share is what the host showed.
    (It counted all members but one, at their weights alone: 56 GiB, and chose level 1.)"""
    assert run["outcome"].startswith("failed")
    need = sleep_model.host_memory_gib(run["weights_gib"], run["members"])
    assert need > run["host_memory_available_gib"]
    # The ratio was derived from this very difference: this holds the file's figures
    # to each other (an edit of one without the other), not the plan to a new point.
    one = sleep_model.host_memory_gib(run["weights_gib"][:1], run["members"][:1])
    used = run["host_used_gib"]
    assert one == pytest.approx(used["one_asleep"] - used["before"], rel=0.05)


def test_a_model_whose_sleep_was_not_measured_is_counted_at_the_bound() -> None:
    """Only GLM-4.7-Flash's level-1 host memory was measured (1.38 GiB per GiB of
    weights); PyTorch's pinned allocator rounds each block up to a power of two, so
    another model may take up to 2x. Flash and Air-FP8 on a host of 256 GiB: at 1.38 for
    both they would seem to fit (215 GiB) and could run the host out of memory."""
    assert sleep_model.host_ratio(FLASH) == 1.38
    assert sleep_model.host_ratio(AIR) == sleep_model.host_ratio(None) == 2.0
    assert group(FLASH, AIR, hw=H200, vendor="cuda", memory=256.0).sleep_level == 2
    assert group(FLASH, AIR, hw=H200, vendor="cuda", memory=400.0).sleep_level == 1


def test_a_group_on_the_measured_host_sleeps_at_level_2() -> None:
    """On a host with the 124.2 GiB the failed switch had available, Flash and Air-FP8
    (56 and 100 GiB of weights) on one H200 cannot switch at level 1."""
    available = sleep_model.calibration()["switch_runs"][0]["host_memory_available_gib"]
    plan = group(FLASH, AIR, hw=H200, vendor="cuda", memory=available)
    assert plan.sleep_level == 2
    assert any("host memory during a switch" in n for n in plan.base.notes)


def test_level_1_falls_back_to_level_2_when_the_host_lacks_memory() -> None:
    plan = group(FLASH, AIR, hw=H200, vendor="cuda", memory=40.0)
    assert plan.sleep_level == 2
    assert any("sleep level 2" in n for n in plan.base.notes)
    assert "--sleep-level" in plan.door_args and \
        plan.door_args[list(plan.door_args).index("--sleep-level") + 1] == "2"
    with pytest.raises(UsageError, match="--sleep-level 1 keeps the sleeping models' weights"):
        group(FLASH, AIR, hw=H200, vendor="cuda", memory=40.0, sleep_level="1")
    assert group(FLASH, AIR, hw=H200, vendor="cuda", memory=400.0).sleep_level == 1


@pytest.mark.parametrize("models,kwargs,hw,message", [
    ((FLASH, FLASH), {"vendor": "cuda"}, H100, "names 'zai-org/GLM-4.7-Flash' twice"),
    ((TINY, "glmkit/glm-tiny"), {"vendor": "cpu"}, NO_GPU, "twice"),
    ((FLASH, AIR), {"vendor": "cuda"}, H100, r"member 2 \(.*-Air-FP8'\): .* needs about"),
    ((TINY, TINY + "/"), {"vendor": "cpu"}, NO_GPU, r"member 2 \('glmkit/glm-tiny/'\): "
     "Unknown model"),
    ((TINY, ""), {"vendor": "cpu"}, NO_GPU, r"member 2 \(''\): No model given"),
    ((TINY, VISION), {"vendor": "cpu", "sleep_level": "2"}, NO_GPU,
     "--sleep-level 2: vLLM's CPU backend has no sleep mode"),
    ((FLASH, AIR), {"vendor": "rocm", "gpu": "GPU", "gpu_mem": "300", "gpu_count": "1"},
     NO_GPU, "works on MI3xx only"),
    ((TINY, VISION), {"vendor": "cpu", "nodes": "2"}, NO_GPU, "one machine"),
])
def test_bad_groups_are_refused_in_one_line(models: tuple[str, ...], kwargs: dict[str, Any],
                                            hw: Hardware, message: str) -> None:
    with pytest.raises(UsageError, match=message) as err:
        group(*models, hw=hw, **kwargs)
    assert "\n" not in str(err.value)


def test_a_model_folder_named_like_an_option_is_refused(tmp_path: Path) -> None:
    """Its name is the served name: a word after --served-model-name for vLLM and after
    --member for the door, which would both read it as an option and not start."""
    folder = tmp_path / "-tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["Glm4ForCausalLM"],
                                                    "model_type": "glm4"}))
    for models in ((TINY, str(folder)), (str(folder),)):
        with pytest.raises(UsageError, match="'-tiny' starts with '-'") as err:
            group(*models, vendor="cpu")
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("extra", [("--enable-lora", "--lora-modules", "x=/adapters/x"),
                                   ("--lora-modules=x=/adapters/x",), ("--enable-lora",)])
def test_lora_adapters_in_a_group_are_refused(extra: tuple[str, ...]) -> None:
    """The door routes by each member's own names: `--lora-modules x=...` would list `x`
    in a member's /v1/models while the door answered 404 for it."""
    s = dataclasses.replace(settings(TINY, VISION, vendor="cpu"), extra_args=extra)
    with pytest.raises(UsageError, match="LoRA adapter's name would answer 404") as err:
        plan_group(s, read_host_facts(s, ENV, NO_GPU), load_book(ENV))
    assert "\n" not in str(err.value)


def test_enable_sleep_mode_on_cpu_is_refused_with_the_reason() -> None:
    s = dataclasses.replace(settings(TINY, VISION, vendor="cpu"),
                            extra_args=("--enable-sleep-mode",))
    with pytest.raises(UsageError, match="--enable-sleep-mode: vLLM's CPU backend"):
        plan_group(s, read_host_facts(s, ENV, NO_GPU), load_book(ENV))


def test_too_many_sleepers_leave_no_room() -> None:
    s = settings(*(f"org/m{i}" for i in range(8)), vendor="cuda", gpu="GPU", gpu_mem="20",
                 gpu_count="1")
    with pytest.raises(UsageError, match="leaves no room for the awake one"):
        plan_deployment(s, read_host_facts(s, ENV, NO_GPU), load_book(ENV))


def test_export_and_tune_refuse_a_group() -> None:
    with pytest.raises(UsageError, match="no model groups"):
        manifests(group(TINY, VISION, vendor="cpu"))
    from glmkit.measure.tune import parse_request

    with pytest.raises(UsageError, match="one model's knobs"):
        parse_request(settings(TINY, VISION), workload=None, batch=None, slo=None,
                      budget=None, candidates=None, resume=None)


def test_host_memory_is_read_from_meminfo() -> None:
    text = "MemTotal:       24000000 kB\nMemAvailable:   20971520 kB\n"
    from glmkit.host.facts import memory_available_gib as parse

    assert parse(text) == 20.0
    assert parse("MemTotal: 1 kB\n") is None and parse("MemAvailable: x kB") is None
    assert memory_available_gib("") is None


# --- the compose file -----------------------------------------------------------------------

def test_only_the_door_publishes_and_members_share_its_loopback() -> None:
    plan = group(TINY, VISION, vendor="cpu", port=8312)
    (_, data), = compose_files(plan).items()
    check_compose(yaml.safe_load(dump(data)))
    services = data["services"]
    assert list(services) == [DOOR, "member1", "member2"]
    door = services[DOOR]
    assert door["ports"][0]["published"] == "8312" and door["read_only"] is True
    assert door["cap_drop"] == ["ALL"] and door["user"] == "65534:65534"
    assert door["environment"] == ["VLLM_API_KEY"]  # by name: no value in the file
    assert door["volumes"][0]["source"].endswith("glmkit/run/group_door.py")
    assert door["volumes"][0]["read_only"] is True
    for service in ("member1", "member2"):
        member = services[service]
        assert "ports" not in member and member["network_mode"] == "service:door"
        assert member["restart"] == "no" and member["labels"]["io.glmkit.role"] == "member"
    assert services["member2"]["labels"]["io.glmkit.member"] == "2"


# --- the staged start -------------------------------------------------------------------------

def test_a_group_starts_stage_by_stage_each_waited_for(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    from glmkit.run import lifecycle

    plan = group(FLASH, AIR, hw=H200, vendor="cuda")
    calls: list[Any] = []
    monkeypatch.setattr(lifecycle, "part_states", lambda d: [])  # nothing runs yet
    monkeypatch.setattr(lifecycle, "run", lambda argv, **_: calls.append(("run", argv[-1])))
    monkeypatch.setattr(lifecycle, "wait", lambda d, c, timeout=None, only=None:
                        calls.append(("wait", tuple(sorted(only or ())), timeout)) or 1.0)
    monkeypatch.setattr(lifecycle, "refuse_broken", lambda d: None)
    lifecycle.start(plan, [Path("/tmp/x.yaml")], {}, None, {})  # type: ignore[arg-type]
    timeouts = {m.service: m.plan.health_timeout_s for m in plan.members}
    assert calls == [("run", "door"), ("wait", ("door",), None),
                     ("run", "member2"), ("wait", ("member2",), timeouts["member2"]),
                     ("run", "member1"), ("wait", ("member1",), timeouts["member1"]),
                     ("wait", (), None)]


def test_a_second_up_waits_for_no_stage_already_running(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """A member the door has woken since is awake, not asleep: a stage that was running
    before `up` is not waited for, and the final wait asks no member to be asleep."""
    from glmkit.run import lifecycle

    plan = group(FLASH, AIR, hw=H200, vendor="cuda")
    running = [lifecycle.PartState(p, object(), "running", 0, 0) for p in plan.parts()]
    calls: list[Any] = []
    monkeypatch.setattr(lifecycle, "part_states", lambda d: running)
    monkeypatch.setattr(lifecycle, "run", lambda argv, **_: calls.append(("run", argv[-1])))
    monkeypatch.setattr(lifecycle, "wait", lambda d, c, timeout=None, only=None:
                        calls.append(("wait", only)) or 1.0)
    lifecycle.start(plan, [Path("/tmp/x.yaml")], {}, None, {})  # type: ignore[arg-type]
    assert calls == [("run", "door"), ("run", "member2"), ("run", "member1"),
                     ("wait", None)]


def test_the_asleep_probe_is_asked_only_in_a_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.run import lifecycle

    plan = group(FLASH, AIR, hw=H200, vendor="cuda")
    member2 = next(p for p in plan.parts() if p.service == "member2")

    class Ct:
        name = "g-member2-1"

    seen: list[list[str]] = []

    class Done:
        returncode = 0

    monkeypatch.setattr(lifecycle, "run", lambda argv, **_: seen.append(argv) or Done())
    state = lifecycle.PartState(member2, Ct(), "running", 0, 0)
    assert lifecycle.probe(plan, state, staged=True) and lifecycle.probe(plan, state)
    assert "GLMKIT_ASLEEP=1" in seen[0] and "GLMKIT_ASLEEP=0" in seen[1]
    assert "GLMKIT_REQUEST=0" in seen[0]  # a sleeping server answers no chat


def test_a_group_with_a_stopped_member_restarts_whole_on_gpus_not_on_cpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.errors import EnvironmentProblem
    from glmkit.run import lifecycle

    gpu = group(FLASH, AIR, hw=H200, vendor="cuda")
    states = [lifecycle.PartState(p, object(), "exited" if p.service == "member2" else
                                  "running", 137, 0) for p in gpu.parts()]
    monkeypatch.setattr(lifecycle, "part_states", lambda d: states)
    assert not gpu.rejoins
    with pytest.raises(EnvironmentProblem, match="member2 .exit 137. stopped while door, "
                       "member1 still run"):
        lifecycle.refuse_broken(gpu)
    assert group(TINY, VISION, vendor="cpu").rejoins


def test_the_in_container_probe_asks_is_sleeping_for_a_member_put_to_sleep(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import urllib.request

    from glmkit.endpoints import IN_CONTAINER_PROBE

    for sleeping, code in ((True, None), (False, 1)):
        def urlopen(url: Any, timeout: float = 0, sleeping: bool = sleeping) -> Any:
            body = json.dumps({"is_sleeping": sleeping}).encode() \
                if str(url).endswith("/is_sleeping") else b"ok"
            return io.BytesIO(body)

        monkeypatch.setattr(urllib.request, "urlopen", urlopen)
        monkeypatch.setenv("GLMKIT_ASLEEP", "1")
        monkeypatch.setenv("GLMKIT_REQUEST", "0")
        try:
            exec(IN_CONTAINER_PROBE, {})
            exited = None
        except SystemExit as done:
            exited = done.code
        assert exited == code


# --- status and the member a task aims at ---------------------------------------------------

METRICS = """# HELP glmkit_group_member_state 1 for the member's state
# TYPE glmkit_group_member_state gauge
glmkit_group_member_state{model="a",state="awake"} 1.0
glmkit_group_member_state{model="a",state="asleep"} 0.0
glmkit_group_member_state{model="b",state="crashed"} 1.0
glmkit_group_member_state{model="b",state="awake"} 0.0
# TYPE glmkit_group_member_last_switch_timestamp_seconds gauge
glmkit_group_member_last_switch_timestamp_seconds{model="a"} 1000.0
# TYPE glmkit_group_member_queued gauge
glmkit_group_member_queued{model="a"} 2.0
glmkit_group_member_queued{model="b"} 0.0
"""


def test_status_reads_each_members_state_from_the_doors_metrics() -> None:
    from glmkit.run.group_state import parse_member_states

    states = parse_member_states(METRICS, now=2000.0)
    assert states["a"].startswith("awake since ") and states["a"].endswith(", 2 queued")
    assert states["b"].startswith("CRASHED: the door answers 503")
    assert parse_member_states("not metrics {", now=0) == {}
    assert parse_member_states("", now=0) == {}


class Container:
    def __init__(self, name: str, labels: dict[str, str], cmd: list[str],
                 status: str = "running", port: int | None = None) -> None:
        self.name, self.labels, self.status = name, labels, status
        bindings = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]} \
            if port else {}
        self.attrs = {"Config": {"Cmd": cmd, "Env": ["VLLM_API_KEY=k"]},
                      "HostConfig": {"PortBindings": bindings}}


def _group_containers() -> list[Container]:
    base = {"io.glmkit.managed": "true", "io.glmkit.vendor": "cpu",
            "io.glmkit.image": "i", "io.glmkit.max-model-len": "2048", "io.glmkit.port": "9000"}

    def member(n: int, model: str, status: str = "running") -> Container:
        return Container(f"g-member{n}-1", {**base, "io.glmkit.role": "member",
                                            "io.glmkit.member": str(n), "io.glmkit.model": model,
                                            "io.glmkit.served-model": model,
                                            "io.glmkit.model-ref": f"/models/{n}"},
                         ["/models/x", "--served-model-name", model, f"alias{n}", "--host",
                          "127.0.0.1"], status)

    door = Container("g-door-1", {**base, "io.glmkit.role": "door", "io.glmkit.model": TINY,
                                  "io.glmkit.served-model": TINY,
                                  "io.glmkit.model-ref": "/models/1"}, ["--port", "8000"],
                     port=9000)
    return [door, member(1, TINY), member(2, VISION)]


def test_check_and_bench_aim_at_a_member_by_id_served_name_or_alias(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.run import engine, server

    containers = _group_containers()
    monkeypatch.setattr(engine, "client", lambda *_: None)
    monkeypatch.setattr(engine, "find_container", lambda c, p: containers[0])
    monkeypatch.setattr(engine, "project_containers", lambda c, p: containers)
    for model, name in ((None, "g-member1-1"), (VISION, "g-member2-1"),
                        ("alias2", "g-member2-1"), (TINY, "g-member1-1")):
        container, target = server.running_server("g", model)
        assert container.name == name
        # Through the door: its published URL from here, its port from inside the member.
        assert target.base_url == "http://127.0.0.1:9000"
        assert target.bench_url == "http://127.0.0.1:8000" and target.api_key == "k"
    with pytest.raises(UsageError, match="has no member 'nope'"):
        server.running_server("g", "nope")
    containers[2].status = "exited"
    with pytest.raises(UsageError, match="not running"):
        server.running_server("g", VISION)


def test_model_on_a_single_server_must_be_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from glmkit.run import engine, server

    one = Container("s-vllm-1", {"io.glmkit.managed": "true", "io.glmkit.vendor": "cpu",
                                 "io.glmkit.image": "i", "io.glmkit.max-model-len": "2048",
                                 "io.glmkit.model": TINY, "io.glmkit.served-model": TINY,
                                 "io.glmkit.model-ref": "/m"},
                    ["/m", "--served-model-name", TINY], port=9001)
    monkeypatch.setattr(engine, "client", lambda *_: None)
    monkeypatch.setattr(engine, "find_container", lambda c, p: one)
    assert server.running_server("s", TINY)[0] is one
    with pytest.raises(UsageError, match="names a member of a model group"):
        server.running_server("s", VISION)
