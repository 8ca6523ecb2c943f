"""Running a cluster plan: start every node, wait until the whole group serves, stop it.

A node's containers are read through its own engine (the Docker SDK, DOCKER_HOST for
real machines); commands inside the head run through `docker exec`. A Ray cluster's
token reaches every node as the files' other secrets do: by value only in the
environment of `docker compose`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets as random_secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from glmkit.endpoints import IN_CONTAINER_PROBE
from glmkit.errors import CommandFailed, EnvironmentProblem, GlmkitError, ServerFailed
from glmkit.plan.cluster import RAY_PORT, RAY_TOKEN, ClusterPlan, Node
from glmkit.process import run
from glmkit.run.engine import (
    GONE_BEFORE_HEALTHY,
    client,
    compose_cmd,
    compose_env,
    log_tail,
    wait_until,
)


def project_for(cluster: ClusterPlan, node: Node) -> str:
    return cluster.base.project if cluster.local else f"{cluster.base.project}-{node.name}"


def engines(cluster: ClusterPlan) -> list[Node]:
    """One node per Docker engine: the head alone when every node runs on this one."""
    return list(cluster.nodes[:1] if cluster.local else cluster.nodes)


@dataclass(frozen=True)
class NodeState:
    node: str
    container: Any  # the SDK's container, None when missing
    state: str
    exit_code: int

    @property
    def name(self) -> str:
        return str(self.container.name) if self.container is not None else "-"


def node_states(cluster: ClusterPlan) -> list[NodeState]:
    """Every node's container, read from its engine by the compose project's labels."""
    states: dict[str, NodeState] = {}
    for node in engines(cluster):
        try:
            docker = client(node.docker_host)
        except EnvironmentProblem:
            continue  # reported as missing below
        label = f"com.docker.compose.project={project_for(cluster, node)}"
        for ct in docker.containers.list(all=True, filters={"label": label}):
            service = ct.labels.get("com.docker.compose.service", "")
            state = ct.attrs.get("State", {})
            states[service] = NodeState(service, ct, state.get("Status", "unknown"),
                                        int(state.get("ExitCode") or 0))
    return [states.get(n.name, NodeState(n.name, None, "missing", -1)) for n in cluster.nodes]


def head_probe(cluster: ClusterPlan, container: str, request: bool) -> bool:
    argv = ["docker", "exec", "-e", f"GLMKIT_PORT={cluster.api_port}",
            "-e", f"GLMKIT_MODEL={cluster.base.served_model_name}",
            "-e", f"GLMKIT_REQUEST={'1' if request else '0'}", container,
            "python3", "-c", IN_CONTAINER_PROBE]
    return run(argv, env=compose_env(cluster.head.docker_host), check=False,
               timeout=120).returncode == 0


def refuse_broken(cluster: ClusterPlan) -> None:
    """vLLM cannot take a node back into a running group: a half-dead cluster must be
    restarted as a whole, never patched by starting the dead node alone."""
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


def wait_cluster(cluster: ClusterPlan, timeout_s: float, console: Console) -> float:
    """Until every node runs and the head serves a real request; stop on a dead node."""

    def poll() -> str | None:
        states = node_states(cluster)
        for state in states:
            if state.state in GONE_BEFORE_HEALTHY:
                raise ServerFailed(
                    f"Node {state.node} {state.state} (exit {state.exit_code}) before the "
                    "cluster was healthy. Its log is above.",
                    log_tail(state.container) if state.container is not None else "")
        if all(s.state == "running" for s in states) and \
                head_probe(cluster, states[0].name, request=True):
            return None
        return ", ".join(f"{s.node}: {s.state}" for s in states)

    def timed_out() -> ServerFailed:
        head = node_states(cluster)[0]
        return ServerFailed(f"The cluster was not healthy after {timeout_s:.0f} s.",
                            log_tail(head.container) if head.container is not None else "")

    return wait_until(poll, timeout_s, console, f"{len(cluster.nodes)} nodes", timed_out,
                      poll_s=1.0)


def start_ray_serve(cluster: ClusterPlan, timeout_s: float = 300) -> None:
    """Ray: once every node joined, start vLLM on the head (as run_cluster.sh users do)."""
    assert cluster.head_command is not None
    head = node_states(cluster)[0].name
    env = compose_env(cluster.head.docker_host)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(["docker", "exec", head, "ray", "status"], env=env, check=False)
        if status.stdout.count("node_") >= len(cluster.nodes):
            break
        time.sleep(2)
    else:
        raise ServerFailed(f"The Ray cluster did not reach {len(cluster.nodes)} nodes.",
                           status.stdout[-2000:])
    run(["docker", "exec", "-d", head, *cluster.head_command], env=env)


RAY_TOKEN_AUTH = (2, 52)  # the first Ray that reads RAY_AUTH_MODE=token


def ray_auth_warning(cluster: ClusterPlan) -> str | None:
    """A warning when a real machine's Ray predates token authentication: it ignores the
    token and its control plane answers anyone who reaches the port. (Simulated nodes
    publish no Ray port.)"""
    if cluster.local:
        return None
    head = node_states(cluster)[0].name
    done = run(["docker", "exec", head, "ray", "--version"],
               env=compose_env(cluster.head.docker_host), check=False)
    found = re.search(r"version (\d+)\.(\d+)", done.stdout or "")
    if not found or (int(found[1]), int(found[2])) >= RAY_TOKEN_AUTH:
        return None
    return (f"warning: Ray {found[1]}.{found[2]} in {cluster.base.image.ref} has no token "
            f"authentication (Ray 2.52 added it): port {RAY_PORT} and Ray's other ports "
            "accept anyone who reaches them. Keep every node on a private network, or use "
            "an image with a newer Ray.")


def stop(cluster: ClusterPlan) -> list[str]:
    """`compose down` on every node's engine; the projects it stopped."""
    stopped = []
    for node in engines(cluster):
        with contextlib.suppress(CommandFailed):
            run(compose_cmd(project_for(cluster, node), None, "down", "-t", "5",
                            "--remove-orphans"), env=compose_env(node.docker_host))
            stopped.append(project_for(cluster, node))
    return stopped


