"""A pd_cluster plan as compose data: the prefill and decode servers and the router in one
project on this engine, or one file per machine (host network) for real nodes, the
router beside the first prefill server (on a bridge network, its port published).

Only the router publishes a port. Secrets stay names, as in the one-node file: the pools
read VLLM_API_KEY from the environment of `docker compose`, and the router's
OPENAI_API_KEY (the key it forwards with) is interpolated from that same VLLM_API_KEY,
so whoever runs `docker compose` the router never takes the caller's own OpenAI key."""

from __future__ import annotations

import copy
from typing import Any

from glmkit.endpoints import CONTAINER_PORT
from glmkit.labels import LABEL
from glmkit.plan.pd import ROUTER, ROUTER_KEY_ENV, PdPlan, Pool
from glmkit.render.compose import SERVICE, compose_dict, env_from

# The host's NUMA nodes as vLLM reads them (CpuPlatform.discover_numa_topology).
NUMA_SYSFS = "/sys/devices/system/node"
# The image's gate: checks the client's key when OPENAI_API_KEY is set, else execs the router.
ROUTER_ENTRYPOINT = ("python3", "/opt/glmkit/gate.py")
ROUTER_HEALTH = ("import urllib.request; "
                 "urllib.request.urlopen('http://127.0.0.1:%d/health', timeout=5)")


def _labels(plan: PdPlan, base: dict[str, str], role: str, node: str | None) -> dict[str, str]:
    labels = {**base, f"{LABEL}.role": role, f"{LABEL}.node": node or role}
    if role == ROUTER:
        labels[f"{LABEL}.image"] = plan.router_image.ref
    return labels


def _pool_service(plan: PdPlan, pool: Pool, base: dict[str, Any]) -> dict[str, Any]:
    service = copy.deepcopy(base)  # no shared objects: no YAML anchors
    service["command"] = list(pool.args)
    service["environment"] = [f"{k}={v}" for k, v in pool.env.items()] + \
        list(plan.base.secret_env)
    service["labels"] = _labels(plan, base["labels"], pool.role, pool.service)
    service.pop("ports", None)  # reached by the router only
    vendor = plan.base.vendor
    if pool.node is not None and pool.node.docker_host is not None:
        service["network_mode"] = "host"
        # The health check's: the pool listens on the node's address only.
        service["environment"] += [f"GLMKIT_PORT={pool.port}", f"GLMKIT_HOST={pool.probe_host}"]
        return service
    service["hostname"] = pool.service
    if pool.cores is not None:
        # An empty NUMA folder: vLLM's NIXL worker then finds no "last core of each NUMA
        # node" to move its thread to (it moved each pool's compute thread onto the host's
        # last core, the decode pool's, and the two pools shared one core).
        service["tmpfs"] = [f"{NUMA_SYSFS}:ro"]
    if pool.gpu_ids is not None:
        if vendor.gpu_reservation:
            service["deploy"] = {"resources": {"reservations": {"devices": [
                {"driver": vendor.docker_runtime, "capabilities": ["gpu"],
                 "device_ids": list(pool.gpu_ids)}]}}}
        if vendor.visibility_env:
            service["environment"].append(f"{vendor.visibility_env}={','.join(pool.gpu_ids)}")
    return service


def _router_service(plan: PdPlan, base: dict[str, Any]) -> dict[str, Any]:
    """The router on a bridge network of its own, its port published (on real nodes as on
    one machine): vllm-router's inner port never meets the host's network."""
    port = CONTAINER_PORT
    service: dict[str, Any] = {
        "image": plan.router_image.ref,
        "entrypoint": list(ROUTER_ENTRYPOINT),
        "command": list(plan.router_args),
        "environment": [env_from(ROUTER_KEY_ENV, "VLLM_API_KEY")],
        "labels": _labels(plan, base["labels"], ROUTER, None),
        "healthcheck": {"test": ["CMD", "python3", "-c", ROUTER_HEALTH % port],
                        "interval": "10s", "timeout": "10s", "retries": 3,
                        "start_period": f"{plan.base.start_period_s}s"},
        "restart": plan.base.restart,
        "stop_grace_period": "5s",
        # It only forwards HTTP: no capability, no writes.
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "ports": copy.deepcopy(base["ports"]),
    }
    return service


def pd_compose(plan: PdPlan) -> dict[str, dict[str, Any]]:
    """Compose data by project name: one file (this engine), or one per real node."""
    data = compose_dict(plan.base)
    base = data["services"][SERVICE]
    if plan.local:
        services = {p.service: _pool_service(plan, p, base) for p in plan.pools}
        services[ROUTER] = _router_service(plan, base)
        return {plan.base.project: {**data, "services": services}}
    files: dict[str, dict[str, Any]] = {}
    head = plan.pools[0].node
    for pool in plan.pools:
        assert pool.node is not None
        services = {pool.service: _pool_service(plan, pool, base)}
        if pool.node == head:
            services[ROUTER] = _router_service(plan, base)
        name = f"{plan.base.project}-{pool.node.name}"
        files[name] = {**{k: v for k, v in data.items() if k != "networks"}, "name": name,
                       "services": services}
    return files
