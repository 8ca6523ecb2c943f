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
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from glmkit.errors import UsageError
from glmkit.plan import CONTAINER_PORT, LABEL, ServePlan
from glmkit.resolver import drop_flags

Engine = Literal["mp", "dp", "ray"]
ENGINES: tuple[Engine, ...] = ("mp", "dp", "ray")
MASTER_PORT = 29501
DP_RPC_PORT = 13345
RAY_PORT = 6379
# Flags the cluster engine owns; a single-node plan's values are replaced.
_OWNED = ("--tensor-parallel-size", "--data-parallel-size")


@dataclass(frozen=True)
class Node:
    name: str
    rank: int
    docker_host: str | None  # None: this machine's engine
    address: str  # how the other nodes reach it

    @property
    def is_head(self) -> bool:
        return self.rank == 0


def parse_nodes(text: str) -> tuple[Node, ...]:
    """'2' → two nodes on this engine; 'head=ssh://a,w1=ssh://b' → real machines."""
    text = text.strip()
    if text.isdigit():
        count = int(text)
        if not 2 <= count <= 16:
            raise UsageError(f"--nodes {count}: give 2 to 16 nodes (1 is a normal `up`).")
        return tuple(Node(name="head" if i == 0 else f"worker{i}", rank=i, docker_host=None,
                          address="head" if i == 0 else f"worker{i}") for i in range(count))
    nodes = []
    for rank, item in enumerate(part.strip() for part in text.split(",") if part.strip()):
        name, sep, host = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name) or not host:
            raise UsageError(f"--nodes: {item!r} is not NAME=HOST (e.g. head=ssh://gpu1).")
        url = host if "://" in host else f"ssh://{host}"
        address = re.sub(r"^[a-z]+://([^@/]*@)?", "", url).split(":")[0].split("/")[0]
        if not re.fullmatch(r"[A-Za-z0-9.-]+", address):
            raise UsageError(f"--nodes: cannot read a host name from {host!r}.")
        nodes.append(Node(name=name, rank=rank, docker_host=url, address=address))
    if len(nodes) < 2:
        raise UsageError("--nodes needs at least two NAME=HOST entries, the head first.")
    if len({n.name for n in nodes}) != len(nodes):
        raise UsageError("--nodes names a node twice.")
    return tuple(nodes)


@dataclass(frozen=True, kw_only=True)
class ClusterPlan:
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

    def ports(self) -> list[str]:
        """What must be open between the nodes (and to clients, on the head)."""
        ports = [f"{self.base.port}/tcp (API, head)"]
        if self.engine == "mp":
            ports.append(f"{MASTER_PORT}/tcp (master, head) and the torch.distributed ports")
        if self.engine == "dp":
            ports.append(f"{DP_RPC_PORT}/tcp (data-parallel RPC, head) and ZMQ ports")
        if self.engine == "ray":
            ports.append(f"{RAY_PORT}/tcp (Ray GCS, head) and Ray's object/worker ports")
        ports.append("NCCL/gloo: every node to every node" + (
            f" on {self.ifname}" if self.ifname else ""))
        return ports


def strategy_layout(strategy: str | None, engine: str, tp: int | None, pp: int | None,
                    gpus_per_node: int, nodes: int) -> tuple[str, int | None, int | None]:
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


def build_cluster(base: ServePlan, nodes: tuple[Node, ...], engine: str, *,
                  tp: int | None, pp: int | None, gpus_per_node: int,
                  ifname: str | None = None, rdma: bool = False) -> ClusterPlan:
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}.")
    n = len(nodes)
    if gpus_per_node < 1:
        raise UsageError("--gpus-per-node must be at least 1.")
    common = drop_flags(base.serve_args, *_OWNED)
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
        tp = tp or (gpus_per_node * n if base.vendor.name == "cpu" else gpus_per_node)
        pp = pp or (n * gpus_per_node) // tp
        if tp * pp != n * gpus_per_node:
            raise UsageError(f"TP {tp} × PP {pp} = {tp * pp} workers, but {n} nodes × "
                             f"{gpus_per_node} = {n * gpus_per_node} GPUs.")
        parallel = ["--tensor-parallel-size", str(tp), "--pipeline-parallel-size", str(pp)]
        if engine == "mp":
            for node in nodes:
                args = [*common, *parallel, "--distributed-executor-backend", "mp",
                        "--nnodes", str(n), "--node-rank", str(node.rank),
                        "--master-addr", head_addr, "--master-port", str(MASTER_PORT)]
                if not node.is_head:
                    args.append("--headless")
                node_args[node.name] = tuple(args)
        else:  # ray: containers run Ray; the head then serves on the formed cluster
            for node in nodes:
                node_args[node.name] = (
                    ("start", "--head", f"--port={RAY_PORT}", "--block") if node.is_head else
                    ("start", f"--address={head_addr}:{RAY_PORT}", "--block"))
            head_command = ("vllm", "serve", *common, *parallel,
                            "--distributed-executor-backend", "ray")
    return ClusterPlan(base=base, nodes=nodes, engine=engine, tensor_parallel=tp,
                       pipeline_parallel=pp or 1, data_parallel_local=dp_local,
                       gpus_per_node=gpus_per_node, ifname=ifname, rdma=rdma,
                       node_args=node_args, head_command=head_command)


