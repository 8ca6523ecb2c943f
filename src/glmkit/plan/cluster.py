"""Beyond one machine: a serve plan spread over nodes with vLLM's own distributed engines.

Engines:
- `mp`: vLLM's native multi-node runtime (`--nnodes/--node-rank/--master-addr`, the mp
  executor, `--headless` workers) for tensor and pipeline parallel across nodes;
- `dp`: multi-node data parallel (`--data-parallel-size-local`, `--data-parallel-address`,
  `--headless --data-parallel-start-rank` on workers);
- `ray`: a Ray cluster as vLLM's `run_cluster.sh` forms it (`ray start --head`, workers
  join), then `vllm serve --distributed-executor-backend ray` on the head.

Nodes are either simulated on this Docker engine (`--nodes 2`: one container per node on
a private bridge network, a CPU core or GPU set each; what CI runs), or real machines
(`--nodes head=ssh://gpu1,w1=ssh://gpu2`), each driven through its own Docker engine
(DOCKER_HOST) with one compose file per node on the host network, as GPU fabrics need.
On the host network nothing stands between a port and the machine's interfaces, so the
plan binds what it can: the API to the user's --host and port, Ray to each node's
address (without its dashboard), and Ray's control plane takes a shared token.
This module is the plan alone; `cluster_compose` renders it and `run.lifecycle` runs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from glmkit.endpoints import CONTAINER_PORT, connect_host, is_ip
from glmkit.errors import UsageError
from glmkit.host.facts import HostFacts
from glmkit.host.nodes import Node as Node  # re-exported: parsed with the settings
from glmkit.host.nodes import parse_nodes as parse_nodes
from glmkit.host.settings import Engine, Settings
from glmkit.knowledge.recipes import RecipeBook
from glmkit.plan.parts import Defaults, Part, Probe, refuse_owned
from glmkit.plan.serve import ServePlan, build_plan

ENGINES: tuple[Engine, ...] = get_args(Engine)
MASTER_PORT = 29501
DP_RPC_PORT = 13345
RAY_PORT = 6379
# Ray's token authentication (Ray 2.52+): the mode is written into the files, the token
# travels by name only, from the environment of `docker compose` (see run.lifecycle).
RAY_AUTH_ENV = ("RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN")
RAY_TOKEN = "RAY_AUTH_TOKEN"


def with_flag(args: Sequence[str], flag: str, value: str) -> list[str]:
    """`args` with the value of `flag value` replaced in place (absent: unchanged)."""
    out = list(args)
    if flag in out:
        out[out.index(flag) + 1] = value
    return out


@dataclass(frozen=True, kw_only=True)
class ClusterPlan(Defaults):
    base: ServePlan
    nodes: tuple[Node, ...]
    engine: Engine
    tensor_parallel: int
    pipeline_parallel: int
    data_parallel_local: int
    gpus_per_node: int
    ifname: str | None
    rdma: bool
    node_args: dict[str, tuple[str, ...]]
    head_command: tuple[str, ...] | None  # ray: what `up` runs on the head once Ray formed

    @property
    def local(self) -> bool:
        return self.nodes[0].docker_host is None

    @property
    def head(self) -> Node:
        return self.nodes[0]

    @property
    def api_port(self) -> int:
        """Where vLLM listens in the head's network: the container's own port behind a
        published one, or the user's --port itself on a real machine's host network."""
        return CONTAINER_PORT if self.local else self.base.port

    # --- the Deployment protocol (plan.deployment) ---------------------------------------
    @property
    def serving(self) -> ServePlan:
        return self.base

    def served(self) -> tuple[ServePlan, ...]:
        return (self.base,)

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    @property
    def rejoins(self) -> bool:
        return False  # vLLM cannot take a node back into a running group

    @property
    def keep_on_failure(self) -> bool:
        return False  # a half cluster is removed whole

    @property
    def shared_secret(self) -> str | None:
        """Ray's token, which every node must share (it reaches them by name only)."""
        return RAY_TOKEN if self.engine == "ray" else None

    def project_of(self, node: Node) -> str:
        return self.base.project if self.local else f"{self.base.project}-{node.name}"

    @property
    def probe_host(self) -> str:
        """Where a probe inside the head reaches its API: the address it binds (on a real
        node's host network, the user's --host), loopback for a wildcard bind."""
        return connect_host(self.base.host) if not self.local else "127.0.0.1"

    def parts(self) -> tuple[Part, ...]:
        """Every node's container; the head is probed with a real request, in its network."""
        return tuple(Part(node.name, f"Node {node.name}", self.project_of(node),
                          node.docker_host,
                          Probe(self.probe_host, self.api_port) if node.is_head else None)
                     for node in self.nodes)

    @property
    def api_probe_url(self) -> str | None:
        return None  # the head's probe inside its container is the check

    def pod_args(self, *, rank: str, master: str, headless: bool) -> tuple[str, ...]:
        """An mp node's command for a pod of its own network (a Kubernetes export): the
        API on the container's port, the rank and head's address as given."""
        return mp_node_args(self.base.command.argv(parallel=False),
                            ("--tensor-parallel-size", str(self.tensor_parallel),
                             "--pipeline-parallel-size", str(self.pipeline_parallel)),
                            len(self.nodes), rank=rank, master=master, headless=headless)

    def describe(self) -> list[str]:
        """The layout and the ports that must be open between nodes, in words."""
        dp = (f", {self.data_parallel_local} DP ranks per node" if self.engine == "dp"
              else "")
        return [f"{self.engine} engine, {len(self.nodes)} nodes: TP "
                f"{self.tensor_parallel} × PP {self.pipeline_parallel}{dp}",
                *(f"  open: {port}" for port in self.ports())]

    def ports(self) -> list[str]:
        """What listens on the nodes and where (SECURITY.md has the same, with reasons)."""
        every = "inside the nodes' bridge network" if self.local else \
            "on every interface, so firewall to the other nodes only"
        ports = [f"{self.base.port}/tcp: the API on {self.base.host} (head)"]
        if self.engine == "mp":
            ports.append(f"{MASTER_PORT}/tcp: torch.distributed store (head), {every}")
        if self.engine == "dp":
            ports.append(f"{DP_RPC_PORT}/tcp: data-parallel RPC on {self.head.address} "
                         "(head), and vLLM's ZMQ ports between the nodes")
        if self.engine == "ray":
            ports.append(f"{RAY_PORT}/tcp: Ray GCS (head), and Ray's raylet, object manager "
                         f"and worker ports on every node, {every}; a token guards them "
                         "from Ray 2.52; no dashboard")
        ports.append("NCCL/gloo: every node to every node" + (
            f" on {self.ifname}" if self.ifname else ""))
        return ports


