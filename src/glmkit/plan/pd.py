"""Prefill/decode disaggregation: the recipes' `pd_cluster` as a prefill pool, a decode
pool and vLLM's router in one deployment.

    ServePlan of one pool (recipe command, image, mounts) ─▶ prefill and decode commands
        (the strategy's own flags and env, `kv_transfer_config` checked here) ─▶ router

The router (PyPI `vllm-router`, `--vllm-pd-disaggregation`) sends a chat or completion
request to a prefill server with `max_tokens: 1` and `kv_transfer_params:
{do_remote_decode: true}`, then the original request to a decode server with the
`kv_transfer_params` prefill returned; the decode server pulls the KV blocks over NIXL
(the NIXL side channel tells it where they are) and computes only what is left. Only the
router publishes a port; it forwards with the key of its own environment (OPENAI_API_KEY,
which its compose file takes from glmkit's VLLM_API_KEY), never with the client's.

On one node the GPUs split into the two pools (half each, or --prefill-gpus/--decode-gpus);
with --nodes every node serves one instance of one pool (TP over its GPUs). On CPU the
pools split the cores with vLLM's OMP binding, NIXL's KV buffer is host memory
(`kv_buffer_device: cpu`) and UCX moves it over TCP.
This module is the plan alone; `render.pd_compose` renders it and `run.lifecycle` runs it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from glmkit.endpoints import CONTAINER_PORT, connect_host, is_ip, is_loopback
from glmkit.errors import UsageError
from glmkit.host.facts import HostFacts
from glmkit.host.settings import Settings, Strategy
from glmkit.knowledge.images import CPU_NIXL_IMAGE, ROUTER_IMAGE, ImageProfile
from glmkit.knowledge.recipe_schema import PdRole, StrategyDoc, StrategyOverride, lookup
from glmkit.knowledge.recipes import RecipeBook
from glmkit.knowledge.resolver import strategy_refusal
from glmkit.plan.cluster import Node
from glmkit.plan.parts import Defaults, Part, Probe, refuse_owned
from glmkit.plan.serve import ServePlan, build_plan, recipe_source
from glmkit.policy import (
    Source,
    admit_args,
    admit_env,
    check_code_loading,
    env_dict,
    merge_args,
    parse_flags,
)
from glmkit.vllm_args import drop_flags

PD_STRATEGY = "pd_cluster"
Role = Literal["prefill", "decode"]
ROLES: tuple[Role, ...] = ("prefill", "decode")
ROUTER = "router"
# The router's environment by name: the key it sends to the pools (the pools' own).
ROUTER_KEY_ENV = "OPENAI_API_KEY"
# The recipe's ports: HTTP of each pool on a node's own network, NIXL's side channel.
POOL_PORTS = {"prefill": 8001, "decode": 8002}
SIDE_CHANNEL_PORTS = {"prefill": 5557, "decode": 5558}
# vllm-router 0.1.17's --policy choices that need no extra inputs.
ROUTER_POLICIES = ("round_robin", "random", "power_of_two", "cache_aware", "consistent_hash")
# Routes the router splits into prefill + decode; every other one goes to a decode server
# whole (glmkit does not count those as disaggregated).
PD_ROUTES = ("/v1/chat/completions", "/v1/completions")
# Flags glmkit owns in a pool's command: where it listens, how its KV moves.
_OWNED = ("--port", "--kv-transfer-config", "--tensor-parallel-size", "--data-parallel-size")
# Names the strategy writes as shell variables; glmkit sets them per pool.
_SIDE_CHANNEL_ENV = ("VLLM_NIXL_SIDE_CHANNEL_HOST", "VLLM_NIXL_SIDE_CHANNEL_PORT")


class KvTransfer(BaseModel):
    """The `--kv-transfer-config` a recipe may write for a pool: the connector glmkit runs
    (NIXL) and its plain settings; anything naming a module, a host or a port is refused."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kv_connector: Literal["NixlConnector"]
    kv_role: Literal["kv_producer", "kv_consumer", "kv_both"]
    kv_load_failure_policy: Literal["fail", "recompute"] | None = None
    kv_buffer_device: Literal["cpu", "cuda"] | None = None


