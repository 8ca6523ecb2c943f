"""Model groups: several models in one deployment behind one published port, one awake at a
time (vLLM's sleep mode), switched by the `model` of each request.

    settings.models ─▶ one ServePlan per member (each sized for the GPUs on its own, at the
        utilization that leaves room for the sleeping members) ─▶ each `vllm serve` with
        --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1 on the door's loopback ─▶ the door
        (run/group_door.py), the only published port

What a switch costs and what the host must hold come from knowledge/sleep_model (measured
on an H100). vLLM's CPU backend has no sleep mode: there the members stay in memory side by
side and the door's sleep and wake calls reach vLLM's endpoints, which answer without
freeing anything (how the kit's tests check the door against real servers). This module is
the plan alone; `render.group_compose` renders it and `run.lifecycle` starts it, member by
member.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from glmkit.endpoints import CONTAINER_PORT
from glmkit.errors import UsageError
from glmkit.host.facts import HostFacts
from glmkit.host.settings import Settings, shown_value
from glmkit.host.vendors import VendorProfile
from glmkit.knowledge.gpu_model import GIB, constant
from glmkit.knowledge.recipes import RecipeBook
from glmkit.knowledge.sizing import BYTES, target_card, weights_per_gpu_gib
from glmkit.knowledge.sleep_model import (
    Room,
    SwitchEstimate,
    asleep_gib,
    host_memory_gib,
    provenance,
    room,
    switch_estimate,
)
from glmkit.labels import LABEL
from glmkit.plan.parts import Defaults, Part, Probe
from glmkit.plan.serve import ServePlan, build_plan
from glmkit.policy import flag_names

DOOR = "door"  # the compose service of the group's front door
FIRST_MEMBER_PORT = CONTAINER_PORT + 1  # member i listens on 127.0.0.1:8001 + i
# The door's program: glmkit's own file, mounted read-only into the serving image (which
# has what it imports: aiohttp and prometheus_client, both vLLM's).
DOOR_SOURCE = Path(__file__).resolve().parents[1] / "run" / "group_door.py"
DOOR_SCRIPT = "/opt/glmkit/group_door.py"
SLEEP_FLAG = "--enable-sleep-mode"
DEV_MODE_ENV = "VLLM_SERVER_DEV_MODE"  # vLLM's /sleep, /wake_up, /is_sleeping (and more)


@dataclass(frozen=True, kw_only=True)
class Member:
    """One model of the group: its own plan, and where it listens behind the door."""

    plan: ServePlan
    index: int  # 0: the first, awake after start-up
    service: str
    port: int  # on the loopback of the door's network namespace
    args: tuple[str, ...]  # everything after `vllm serve`
    env: dict[str, str]
    weights_gib: float | None  # counted; None without a count (a model folder)

    @property
    def names(self) -> tuple[str, ...]:
        """What the door routes to it: its served name, then its aliases."""
        return (self.plan.served_model_name, *self.plan.aliases)


@dataclass(frozen=True, kw_only=True)
class GroupPlan(Defaults):
    base: ServePlan  # the first member's plan; its host and port are the door's
    members: tuple[Member, ...]
    sleep_level: int
    sleeps: bool  # vLLM frees the GPU (False on CPU, where sleep is a no-op)
    room: Room | None  # the GPU shared by the members (None on CPU)
    host_memory_gib: float | None  # level 1: the sleeping members' weights at worst
    switches: tuple[tuple[str, str, SwitchEstimate], ...]  # (from, to, estimate)
    door_args: tuple[str, ...]

    # --- the Deployment protocol (plan.deployment) ---------------------------------------
    @property
    def serving(self) -> ServePlan:
        return self.base

    @property
    def local(self) -> bool:
        return True

    @property
    def node_count(self) -> int:
        return 1

    @property
    def rejoins(self) -> bool:
        """A stopped member starts again beside the others where nothing sleeps (CPU); on
        GPUs the awake member holds the memory it would need: the group restarts whole."""
        return not self.sleeps

    @property
    def keep_on_failure(self) -> bool:
        return True  # stopped, not removed: `invoke logs` shows why

    @property
    def head_command(self) -> tuple[str, ...] | None:
        return None

    def served(self) -> tuple[ServePlan, ...]:
        return tuple(m.plan for m in self.members)

    @property
    def start_order(self) -> tuple[Member, ...]:
        """The last member first: each is put to sleep once healthy, so the next has the
        GPU; the first comes up last and stays awake."""
        return tuple(reversed(self.members))

    def parts(self) -> tuple[Part, ...]:
        """The door, then the members in start order, each probed inside its container:
        healthy and, but for the first, asleep (the door puts it to sleep)."""
        project = self.base.project
        return (Part(DOOR, "The model group's door", project, None),
                *(Part(m.service, f"{m.plan.model.id} (group member {m.index + 1})", project,
                       None, Probe("127.0.0.1", m.port, request=False, asleep=m.index > 0),
                       m.plan.health_timeout_s)
                  for m in self.start_order))

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """The door, then the members one by one; where nothing sleeps (CPU) and so no
        member waits for another's GPU memory, all of them together."""
        if not self.sleeps:
            return ((DOOR,), tuple(m.service for m in self.start_order))
        return ((DOOR,), *((m.service,) for m in self.start_order))

    @property
    def api_probe_url(self) -> str | None:
        return self.base.base_url  # the door's /health: ready once every member came up

    def describe(self) -> list[str]:
        how = f"vLLM sleep level {self.sleep_level}" if self.sleeps else \
            "no sleep mode here: all stay in memory"
        lines = [f"model group: {len(self.members)} models behind one port "
                 f"({self.base.base_url}), one awake at a time ({how})"]
        for m in self.members:
            names = ", ".join(m.names)
            weights = f", {m.weights_gib:.3g} GiB of weights" if m.weights_gib else ""
            lines.append(f"  {m.service}: {names}{weights}"
                         + (" (awake after start-up)" if m.index == 0 else ""))
        lines += [f"  switch {a} -> {b}: about {e.total_s:.1f} s" for a, b, e in self.switches]
        lines.append(f"  open: {self.base.port}/tcp on {self.base.host}, the door (the only "
                     "published port); the members' APIs and vLLM's dev routes on the door's "
                     "loopback only")
        return lines