def strategy_layout(strategy: str | None, engine: Engine, tp: int | None, pp: int | None,
                    gpus_per_node: int, nodes: int) -> tuple[Engine, int | None, int | None]:
    """(engine, TP, PP) for the recipes' multi-node strategies; others keep what was asked.

    multi_node_tp/tep: one TP group over every GPU; multi_node_tp_pp: TP inside a node, PP
    across; multi_node_dep: data parallel ranks with the experts over all of them."""
    if strategy in ("multi_node_tp", "multi_node_tep"):
        return "mp", tp or gpus_per_node * nodes, 1
    if strategy == "multi_node_tp_pp":
        return "mp", tp or gpus_per_node, pp or nodes
    if strategy == "multi_node_dep":
        return "dp", tp or 1, 1
    return engine, tp, pp


def build_cluster(base: ServePlan, nodes: tuple[Node, ...], engine: Engine, *,
                  tp: int | None, pp: int | None, gpus_per_node: int,
                  ifname: str | None = None, rdma: bool = False) -> ClusterPlan:
    n = len(nodes)
    if gpus_per_node < 1:
        raise UsageError("--gpus-per-node must be at least 1.")
    real = nodes[0].docker_host is not None
    if real and base.port in (MASTER_PORT, DP_RPC_PORT, RAY_PORT):
        raise UsageError(f"--port {base.port} is a port the cluster's nodes use among "
                         "themselves; choose another one for the API.")
    # The one server's command without its parallel sizes: the cluster sets its own. On
    # the host network no published port is in between, so vLLM's own --host and --port
    # are what the machine exposes.
    common = list(base.command.argv(host=base.host, port=base.port, parallel=False) if real
                  else base.command.argv(parallel=False))
    head_addr = nodes[0].address
    node_args: dict[str, tuple[str, ...]] = {}
    head_command = None
    dp_local = 1
    if engine == "dp":
        tp = tp or 1
        if gpus_per_node % tp:
            raise UsageError(f"Data parallel: {gpus_per_node} GPUs per node are not a multiple "
                             f"of TP {tp}.")
        dp_local = gpus_per_node // tp
        pp = 1
        for node in nodes:
            args = [*common, "--tensor-parallel-size", str(tp),
                    "--data-parallel-size", str(dp_local * n),
                    "--data-parallel-size-local", str(dp_local),
                    "--data-parallel-address", head_addr,
                    "--data-parallel-rpc-port", str(DP_RPC_PORT)]
            if not node.is_head:
                args += ["--headless", "--data-parallel-start-rank", str(node.rank * dp_local)]
            node_args[node.name] = tuple(args)
    else:
        # Default: TP inside a node, PP across nodes (the slower link carries less). On
        # CPU nodes TP spans them: PP needs a MoE layer per stage, which tiny models lack.
        tp = tp or (gpus_per_node if base.vendor.has_gpus else gpus_per_node * n)
        pp = pp or (n * gpus_per_node) // tp
        if tp * pp != n * gpus_per_node:
            raise UsageError(f"TP {tp} × PP {pp} = {tp * pp} workers, but {n} nodes × "
                             f"{gpus_per_node} = {n * gpus_per_node} GPUs.")
        parallel = ["--tensor-parallel-size", str(tp), "--pipeline-parallel-size", str(pp)]
        if engine == "mp":
            for node in nodes:
                node_args[node.name] = mp_node_args(
                    common, parallel, n, rank=str(node.rank), master=head_addr,
                    headless=not node.is_head)
        else:  # ray: containers run Ray; the head then serves on the formed cluster
            for node in nodes:
                node_args[node.name] = _ray_start(node, head_addr, real)
            head_command = ("vllm", "serve", *common, *parallel,
                            "--distributed-executor-backend", "ray")
    return ClusterPlan(base=base, nodes=nodes, engine=engine, tensor_parallel=tp,
                       pipeline_parallel=pp or 1, data_parallel_local=dp_local,
                       gpus_per_node=gpus_per_node, ifname=ifname, rdma=rdma,
                       node_args=node_args, head_command=head_command)