def kv_transfer(text: str, role: Role, on_cpu: bool) -> str:
    """The recipe's kv_transfer_config for `role`, checked, as compact JSON; on CPU NIXL
    registers host memory (`kv_buffer_device: cpu`)."""
    try:
        data = json.loads(text)
        config = KvTransfer.model_validate(data)
    except (ValueError, ValidationError) as err:
        first = err.errors()[0] if isinstance(err, ValidationError) else None
        why = f"{'.'.join(map(str, first['loc'])) or 'it'}: {first['msg']}" if first \
            else "not JSON"
        raise UsageError(f"The pd_cluster {role} --kv-transfer-config {text[:80]!r} is not "
                         f"one glmkit runs ({why}).") from None
    if on_cpu:
        config = config.model_copy(update={"kv_buffer_device": "cpu"})
    return json.dumps(config.model_dump(exclude_none=True), separators=(",", ":"))


@dataclass(frozen=True, kw_only=True)
class Pool:
    """One vLLM server of a pool: its compose service, command, environment and share of
    the node (GPU ids, or CPU cores for vLLM's OMP binding)."""

    role: Role
    service: str
    args: tuple[str, ...]  # everything after `vllm serve`
    env: dict[str, str]
    tensor_parallel: int
    gpu_ids: tuple[str, ...] | None
    cores: str | None
    node: Node | None  # None: this machine, in the project's network
    port: int  # where the API listens in its network
    side_channel_port: int

    @property
    def address(self) -> str:
        """How the router and the other pool reach it."""
        return self.node.address if self.node is not None else self.service

    @property
    def probe_host(self) -> str:
        """Where a probe inside its container reaches its API: the address it binds (a
        real node's own IP), loopback for a wildcard bind."""
        return connect_host(self.args[list(self.args).index("--host") + 1])

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class PdPlan(Defaults):
    base: ServePlan  # the pools' shared facts; its host and port are the router's
    pools: tuple[Pool, ...]
    router_image: ImageProfile
    router_args: tuple[str, ...]
    policy: str
    connector: str
    nodes: tuple[Node, ...]  # () on one machine

    @property
    def local(self) -> bool:
        return not self.nodes or self.nodes[0].docker_host is None

    # --- the Deployment protocol (plan.deployment) ---------------------------------------
    @property
    def serving(self) -> ServePlan:
        return self.base

    def served(self) -> tuple[ServePlan, ...]:
        return (self.base,)

    @property
    def node_count(self) -> int:
        return len(self.nodes) or 1

    @property
    def rejoins(self) -> bool:
        return True

    @property
    def keep_on_failure(self) -> bool:
        return False  # no half deployment stays

    @property
    def head_command(self) -> tuple[str, ...] | None:
        return None

    def project_of(self, node: Node | None) -> str:
        return self.base.project if self.local or node is None else \
            f"{self.base.project}-{node.name}"

    def parts(self) -> tuple[Part, ...]:
        """The pools, each probed with a real request inside its container (they publish
        no port; vllm-router checks its workers only every 60 s), then the router, beside
        the first pool."""
        pools = tuple(Part(p.service, f"The {p.service} server", self.project_of(p.node),
                           p.node.docker_host if p.node else None,
                           Probe(p.probe_host, p.port)) for p in self.pools)
        head = self.pools[0].node
        return (*pools, Part(ROUTER, f"The {ROUTER}", self.project_of(head),
                             head.docker_host if head else None))

    @property
    def api_probe_url(self) -> str | None:
        return self.base.base_url  # the router's /health, from this machine

    @property
    def overlay_images(self) -> tuple[ImageProfile, ...]:
        """pd_cluster's own images are small overlays, rebuilt when their recipe changed."""
        return (self.base.image, self.router_image)

    def pool(self, role: Role) -> list[Pool]:
        return [p for p in self.pools if p.role == role]

    @property
    def services(self) -> tuple[str, ...]:
        return (*(p.service for p in self.pools), ROUTER)

    def ports(self) -> list[str]:
        """What listens and where (SECURITY.md has the same, with reasons)."""
        inside = "inside the project's network" if self.local else \
            "on the node's interfaces: firewall them to the other nodes"
        return [f"{self.base.port}/tcp: the router's API on {self.base.host} (the only "
                "published port)",
                *(f"{p.port}/tcp: {p.service}'s vLLM API, {inside}" for p in self.pools),
                *(f"{p.side_channel_port}/tcp: {p.service}'s NIXL side channel, {inside}"
                  for p in self.pools),
                f"UCX (NIXL's transport): ephemeral TCP ports between the pools, {inside}"]

    def exposed(self) -> list[tuple[str, str]]:
        """(service, address) of each pool listening beyond loopback: on a real node's
        host network (API and NIXL side channel); on one machine they stay in the
        project's network."""
        binds = [(p.service, p.args[list(p.args).index("--host") + 1]) for p in self.pools
                 if p.node is not None and p.node.docker_host is not None]
        return [(service, host) for service, host in binds if not is_loopback(host)]

    def describe(self) -> list[str]:
        lines = [f"pd_cluster: {len(self.pool('prefill'))} prefill + "
                 f"{len(self.pool('decode'))} decode server(s) behind vllm-router "
                 f"({self.router_image.ref}, policy {self.policy}), KV over {self.connector}"]
        for p in self.pools:
            share = f"GPUs {','.join(p.gpu_ids)}" if p.gpu_ids else \
                f"cores {p.cores}" if p.cores else "its node's GPUs"
            lines.append(f"  {p.service}: TP {p.tensor_parallel}, {share}"
                         + (f", on {p.node.name}" if p.node else ""))
        lines += [f"  open: {port}" for port in self.ports()]
        return lines