def _with_flag(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    if flag in out:
        out[out.index(flag) + 1] = value
    return out


def _node_service(cluster: ClusterPlan, node: Node, base_service: dict[str, Any],
                  cpu_index: int | None) -> dict[str, Any]:
    service = copy.deepcopy(base_service)  # no shared objects: no YAML anchors
    service["labels"] = {**base_service["labels"], f"{LABEL}.node": node.name,
                         f"{LABEL}.node-rank": str(node.rank),
                         f"{LABEL}.nodes": str(len(cluster.nodes)),
                         f"{LABEL}.engine": cluster.engine}
    if cluster.engine == "ray":
        service["entrypoint"] = ["ray"]
    service["command"] = list(cluster.node_args[node.name])
    env = list(base_service["environment"])
    if cluster.ifname:
        env += [f"GLOO_SOCKET_IFNAME={cluster.ifname}", f"NCCL_SOCKET_IFNAME={cluster.ifname}"]
    service["environment"] = env
    if cluster.rdma:
        service["devices"] = [*service.get("devices", []), "/dev/infiniband:/dev/infiniband"]
        service["cap_add"] = sorted({*service.get("cap_add", []), "IPC_LOCK"})
    if cluster.local:
        service["hostname"] = node.address
        if cpu_index is not None:
            service["cpuset"] = str(cpu_index)
        if cluster.base.vendor.gpu_reservation:
            first = node.rank * cluster.gpus_per_node
            ids = [str(i) for i in range(first, first + cluster.gpus_per_node)]
            service["deploy"] = {"resources": {"reservations": {"devices": [
                {"driver": "nvidia", "capabilities": ["gpu"], "device_ids": ids}]}}}
        if cluster.base.vendor.visibility_env:
            first = node.rank * cluster.gpus_per_node
            env.append(f"{cluster.base.vendor.visibility_env}="
                       + ",".join(str(i) for i in range(first, first + cluster.gpus_per_node)))
    else:
        # Real machines: the GPU fabric and the distributed ports need the host network.
        service["network_mode"] = "host"
        service.pop("ports", None)
        # With no port mapping in between, vLLM's own --host decides who can connect.
        service["command"] = _with_flag(service["command"], "--host", cluster.base.host)
    if not node.is_head:
        service.pop("ports", None)
        service.pop("healthcheck", None)
    elif cluster.engine == "ray":
        service.pop("healthcheck", None)  # the API exists only once `up` starts vLLM
    return service


def cluster_compose(cluster: ClusterPlan) -> dict[str, dict[str, Any]]:
    """Compose data: one file with every node (local), or one file per node (real hosts)."""
    from glmkit.compose import SERVICE, compose_dict

    plan = cluster.base
    base = compose_dict(plan if plan.ipc_host else replace(plan, shm_size=plan.shm_size or "1gb"))
    base_service = base["services"][SERVICE]
    cpus = None
    if cluster.local and cluster.base.vendor.name == "cpu":
        import os

        cores = os.cpu_count() or 1
        cpus = [i % cores for i in range(len(cluster.nodes))]
    if cluster.local:
        services = {node.name: _node_service(cluster, node, base_service,
                                             cpus[node.rank] if cpus else None)
                    for node in cluster.nodes}
        return {cluster.base.project: {**base, "services": services}}
    files = {}
    for node in cluster.nodes:
        data = {**base, "name": f"{cluster.base.project}-{node.name}",
                "services": {node.name: _node_service(cluster, node, base_service, None)}}
        data.pop("networks", None)
        files[f"{cluster.base.project}-{node.name}"] = data
    return files


def head_port_target() -> int:
    return CONTAINER_PORT


# --- running a cluster -------------------------------------------------------------------

# Run inside the head container (every vLLM image has python3): /health, then one real
# request, since a head whose worker died still answers /health (measured: for minutes).
_PROBE = """
import json, os, sys, urllib.request
base = "http://127.0.0.1:%d" % int(os.environ["GLMKIT_PORT"])
try:
    urllib.request.urlopen(base + "/health", timeout=5)
    if os.environ.get("GLMKIT_REQUEST") == "1":
        body = json.dumps({"model": os.environ["GLMKIT_MODEL"], "max_tokens": 1,
                           "messages": [{"role": "user", "content": "ping"}]}).encode()
        req = urllib.request.Request(base + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Bearer " +
                                              os.environ.get("VLLM_API_KEY", "")})
        urllib.request.urlopen(req, timeout=60)
except Exception as err:
    print(err)
    sys.exit(1)
"""


def node_env(node: Node) -> dict[str, str]:
    from glmkit.process import child_env

    return child_env({"DOCKER_HOST": node.docker_host} if node.docker_host else None)


def project_for(cluster: ClusterPlan, node: Node) -> str:
    return cluster.base.project if cluster.local else f"{cluster.base.project}-{node.name}"


@dataclass(frozen=True)
class NodeState:
    node: str
    container: str
    state: str
    exit_code: int


def node_states(cluster: ClusterPlan) -> list[NodeState]:
    """Every node's container as Compose reports it (`ps --format json`, read as data)."""
    import json

    from glmkit.lifecycle import compose_cmd
    from glmkit.process import run

    states: dict[str, NodeState] = {}
    for node in (cluster.nodes[:1] if cluster.local else cluster.nodes):
        done = run(compose_cmd(project_for(cluster, node), None, "ps", "-a", "--format",
                               "json"), env=node_env(node), check=False)
        for line in done.stdout.splitlines():
            if line.strip().startswith("{"):
                item = json.loads(line)
                states[item["Service"]] = NodeState(item["Service"], item["Name"],
                                                    item["State"], int(item.get("ExitCode", 0)))
    return [states.get(n.name, NodeState(n.name, "-", "missing", -1)) for n in cluster.nodes]


def head_probe(cluster: ClusterPlan, container: str, request: bool) -> bool:
    from glmkit.process import run

    head = cluster.head
    argv = ["docker", "exec", "-e", f"GLMKIT_PORT={CONTAINER_PORT}",
            "-e", f"GLMKIT_MODEL={cluster.base.served_model_name}",
            "-e", f"GLMKIT_REQUEST={'1' if request else '0'}", container,
            "python3", "-c", _PROBE]
    return run(argv, env=node_env(head), check=False, timeout=120).returncode == 0


def refuse_broken(cluster: ClusterPlan) -> None:
    """vLLM cannot take a node back into a running group: a half-dead cluster must be
    restarted as a whole, never patched by starting the dead node alone."""
    from glmkit.errors import EnvironmentProblem

    states = node_states(cluster)
    running = [s for s in states if s.state == "running"]
    dead = [s for s in states if s.state in ("exited", "dead")]
    if running and dead:
        names = ", ".join(f"{s.node} (exit {s.exit_code})" for s in dead)
        raise EnvironmentProblem(
            f"The cluster {cluster.base.project} is broken: {names} stopped while "
            f"{', '.join(s.node for s in running)} still run. vLLM cannot rejoin a node; "
            "restart it whole: `invoke down --project "
            f"{cluster.base.project}` then `invoke up` again.")


def container_logs(cluster: ClusterPlan, state: NodeState, lines: int = 40) -> str:
    from glmkit.process import run

    node = next(n for n in cluster.nodes if n.name == state.node)
    done = run(["docker", "logs", "--tail", str(lines), state.container],
               env=node_env(node), check=False)
    return (done.stdout + done.stderr).rstrip()


def wait_cluster(cluster: ClusterPlan, timeout_s: float, console: Any) -> float:
    """Until every node runs and the head serves a real request; stop on a dead node."""
    import time

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from glmkit.errors import ServerFailed

    started = time.monotonic()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"waiting for {len(cluster.nodes)} nodes")
        while True:
            states = node_states(cluster)
            for state in states:
                if state.state in ("exited", "dead", "missing"):
                    raise ServerFailed(
                        f"Node {state.node} {state.state} (exit {state.exit_code}) before the "
                        f"cluster was healthy. Its log is above; `invoke down --project "
                        f"{cluster.base.project}` before trying again.",
                        container_logs(cluster, state) if state.container != "-" else "")
            head = states[0]
            if all(s.state == "running" for s in states) and \
                    head_probe(cluster, head.container, request=True):
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise ServerFailed(f"The cluster was not healthy after {timeout_s:.0f} s.",
                                   container_logs(cluster, head))
            summary = ", ".join(f"{s.node}: {s.state}" for s in states)
            progress.update(task, description=f"waiting for {len(states)} nodes [dim]"
                            f"({summary})[/dim]")
            time.sleep(1.0)


def start_ray_serve(cluster: ClusterPlan, timeout_s: float = 300) -> None:
    """Ray: once every node joined, start vLLM on the head (as run_cluster.sh users do)."""
    import time

    from glmkit.errors import ServerFailed
    from glmkit.process import run

    assert cluster.head_command is not None
    head = node_states(cluster)[0]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(["docker", "exec", head.container, "ray", "status"],
                     env=node_env(cluster.head), check=False)
        if status.stdout.count("node_") >= len(cluster.nodes):
            break
        time.sleep(2)
    else:
        raise ServerFailed(f"The Ray cluster did not reach {len(cluster.nodes)} nodes.",
                           status.stdout[-2000:])
    run(["docker", "exec", "-d", head.container, *cluster.head_command],
        env=node_env(cluster.head))