def mp_node_args(common: Sequence[str], parallel: Sequence[str], nodes: int, *, rank: str,
                 master: str, headless: bool) -> tuple[str, ...]:
    """One node's `vllm serve` with vLLM's native multi-node runtime; the rank and the
    head's address as given (a Kubernetes pod's come from its environment)."""
    return (*common, *parallel, "--distributed-executor-backend", "mp", "--nnodes",
            str(nodes), "--node-rank", rank, "--master-addr", master, "--master-port",
            str(MASTER_PORT), *(("--headless",) if headless else ()))


def _ray_start(node: Node, head_addr: str, real: bool) -> tuple[str, ...]:
    """`ray start` for one node, as vLLM's run_cluster.sh does, with no dashboard (its Jobs
    API runs code for whoever reaches it; vLLM needs none). On a real machine Ray binds to
    the node's IP address when one was given; a host name is left to Ray's detection."""
    args = ["start", "--head", f"--port={RAY_PORT}", "--include-dashboard=false"] \
        if node.is_head else ["start", f"--address={head_addr}:{RAY_PORT}"]
    if real and is_ip(node.address):
        args.append(f"--node-ip-address={node.address}")
    return (*args, "--block")


def plan_cluster(settings: Settings, facts: HostFacts, book: RecipeBook) -> ClusterPlan:
    """The one-node plan gives flags, devices and mounts; the cluster owns parallel sizes.
    Pure, as `build_plan`: portable facts give the plan for an export."""
    assert settings.nodes
    refuse_owned(settings.extra_args, {
        "--tensor-parallel-size": "--tp sets it", "--pipeline-parallel-size": "--pp sets it",
        "--data-parallel-size": "--strategy multi_node_dep sizes it from the nodes",
        "--data-parallel-size-local": "--strategy multi_node_dep sizes it from the nodes",
        "--nnodes": "--nodes gives the nodes", "--node-rank": "each node gets its own",
        "--master-addr": "the head's address from --nodes",
        "--headless": "every node but the head runs headless",
        "--distributed-executor-backend": "--engine chooses it: mp, dp or ray"},
        "A multi-node cluster")
    nodes = settings.nodes.cluster()
    base = build_plan(dataclasses.replace(settings, tp=1, dp=1), facts, book)
    hw = facts.hardware
    per_node = settings.gpus_per_node or (
        hw.gpu_count if hw.vendor == base.vendor.name and hw.gpu_count else
        (1 if not base.vendor.has_gpus else 8))
    engine, tp, pp = strategy_layout(settings.strategy, settings.engine, settings.tp,
                                     settings.pp, per_node, len(nodes))
    return build_cluster(base, nodes, engine, tp=tp, pp=pp, gpus_per_node=per_node,
                         ifname=settings.ifname, rdma=settings.rdma)
