"""Running a pd_cluster: start the pools and the router, wait until every pool serves a
real request and the router answers, stop them as one.

vllm-router checks its workers only every 60 s, so glmkit probes each pool itself inside
its container (the pools publish no port), and names the pool that died.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from glmkit.endpoints import IN_CONTAINER_PROBE, api_ready
from glmkit.errors import CommandFailed, GlmkitError, ServerFailed
from glmkit.plan.pd import ROUTER, PdPlan, Pool
from glmkit.process import run
from glmkit.render.pd_compose import ROUTER_KEY_ENV
from glmkit.run.engine import (
    GONE_BEFORE_HEALTHY,
    client,
    compose_cmd,
    compose_env,
    log_tail,
    wait_until,
)


def project_for(plan: PdPlan, node_name: str | None) -> str:
    return plan.base.project if plan.local or node_name is None else \
        f"{plan.base.project}-{node_name}"


def engines(plan: PdPlan) -> list[tuple[str, str | None]]:
    """(compose project, DOCKER_HOST) for each engine the deployment runs on."""
    if plan.local:
        return [(plan.base.project, None)]
    seen: dict[str, tuple[str, str | None]] = {}
    for pool in plan.pools:
        assert pool.node is not None
        seen.setdefault(pool.node.name, (project_for(plan, pool.node.name),
                                         pool.node.docker_host))
    return list(seen.values())


def router_secrets(secrets: Mapping[str, str]) -> dict[str, str]:
    """The compose environment's secrets plus the router's key: the pools' VLLM_API_KEY,
    or empty, so a user's own OPENAI_API_KEY never reaches the router."""
    return {**secrets, ROUTER_KEY_ENV: secrets.get("VLLM_API_KEY", "")}


@dataclass(frozen=True)
class PartState:
    service: str
    container: Any  # the SDK's container, None when missing
    state: str
    exit_code: int


def part_states(plan: PdPlan) -> list[PartState]:
    """Every service's container (pools, then the router), read by compose labels."""
    found: dict[str, PartState] = {}
    for project, docker_host in engines(plan):
        label = f"com.docker.compose.project={project}"
        for ct in client(docker_host).containers.list(all=True, filters={"label": label}):
            service = ct.labels.get("com.docker.compose.service", "")
            state = ct.attrs.get("State", {})
            found[service] = PartState(service, ct, state.get("Status", "unknown"),
                                       int(state.get("ExitCode") or 0))
    return [found.get(name, PartState(name, None, "missing", -1)) for name in plan.services]


def pool_serves(plan: PdPlan, container: str, pool: Pool, docker_host: str | None) -> bool:
    """A real one-token chat request inside the pool's container (its API is unpublished),
    to the address the pool binds."""
    argv = ["docker", "exec", "-e", f"GLMKIT_PORT={pool.port}",
            "-e", f"GLMKIT_HOST={pool.probe_host}",
            "-e", f"GLMKIT_MODEL={plan.base.served_model_name}", "-e", "GLMKIT_REQUEST=1",
            container, "python3", "-c", IN_CONTAINER_PROBE]
    return run(argv, env=compose_env(docker_host), check=False, timeout=120).returncode == 0


def wait_pd(plan: PdPlan, timeout_s: float, console: Console) -> float:
    """Until every pool answers a request and the router /health; stop on a dead part."""
    ready: set[str] = set()

    def poll() -> str | None:
        states = part_states(plan)
        for part in states:
            if part.state in GONE_BEFORE_HEALTHY:
                raise ServerFailed(
                    f"The {part.service} server {part.state} (exit {part.exit_code}) before "
                    "the pd_cluster was healthy. Its log is above.",
                    log_tail(part.container) if part.container is not None else "")
        for pool, part in zip(plan.pools, states, strict=False):
            if pool.service not in ready and part.container is not None and pool_serves(
                    plan, part.container.name, pool,
                    pool.node.docker_host if pool.node else None):
                ready.add(pool.service)
        if len(ready) == len(plan.pools) and api_ready(plan.base.base_url):
            return None
        waiting = [p.service for p in plan.pools if p.service not in ready] or [ROUTER]
        return "waiting for " + ", ".join(waiting)

    def timed_out() -> ServerFailed:
        slow = next((p for p in part_states(plan) if p.service not in ready), None)
        return ServerFailed(f"The pd_cluster was not healthy after {timeout_s:.0f} s.",
                            log_tail(slow.container) if slow and slow.container else "")

    return wait_until(poll, timeout_s, console, f"{len(plan.pools)} pools and the router",
                      timed_out, poll_s=2.0)


def stop(plan: PdPlan) -> list[str]:
    stopped = []
    for project, docker_host in engines(plan):
        with contextlib.suppress(CommandFailed):
            run(compose_cmd(project, None, "down", "-t", "5", "--remove-orphans"),
                env=compose_env(docker_host))
            stopped.append(project)
    return stopped


def start(plan: PdPlan, files: list[Path], secrets: Mapping[str, str],
          console: Console) -> float:
    """Start every part, then wait; on failure stop them all, so no half deployment stays.
    Returns the seconds waited."""
    env_secrets = router_secrets(secrets)
    try:
        for (project, docker_host), path in zip(engines(plan), files, strict=True):
            run(compose_cmd(project, path, "up", "-d", "--remove-orphans"),
                env=compose_env(docker_host, env_secrets))
        return wait_pd(plan, plan.base.health_timeout_s, console)
    except (GlmkitError, KeyboardInterrupt):
        stop(plan)
        raise
