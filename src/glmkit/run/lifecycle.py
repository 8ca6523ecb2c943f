"""The one lifecycle of every deployment (one server, a cluster, pd_cluster pools): start
its parts, poll them until the whole group serves, stop it on failure or Ctrl-C.

The deployment says what its parts are and how each is probed (`plan.deployment`); this
module never asks which kind it is. A part's container is read through its own engine
(the Docker SDK, DOCKER_HOST for real machines); a probe runs inside the container with
`docker exec`, at the address the server binds.
"""

from __future__ import annotations

import contextlib
import secrets as random_secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from glmkit.endpoints import IN_CONTAINER_PROBE, api_ready
from glmkit.errors import CommandFailed, EnvironmentProblem, GlmkitError, ServerFailed
from glmkit.plan.deployment import Deployment
from glmkit.plan.parts import Part, engines
from glmkit.process import run
from glmkit.run import ray
from glmkit.run.engine import client, compose_cmd, compose_env, log_tail, wait_until

# A part in one of these states before its deployment was healthy will not become so by
# waiting: the one list, for every kind.
TERMINAL_STATES = ("exited", "dead", "missing", "restarting")
PROBE_TIMEOUT_S = 120


@dataclass(frozen=True)
class PartState:
    part: Part
    container: Any  # the SDK's container, None when missing
    state: str
    exit_code: int
    restarts: int

    @property
    def name(self) -> str:
        return str(self.container.name) if self.container is not None else "-"

    def log(self, lines: int | None = None) -> str:
        if self.container is None:
            return ""
        return log_tail(self.container) if lines is None else log_tail(self.container, lines)


def part_states(deployment: Deployment) -> list[PartState]:
    """Every part's container, read from its engine by the compose project's labels; an
    engine that cannot be reached leaves its parts missing."""
    found: dict[tuple[str, str], Any] = {}
    parts = deployment.parts()
    for project, docker_host in engines(parts):
        try:
            docker = client(docker_host)
        except EnvironmentProblem:
            continue
        label = f"com.docker.compose.project={project}"
        for ct in docker.containers.list(all=True, ignore_removed=True,
                                         filters={"label": label}):
            found[(project, ct.labels.get("com.docker.compose.service", ""))] = ct
    states = []
    for part in parts:
        ct = found.get((part.project, part.service))
        state = ct.attrs.get("State", {}) if ct is not None else {}
        states.append(PartState(part, ct, state.get("Status", "unknown") if ct else "missing",
                                int(state.get("ExitCode") or 0) if ct else -1,
                                int(ct.attrs.get("RestartCount") or 0) if ct else 0))
    return states


def probe(deployment: Deployment, state: PartState, staged: bool = False) -> bool:
    """The part's probe inside its container: /health and one real request, at the
    address its server binds; in a start in stages, asleep where the part must be (a model
    group's member, before the next starts)."""
    assert state.part.probe is not None
    where = state.part.probe
    argv = ["docker", "exec", "-e", f"GLMKIT_PORT={where.port}", "-e", f"GLMKIT_HOST={where.host}",
            "-e", f"GLMKIT_MODEL={deployment.serving.served_model_name}",
            "-e", f"GLMKIT_REQUEST={'1' if where.request else '0'}",
            "-e", f"GLMKIT_ASLEEP={'1' if where.asleep and staged else '0'}", state.name,
            "python3", "-c", IN_CONTAINER_PROBE]
    return run(argv, env=compose_env(state.part.docker_host), check=False,
               timeout=PROBE_TIMEOUT_S).returncode == 0


def _failed(state: PartState) -> ServerFailed:
    how = {"exited": f"exited with code {state.exit_code}",
           "restarting": f"exited with code {state.exit_code} and is restarting",
           "missing": "is missing (not created, or its engine is unreachable)",
           "dead": "is dead"}.get(
               # Running again: Docker restarted it, and a running container's code is 0.
               state.state, f"exited with code {state.exit_code or 'unknown'} and was "
               "restarted")
    return ServerFailed(f"{state.part.label} {how} before it became healthy. Its last log "
                        "lines are above; fix the cause and run `invoke up` again.",
                        state.log())