def bytes_per_param(precision: str) -> float:
    """A checkpoint's bytes per parameter (sizing.BYTES; BF16's 2 for one it lacks)."""
    return BYTES.get(precision, 2.0)


def sleep_refusal(vendor: VendorProfile, gpu_id: str | None) -> str | None:
    """Why vLLM has no sleep mode on this vendor or GPU; None where it has."""
    if vendor.no_sleep_mode:
        return vendor.no_sleep_mode
    if vendor.sleep_gpus and not (gpu_id or "").lower().startswith(vendor.sleep_gpus):
        names = ", ".join(f"{p.upper()}xx" for p in vendor.sleep_gpus)
        return (f"vLLM's sleep mode on {vendor.brand} GPUs works on {names} only "
                f"(vllm/platforms/interface.py), not on {gpu_id or 'an unnamed GPU'!r}")
    return None


def _weights_gib(plan: ServePlan, facts: HostFacts) -> float | None:
    """The member's weights in GiB: counted from its config.json, else its catalog size."""
    if facts.arch is not None and (counted := weights_per_gpu_gib(
            facts.arch, plan.model.precision, 1)) is not None:
        return counted
    size = plan.model.total_params_b * bytes_per_param(plan.model.precision) * 1e9 / GIB
    return size or None


def _member_settings(s: Settings, model: str, index: int, utilization: float) -> Settings:
    return dataclasses.replace(s, model=model, models=(), group=None,
                               model_source=s.models_source,
                               aliases=s.aliases if index == 0 else None,
                               gpu_memory_utilization=utilization)