def ray_token(cluster: ClusterPlan, env: Mapping[str, str]) -> str:
    """The token every node of a Ray cluster shares: RAY_AUTH_TOKEN if the user set one,
    else the running head's (a second `up` must not recreate a formed cluster), else a
    new random one. It lives in the containers' environment, as HF_TOKEN does."""
    if env.get(RAY_TOKEN):
        return env[RAY_TOKEN]
    head = node_states(cluster)[0].container
    if head is not None:
        for item in head.attrs.get("Config", {}).get("Env") or []:
            name, _, value = str(item).partition("=")
            if name == RAY_TOKEN and value:
                return value
    return random_secrets.token_hex(32)


def start(cluster: ClusterPlan, files: list[Path], secrets: Mapping[str, str],
          console: Console, env: Mapping[str, str] | None = None) -> float:
    """Start every node, then wait for the group; on any failure, stop every node that
    was started, so no half cluster keeps running. Returns the seconds waited."""
    refuse_broken(cluster)
    if cluster.engine == "ray":
        secrets = {**secrets, RAY_TOKEN: ray_token(cluster, os.environ if env is None
                                                   else env)}
    try:
        for node, path in zip(engines(cluster), files, strict=True):
            run(compose_cmd(project_for(cluster, node), path, "up", "-d", "--remove-orphans"),
                env=compose_env(node.docker_host, secrets))
        if cluster.engine == "ray":
            start_ray_serve(cluster)
            warning = ray_auth_warning(cluster)
            if warning:
                console.print(warning, style="yellow", highlight=False)
        return wait_cluster(cluster, cluster.base.health_timeout_s, console)
    except (GlmkitError, KeyboardInterrupt):
        stop(cluster)
        raise