def wait(deployment: Deployment, console: Console, timeout_s: float | None = None,
         only: frozenset[str] | None = None) -> float:
    """Until every part runs, every probe passed once and the API answers; at once on a
    part that died or restarted. Returns the seconds waited. With `only`, those parts
    (services) alone, and not the API: one stage of a start in stages."""
    timeout_s = timeout_s or deployment.serving.health_timeout_s
    parts = tuple(p for p in deployment.parts() if only is None or p.service in only)
    probed: set[str] = set()
    last: list[PartState] = []

    def poll() -> str | None:
        states = [s for s in part_states(deployment) if only is None or s.part.service in only]
        last[:] = states
        if dead := [s for s in states if s.state in TERMINAL_STATES]:
            raise _failed(dead[0])
        for state in states:
            if state.part.probe and state.part.service not in probed and \
                    state.state == "running" and probe(deployment, state, only is not None):
                probed.add(state.part.service)
        if all(s.state == "running" for s in states) and \
                probed >= {p.service for p in parts if p.probe} and \
                (only is not None or deployment.api_probe_url is None
                 or api_ready(deployment.api_probe_url)):
            return None
        if restarted := [s for s in states if s.restarts]:
            raise _failed(restarted[0])
        if len(states) == 1:  # one server: its last log line says what it does
            tail = states[0].log(1).splitlines()
            return tail[-1] if tail else ""
        return ", ".join(f"{s.part.service}: {s.state}" for s in states
                         if s.state != "running" or s.part.service not in probed)

    def timed_out() -> ServerFailed:
        slow = next((s for s in last if s.part.probe is None or
                     s.part.service not in probed), last[0] if last else None)
        return ServerFailed(
            f"{deployment.serving.model.id} was not healthy after {timeout_s:.0f} s, so it "
            "was stopped. Large models take long to load: pass --health-timeout "
            "(`invoke logs` shows what it did).", slow.log() if slow else "")

    what = ", ".join(p.label for p in parts) if only is not None else \
        f"{deployment.serving.model.id} on {deployment.serving.base_url}" \
        if len(parts) == 1 else f"{len(parts)} parts: " + ", ".join(p.service for p in parts)
    return wait_until(poll, timeout_s, console, what, timed_out,
                      poll_s=0.5 if len(parts) == 1 else 1.0)


def refuse_broken(deployment: Deployment) -> None:
    """vLLM cannot take a node back into a running group: a half-dead cluster must be
    restarted as a whole, never patched by starting the dead node alone."""
    states = part_states(deployment)
    running = [s for s in states if s.state == "running"]
    dead = [s for s in states if s.state in ("exited", "dead")]
    if running and dead:
        project = deployment.serving.project
        names = ", ".join(f"{s.part.service} (exit {s.exit_code})" for s in dead)
        raise EnvironmentProblem(
            f"The deployment {project} is broken: {names} stopped while "
            f"{', '.join(s.part.service for s in running)} still run. A stopped part cannot "
            "rejoin the running ones (vLLM's nodes; a model group's members on GPUs, where "
            f"the awake one holds the memory); restart it whole: `invoke down --project "
            f"{project}` then `invoke up` again.")


def shared_value(deployment: Deployment, name: str, env: Mapping[str, str]) -> str:
    """The secret every part shares: the user's, else the running first part's (a second
    `up` must not re-form a running group), else a new random one. It lives in the
    containers' environment, as HF_TOKEN does."""
    if env.get(name):
        return env[name]
    first = part_states(deployment)[0].container
    if first is not None:
        for item in first.attrs.get("Config", {}).get("Env") or []:
            key, _, value = str(item).partition("=")
            if key == name and value:
                return value
    return random_secrets.token_hex(32)


def start_secrets(deployment: Deployment, secrets: Mapping[str, str],
                  env: Mapping[str, str]) -> dict[str, str]:
    """The environment of `docker compose up`: the secrets and the deployment's shared
    secret."""
    out = dict(secrets)
    if deployment.shared_secret:
        out[deployment.shared_secret] = shared_value(deployment, deployment.shared_secret, env)
    return out