def _split(total: int, prefill: int | None, decode: int | None, what: str) -> tuple[int, int]:
    """Sizes of the two pools out of `total` (half each by default)."""
    p = prefill or (total - decode if decode else max(1, total // 2))
    d = decode or total - p
    if p < 1 or d < 1 or p + d > total:
        raise UsageError(f"pd_cluster needs a prefill and a decode pool within {total} {what}; "
                         f"--prefill-gpus {p} + --decode-gpus {d} do not fit. Give each pool "
                         "at least one.")
    return p, d


def _role_words(book: RecipeBook, base: ServePlan, role: Role
                ) -> tuple[list[str], dict[str, str], tuple[str, ...]]:
    """The strategy's and the model's pd_cluster flags and env for `role`, through the
    input policy, and the policy's notes; the flags glmkit owns taken out in any spelling
    vLLM accepts (the KV config checked separately)."""
    strategy = lookup(book.strategies, PD_STRATEGY) or StrategyDoc()
    recipe = base.model.recipe
    overrides = (lookup(recipe.data.strategy_overrides, PD_STRATEGY) if recipe is not None
                 else None) or StrategyOverride()
    source = recipe_source(base.model, book)
    words: list[str] = []
    env: dict[str, str] = {}
    # The strategy's pool block, the model's pd_cluster env and flags for both pools, then
    # its block for this pool (the recipe site's order).
    both = PdRole(vllm_args=[*(overrides.extra_args or ()), *(overrides.vllm_args or ())],
                  env={**(overrides.extra_env or {}), **(overrides.env or {})})
    for block in (getattr(strategy, role), both, getattr(overrides, role)):
        words += [str(w) for w in (block.vllm_args if block else None) or ()]
        env |= {str(k): str(v) for k, v in ((block.env if block else None) or {}).items()}
    for name in _SIDE_CHANNEL_ENV:
        env.pop(name, None)
    # The kv_transfer_config is glmkit's to decide (checked by KvTransfer), whatever the
    # policy would say of a synced recipe writing it.
    # vLLM's reading of each flag: `-tp 2` and `--tensor_parallel_size` are owned too.
    parsed = parse_flags(words, source)
    kv = [f.values[-1] for f in parsed
          if f.name == "--kv-transfer-config" and not f.keys and f.values]
    admitted = admit_args([w for f in parsed if f.name not in _OWNED for w in f.words()],
                          source)
    admitted_env = admit_env(env, source)
    args = list(admitted.args)
    if not base.vendor.has_gpus:
        args = drop_flags(args, "--compilation-config")  # CUDA graph modes: none on CPU
    config = kv[-1] if kv else json.dumps({
        "kv_connector": "NixlConnector",
        "kv_role": "kv_producer" if role == "prefill" else "kv_consumer"})
    args += ["--kv-transfer-config", kv_transfer(config, role, not base.vendor.has_gpus)]
    return args, env_dict(admitted_env), admitted.notes


def _cores(prefill: int, decode: int) -> tuple[str, str]:
    """vLLM's OMP core lists (VLLM_CPU_OMP_THREADS_BIND) for the two pools. Not a cpuset:
    vLLM's NIXL worker (nixl/base_worker.py, on CPU) calls `sched_setaffinity` with the
    last core of each NUMA node it reads in /sys, which a container without that core in
    its cpuset cannot do (EINVAL). That call moves the worker's own thread, the one that
    runs the model: both pools ended up computing on the host's last core, the decode
    pool's, beside NIXL's progress thread that polls without sleeping (nixl's
    `pthrDelay = 0`); render.pd_compose hides the NUMA folder from CPU pools so each pool
    stays on its own cores."""
    return (f"0-{prefill - 1}" if prefill > 1 else "0",
            f"{prefill}-{prefill + decode - 1}" if decode > 1 else str(prefill))


def _sizes(settings: Settings, probe: ServePlan, facts: HostFacts, nodes: tuple[Node, ...]
           ) -> tuple[dict[Role, int], dict[Role, int]]:
    """(servers per pool, GPUs or cores per server)."""
    if nodes:
        hw = facts.hardware
        per_node = settings.gpus_per_node or settings.gpu_count or (
            hw.gpu_count if hw.vendor == probe.vendor.name and hw.gpu_count else
            (8 if probe.vendor.has_gpus else 1))
        n_p, n_d = _split(len(nodes), _nodes_of(settings.prefill_gpus, per_node),
                          _nodes_of(settings.decode_gpus, per_node), "nodes")
        return {"prefill": n_p, "decode": n_d}, {"prefill": per_node, "decode": per_node}
    if probe.vendor.has_gpus:
        total, what = probe.target.gpu_count, "GPUs"
    else:
        total, what = facts.cpu_count, "cores"
    p, d = _split(total, settings.prefill_gpus, settings.decode_gpus, what)
    return {"prefill": 1, "decode": 1}, {"prefill": p, "decode": d}


def plan_pd(settings: Settings, facts: HostFacts, book: RecipeBook) -> PdPlan:
    """The pools and the router for these settings. Pure, as `build_plan`: what it needs
    of the host comes in `facts`."""
    refuse_owned(settings.extra_args, {
        "--tensor-parallel-size": "--prefill-gpus and --decode-gpus size each pool's servers",
        "--data-parallel-size": "each pool server is one vLLM server",
        "--data-parallel-size-local": "each pool server is one vLLM server",
        "--pipeline-parallel-size": "--prefill-gpus and --decode-gpus size each pool's "
                                    "servers, tensor parallel over their GPUs",
        "--kv-transfer-config": "the pools' NIXL connector comes from the recipe, checked"},
        "--strategy pd_cluster")
    one_node = dataclasses.replace(settings, strategy=Strategy("single_node_tp"), nodes=None,
                                   gpus=None, dp=1)
    probe = build_plan(one_node, facts, book)  # the vendor, the node and the image
    model = probe.model
    if model.recipe is not None and (
            why := strategy_refusal(book, model.recipe, PD_STRATEGY, probe.target)):
        raise UsageError(f"--strategy pd_cluster: {why}.")
    nodes = settings.nodes.cluster() if settings.nodes else ()
    counts, sizes = _sizes(settings, probe, facts, nodes)
    on_cpu = not probe.vendor.has_gpus
    pools: list[Pool] = []
    plans: dict[Role, ServePlan] = {}
    role_notes: list[str] = []
    for role in ROLES:
        # What one server of the pool runs: the recipe's single-node TP command sized to
        # its GPUs, refused when the model does not fit them.
        try:
            plan = plans[role] = probe if on_cpu else build_plan(
                dataclasses.replace(one_node, tp=sizes[role]), facts, book)
        except UsageError as err:
            raise UsageError(f"pd_cluster: every {role} server holds the whole model on its "
                             f"{sizes[role]} GPUs, and {err}") from None
        role_args, role_env, left_out = _role_words(book, plan, role)
        role_notes += [n for n in left_out if n not in role_notes]
        # The one server's layers without its sizes and KV transfer, which the pool sets;
        # last, as in a single server, glmkit's memory setting and the user's own flags
        # win over the recipe's pool blocks.
        command = plan.command
        common = ["--served-model-name", *command.names,
                  *command.flags(parallel=False, kv_transfer=False)]
        last = [command.kit_flag("--gpu-memory-utilization"), command.user]
        # A pool block of the recipe may hold --trust-remote-code the one server lacked.
        check_code_loading(command.user, Source.of_setting(settings.extra_args_source),
                           common, role_args)
        for i in range(counts[role]):
            node = nodes[i if role == "prefill" else counts["prefill"] + i] if nodes else None
            service = role if counts[role] == 1 else f"{role}{i + 1}"
            real = node is not None and node.docker_host is not None
            # A real node's host network: the pool listens on the node's own address.
            port = POOL_PORTS[role] if real else CONTAINER_PORT
            listen = node.address if real and node is not None and is_ip(node.address) \
                else "0.0.0.0"
            args = [command.model_ref, *merge_args(
                [*common, "--host", listen, "--port", str(port)],
                [] if on_cpu else ["--tensor-parallel-size", str(sizes[role])], role_args,
                *last)]
            env = {**plan.environment, **role_env,
                   "VLLM_NIXL_SIDE_CHANNEL_HOST": node.address if node else service,
                   "VLLM_NIXL_SIDE_CHANNEL_PORT": str(SIDE_CHANNEL_PORTS[role]),
                   # Longer than the router's idle connections live (reqwest: 90 s): a
                   # server closing one as the router reuses it fails that request.
                   "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "300"}
            gpu_ids = cores = None
            if on_cpu:
                # Containers on one host look like one host to UCX, which then tries shared
                # memory between them; their IPC namespaces differ: TCP only.
                env["UCX_TLS"] = "tcp,self"
                if not real:
                    cores = _cores(sizes["prefill"] * counts["prefill"],
                                   sizes["decode"] * counts["decode"])[ROLES.index(role)]
                    env["VLLM_CPU_OMP_THREADS_BIND"] = cores
            elif not real:
                # This machine's GPUs in order: the prefill servers', then the decode ones'.
                first = (0 if role == "prefill" else sizes["prefill"] * counts["prefill"]) \
                    + i * sizes[role]
                gpu_ids = tuple(str(g) for g in range(first, first + sizes[role]))
            pools.append(Pool(role=role, service=service, args=tuple(args), env=env,
                              tensor_parallel=1 if on_cpu else sizes[role], gpu_ids=gpu_ids,
                              cores=cores, node=node, port=port,
                              side_channel_port=SIDE_CHANNEL_PORTS[role]))
    router = (lookup(book.strategies, PD_STRATEGY) or StrategyDoc()).router
    policy = settings.router_policy or str((router.policy if router else None)
                                           or "round_robin")
    if policy not in ROUTER_POLICIES:
        raise UsageError(f"--router-policy {policy!r}: choose one of "
                         f"{', '.join(ROUTER_POLICIES)}.")
    base = plans["decode"]
    image = CPU_NIXL_IMAGE if on_cpu and base.image.source == "build" else base.image
    notes = [n for n in base.notes if not n.startswith(("plan: TP", "image "))]
    notes.append(f"image {image.ref}: {image.why}" if image.why else f"image {image.ref}")
    notes += [f"plan: {role} TP {sizes[role]}" for role in ROLES if not on_cpu]
    notes += role_notes
    if on_cpu:
        notes.append("pd_cluster on CPU: NixlConnector with a host-memory KV buffer "
                     f"(kv_buffer_device cpu) over UCX/TCP, from {image.ref}")
    base = dataclasses.replace(base, image=image, strategy=PD_STRATEGY, notes=tuple(notes),
                               labels={**base.labels, "io.glmkit.strategy": PD_STRATEGY,
                                       "io.glmkit.image": image.ref})
    local = not nodes or nodes[0].docker_host is None
    if not local and base.port in {*POOL_PORTS.values(), *SIDE_CHANNEL_PORTS.values()}:
        raise UsageError(f"--port {base.port} is a port the pools use on their nodes; choose "
                         "another one for the router.")
    # Docker publishes the router's port on --host:--port, on real nodes too: the router
    # (and vllm-router behind its gate, on the container's loopback) stays off the head's
    # host network, where any local user could reach the inner, unguarded port.
    router_args = ["--host", "0.0.0.0", "--port", str(CONTAINER_PORT),
                   "--vllm-pd-disaggregation", "--policy", policy]
    for p in pools:
        router_args += [f"--{p.role}", p.url]
    # glmkit waits for the pools itself; the router just needs to outlast that wait.
    router_args += ["--worker-startup-timeout-secs", str(base.health_timeout_s),
                    "--worker-startup-check-interval", "5"]
    return PdPlan(base=base, pools=tuple(pools), router_image=ROUTER_IMAGE,
                  router_args=tuple(router_args), policy=policy, connector="NixlConnector",
                  nodes=tuple(nodes))


def _nodes_of(gpus: int | None, per_node: int) -> int | None:
    """--prefill-gpus/--decode-gpus with --nodes: whole nodes."""
    if gpus is None:
        return None
    if gpus % per_node:
        raise UsageError(f"With --nodes each pool takes whole nodes: {gpus} GPUs is not a "
                         f"multiple of {per_node} GPUs per node.")
    return gpus // per_node
