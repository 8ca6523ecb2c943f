"""A model group as compose data: the door and one vLLM service per member, in one project.

Only the door publishes a port. The members join the door's network namespace
(`network_mode: service:door`) and listen on its loopback, so their APIs and vLLM's dev
routes (VLLM_SERVER_DEV_MODE=1: /sleep, /wake_up, /collective_rpc, ...) are reachable from
the door and the members alone, not from the host's bridge addresses or another container.
Secrets stay names, as in the one-server file: the door and the members read VLLM_API_KEY
from the environment of `docker compose`."""

from __future__ import annotations

import copy
from typing import Any

from glmkit.endpoints import CONTAINER_PORT
from glmkit.labels import LABEL
from glmkit.plan.group import DOOR, DOOR_SCRIPT, DOOR_SOURCE, GroupPlan, Member
from glmkit.render.compose import SERVICE, compose_dict

DOOR_HEALTH = ("import urllib.request; "
               "urllib.request.urlopen('http://127.0.0.1:%d/health', timeout=5)")
NOBODY = "65534:65534"


def _member_service(plan: GroupPlan, member: Member) -> tuple[dict[str, Any], dict[str, Any]]:
    """The member's service, and the volumes its file declares."""
    data = compose_dict(member.plan)
    service = copy.deepcopy(data["services"][SERVICE])  # no shared objects: no YAML anchors
    service["command"] = list(member.args)
    service["environment"] = [f"{k}={v}" for k, v in member.env.items()] + \
        list(member.plan.secret_env)
    service["labels"] = {**service["labels"], f"{LABEL}.role": "member",
                         f"{LABEL}.node": member.service,
                         f"{LABEL}.member": str(member.index + 1),
                         f"{LABEL}.strategy": "model_group"}
    service.pop("ports", None)  # reached through the door only
    service["network_mode"] = f"service:{DOOR}"
    # Never back on its own: a member that comes back awake beside the awake one would not
    # fit the GPU. The door answers 503 for it; `invoke down` and `invoke up` restart the
    # group (on CPU `invoke up` alone starts it again, and the door takes it back).
    service["restart"] = "no"
    return service, data["volumes"]


def _door_service(plan: GroupPlan, base: dict[str, Any]) -> dict[str, Any]:
    """The door in the first member's image (vLLM's wheels hold what it imports), its
    program mounted from glmkit, unprivileged and read-only."""
    start = sum(m.plan.start_period_s for m in plan.members)
    return {
        "image": plan.base.image.ref,
        "entrypoint": ["python3", DOOR_SCRIPT],
        "command": list(plan.door_args),
        "environment": ["VLLM_API_KEY"],
        "ports": copy.deepcopy(base["ports"]),
        "volumes": [{"type": "bind", "source": str(DOOR_SOURCE), "target": DOOR_SCRIPT,
                     "read_only": True}],
        "labels": {**base["labels"], f"{LABEL}.role": DOOR, f"{LABEL}.node": DOOR,
                   f"{LABEL}.strategy": "model_group"},
        "healthcheck": {"test": ["CMD", "python3", "-c", DOOR_HEALTH % CONTAINER_PORT],
                        "interval": "10s", "timeout": "10s", "retries": 3,
                        "start_period": f"{start}s"},
        "restart": plan.base.restart,
        "stop_grace_period": "5s",
        # It only forwards HTTP: no capability, no writes, not root.
        "user": NOBODY,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
    }


def group_compose(plan: GroupPlan) -> dict[str, dict[str, Any]]:
    """Compose data by project name: one file, on this engine."""
    data = compose_dict(plan.base)
    services: dict[str, Any] = {DOOR: _door_service(plan, data["services"][SERVICE])}
    volumes: dict[str, Any] = {}
    for member in plan.members:
        services[member.service], declared = _member_service(plan, member)
        volumes.update(declared)
    return {plan.base.project: {**data, "services": services, "volumes": volumes}}