# Errors Docker gives at container start on hosts without the device, and what to do.
_START_ERRORS = {
    "could not select device driver": "Docker cannot reach NVIDIA GPUs: install the NVIDIA "
    "Container Toolkit (nvidia-ctk runtime configure --runtime=docker) and restart Docker.",
    "/dev/kfd": "No /dev/kfd on this host: the AMD GPU driver (ROCm) is not loaded.",
    "port is already allocated": "The port is taken by another container: pass --port N.",
    "address already in use": "The port is in use: pass --port N.",
}


def _compose_up(project: str, path: Path, env: Mapping[str, str],
                services: tuple[str, ...] = ()) -> None:
    """`compose up -d` of the file, or of these services alone (a stage)."""
    only = ("--no-deps", *services) if services else ()
    try:
        run(compose_cmd(project, path, "up", "-d", "--remove-orphans", *only), env=env)
    except CommandFailed as err:
        text = err.stderr + err.stdout
        for needle, advice in _START_ERRORS.items():
            if needle in text:
                raise EnvironmentProblem(f"The container could not start: {advice}") from None
        raise


def stop(deployment: Deployment, *, keep: bool = False) -> list[str]:
    """Every engine's project stopped (`keep`: containers and logs kept) or removed; the
    projects it reached."""
    stopped = []
    for project, docker_host in engines(deployment.parts()):
        args = ("stop", "-t", "5") if keep else ("down", "-t", "5", "--remove-orphans")
        with contextlib.suppress(CommandFailed):
            run(compose_cmd(project, None, *args), env=compose_env(docker_host))
            stopped.append(project)
    return stopped


def start(deployment: Deployment, files: list[Path], secrets: Mapping[str, str],
          console: Console, env: Mapping[str, str]) -> float:
    """Start every part, then wait for the group; on any failure or Ctrl-C, stop what was
    started, so nothing half-started keeps running. Returns the seconds waited."""
    if not deployment.rejoins:
        refuse_broken(deployment)
    compose_secrets = start_secrets(deployment, secrets, env)
    created = False
    try:
        if stages := deployment.stages():
            created = True  # a failed stage's containers are kept for their logs
            return _start_in_stages(deployment, files, compose_secrets, stages, console)
        for (project, docker_host), path in zip(engines(deployment.parts()), files,
                                                strict=True):
            _compose_up(project, path, compose_env(docker_host, compose_secrets))
        created = True
        if deployment.head_command:
            head = part_states(deployment)[0]
            ray.serve_once_formed(head.name, head.part.docker_host, deployment.node_count,
                                  deployment.head_command)
            if not deployment.local and (warning := ray.auth_warning(
                    head.name, head.part.docker_host, deployment.serving.image.ref)):
                console.print(warning, style="yellow", highlight=False)
        return wait(deployment, console)
    except (GlmkitError, KeyboardInterrupt):
        # A server that cannot start would crash-loop under a restart policy: stop it.
        stop(deployment, keep=created and deployment.keep_on_failure)
        raise


def _start_in_stages(deployment: Deployment, files: list[Path], secrets: Mapping[str, str],
                     stages: tuple[tuple[str, ...], ...], console: Console) -> float:
    """One engine's file, its services started stage by stage, each stage's probes passed
    before the next starts (a model group: the door, then each member once the one before
    is asleep), then the whole deployment waited for. Returns the seconds waited."""
    ((project, docker_host),) = engines(deployment.parts())
    env = compose_env(docker_host, secrets)
    started = time.monotonic()
    for services in stages:
        # Already running (a second `up`): nothing of the stage starts, nothing to wait for
        # (a member the door has woken since is awake, not asleep).
        running = {s.part.service for s in part_states(deployment) if s.state == "running"}
        _compose_up(project, files[0], env, services)
        if set(services) <= running:
            continue
        timeout = max((p.timeout_s or 0 for p in deployment.parts() if p.service in services),
                      default=0) or None
        wait(deployment, console, timeout, only=frozenset(services))
    wait(deployment, console)
    return time.monotonic() - started