def _plans(s: Settings, facts: HostFacts, book: RecipeBook, utilization: float,
           why: str) -> list[ServePlan]:
    plans = []
    for i, (model, member_facts) in enumerate(zip(s.models, facts.members, strict=True)):
        try:
            plans.append(build_plan(_member_settings(s, model, i, utilization), member_facts,
                                    book))
        except UsageError as err:
            raise UsageError(f"Model group member {i + 1} ({shown_value(model, 60)}){why}: "
                             f"{err}") from None
    return plans


def _refuse_twice(plans: list[ServePlan]) -> None:
    """One model twice, or two members answering to one name: the door could not tell
    which a request means."""
    seen: dict[str, int] = {}
    for i, plan in enumerate(plans):
        for name in {plan.model.id, plan.served_model_name, *plan.aliases}:
            if name in seen and seen[name] != i:
                raise UsageError(f"The model group names {name!r} twice (members "
                                 f"{seen[name] + 1} and {i + 1}): a group serves each model "
                                 "once, under names of its own.")
            seen[name] = i


def plan_group(s: Settings, facts: HostFacts, book: RecipeBook) -> GroupPlan:
    """Each member planned as `up --model M` would, at the utilization one awake and the
    rest asleep fit; the sleep level the host's memory allows; the door over them. Pure,
    as `build_plan`: what it needs of the host comes in `facts` (one per member)."""
    if s.nodes:
        raise UsageError("A model group runs on one machine: leave out --nodes.")
    if s.strategy == "pd_cluster":
        raise UsageError("A model group serves each model as one server: leave out "
                         "--strategy pd_cluster.")
    lora = sorted({"--enable-lora", "--lora-modules"} & set(flag_names(s.extra_args)))
    if lora:  # the door routes by member names only: an adapter's name would answer 404
        raise UsageError(f"{lora[0]}: a model group's door routes each request to a member "
                         "by the model's own name, so a LoRA adapter's name would answer "
                         "404. Serve a model with adapters on its own (one --model).")
    if len(facts.members) != len(s.models):
        raise UsageError("The model group's members were not read from this host.")
    # Planned alone first: the member's own refusal says why (unknown, too big, ...).
    plans = _plans(s, facts, book, s.gpu_memory_utilization, "")
    _refuse_twice(plans)
    first = plans[0]
    vendor, target = first.vendor, first.target
    notes: list[str] = []
    refusal = sleep_refusal(vendor, target.id)
    asked_flag = SLEEP_FLAG in flag_names(s.extra_args)
    if refusal and vendor.has_gpus:
        raise UsageError(f"A model group needs vLLM's sleep mode: {refusal}.")
    if refusal and s.sleep_level is not None:
        raise UsageError(f"--sleep-level {s.sleep_level}: {refusal}.")
    if refusal and asked_flag:
        raise UsageError(f"{SLEEP_FLAG}: {refusal}.")
    sleeps = refusal is None
    weights = [_weights_gib(p, f) for p, f in zip(plans, facts.members, strict=True)]
    shared: Room | None = None
    if sleeps:
        card = target_card(target.id or "H100", target.gpu_memory_gb,
                           given=target.memory_given)
        shared = room(card.memory_gib, len(plans), s.gpu_memory_utilization,
                      constant("cuda_reserved_gib"))
        keep = f"{len(plans) - 1} sleeping member(s) keep {shared.asleep_gib:.1f} GiB per GPU"
        if shared.utilization < 0.05:
            raise UsageError(f"A model group of {len(plans)} on {card.memory_gib:g} GiB GPUs: "
                             f"{keep} ({asleep_gib():g} GiB each, {provenance()}), which "
                             "leaves no room for the awake one. Name fewer models.")
        if shared.lowered_from is not None:
            notes.append(f"model group: --gpu-memory-utilization {shared.utilization:.2f} for "
                         f"every member (from {shared.lowered_from:g}): the awake one takes "
                         f"{shared.awake_gib:.1f} GiB and {keep}, of {card.memory_gib:g} GiB "
                         f"({provenance()})")
            plans = _plans(s, facts, book, shared.utilization,
                           f" does not fit beside the sleeping members ({keep})")
    level = s.sleep_level or 1
    need = host_memory_gib([w for w in weights if w is not None],
                           [p.model.id for p in plans]) \
        if sleeps and None not in weights else None
    have = facts.memory_available_gib
    here = facts.here and facts.hardware.vendor == vendor.name and \
        facts.hardware.gpu_count > 0 and s.gpu is None
    if sleeps and level == 1 and need and here and have is not None and need > have:
        if s.sleep_level == 1:
            raise UsageError(f"--sleep-level 1 keeps the sleeping models' weights in host "
                             f"memory: {need:.0f} GiB during a switch ({provenance()}), and "
                             f"this host has {have:.0f} "
                             "GiB available. Free memory, or pass --sleep-level 2 (the "
                             "weights are read from disk again on each wake).")
        level = 2
        notes.append(f"model group: sleep level 2, as level 1 would take {need:.0f} GiB of "
                     f"host memory during a switch and this host has {have:.0f} GiB available: "
                     "each wake reads the model from disk again")
    elif sleeps and level == 1 and need and not (here and have is not None):
        notes.append(f"model group: sleep level 1 takes up to {need:.0f} GiB of host memory "
                     "during a switch (not checked: planned for other hardware)")
    if not sleeps:
        notes.append(f"model group on {vendor.name}: {refusal}; the models stay in memory "
                     "side by side and the door switches them by name (its sleep and wake "
                     "calls reach vLLM, which frees nothing)")
    members: list[Member] = []
    for i, plan in enumerate(plans):
        port = FIRST_MEMBER_PORT + i
        command = plan.command
        if sleeps and not asked_flag:
            command = dataclasses.replace(command, kit=(*command.kit, SLEEP_FLAG))
        members.append(Member(
            plan=plan, index=i, service=f"member{i + 1}", port=port,
            args=command.argv(host="127.0.0.1", port=port),
            # The compose health check's probe reads GLMKIT_PORT (endpoints.IN_CONTAINER_PROBE).
            env={**plan.environment, DEV_MODE_ENV: "1", "GLMKIT_PORT": str(port)},
            weights_gib=weights[i]))
    # From each member to the next (A -> B and B -> A for two).
    switches: list[tuple[str, str, SwitchEstimate]] = []
    for a, b in zip(members, [*members[1:], members[0]], strict=True):
        if sleeps and a.weights_gib and b.weights_gib:
            switches.append((a.plan.served_model_name, b.plan.served_model_name,
                             switch_estimate(level, a.weights_gib, b.weights_gib,
                                             constant("load_gib_per_s"))))
    for a_name, b_name, e in switches:
        notes.append(f"model group: a switch {a_name} -> {b_name} takes about {e.total_s:.1f} s "
                     f"(sleep {e.sleep_s:.1f} + wake {e.wake_s:.1f}"
                     + (f" + reload {e.reload_s:.0f} at an assumed "
                        f"{constant('load_gib_per_s'):g} GiB/s" if e.reload_s else "")
                     + f" + first answer {e.first_s:.2f}; {provenance()}), after the awake "
                     "model's running requests finish")
    door_args = ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT), "--sleep-level",
                 str(level)]
    for m in members:
        door_args += ["--member", f"http://127.0.0.1:{m.port}", *m.names]
    base = dataclasses.replace(
        first, strategy="model_group", notes=(*_merged_notes(plans), *notes),
        labels={**first.labels, f"{LABEL}.strategy": "model_group"},
        # Each member starts in turn within its own time.
        health_timeout_s=sum(p.health_timeout_s for p in plans))
    return GroupPlan(base=base, members=tuple(members), sleep_level=level, sleeps=sleeps,
                     room=shared, host_memory_gib=need, switches=tuple(switches),
                     door_args=tuple(door_args))


def _merged_notes(plans: list[ServePlan]) -> list[str]:
    """Every member's notes once: those all members share as they are, the others named
    by their member."""
    out: list[str] = []
    for plan in plans:
        for note in plan.notes:
            shared = all(note in other.notes for other in plans)
            line = note if shared else f"{plan.served_model_name}: {note}"
            if line not in out:
                out.append(line)
    return out
