"""A cluster plan as compose data: one file holding every node when they are simulated on
this engine, or one file per machine (host network) for real nodes.

Secrets stay names here as in the one-node file: a Ray cluster's token is the
RAY_AUTH_TOKEN of `docker compose`'s environment, which `run.lifecycle` sets."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from typing import Any

from glmkit.endpoints import is_ip
from glmkit.plan.cluster import RAY_AUTH_ENV, ClusterPlan, Node
from glmkit.plan.serve import LABEL
from glmkit.render.compose import SERVICE, compose_dict


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
    if cluster.engine == "ray":
        env += RAY_AUTH_ENV
        if not cluster.local and is_ip(node.address):
            # vLLM finds its driver among Ray's nodes by this address (run_cluster.sh).
            env.append(f"VLLM_HOST_IP={node.address}")
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
                {"driver": cluster.base.vendor.docker_runtime, "capabilities": ["gpu"],
                 "device_ids": ids}]}}}
        if cluster.base.vendor.visibility_env:
            first = node.rank * cluster.gpus_per_node
            env.append(f"{cluster.base.vendor.visibility_env}="
                       + ",".join(str(i) for i in range(first, first + cluster.gpus_per_node)))
    else:
        # Real machines: the GPU fabric and the distributed ports need the host network,
        # where vLLM's own --host and --port (set by the plan) decide who can connect.
        service["network_mode"] = "host"
        service.pop("ports", None)
        if node.is_head:
            env.append(f"GLMKIT_PORT={cluster.api_port}")  # the health check's port
    if not node.is_head:
        service.pop("ports", None)
        service.pop("healthcheck", None)
    elif cluster.engine == "ray":
        service.pop("healthcheck", None)  # the API exists only once `up` starts vLLM
    return service


def cluster_compose(cluster: ClusterPlan) -> dict[str, dict[str, Any]]:
    """Compose data: one file with every node (local), or one file per node (real hosts)."""
    plan = cluster.base
    base = compose_dict(plan if plan.ipc_host else replace(plan, shm_size=plan.shm_size or "1gb"))
    base_service = base["services"][SERVICE]
    cpus = None
    if cluster.local and not cluster.base.vendor.has_gpus:
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
