"""Container lifecycle: pre-flight checks, compose up, wait for health, logs, status, down.

How glmkit touches Docker, one path per job: the Compose v2 CLI starts and stops
projects; the Docker SDK reads container state, health and logs (this machine's engine,
or a node's through its DOCKER_HOST); `docker exec` runs commands inside a container
(bench, in-container probes), since it streams their output.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.client import DockerClient
from docker.errors import DockerException, NotFound
from docker.utils import kwargs_from_env
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from glmkit.endpoints import api_ready, published_url
from glmkit.errors import CommandFailed, EnvironmentProblem, ServerFailed, UsageError
from glmkit.host.hardware import gpu_runtime_registered
from glmkit.host.nodes import tls_refusal
from glmkit.labels import MANAGED, label_key
from glmkit.plan.serve import ServePlan
from glmkit.process import child_env, run
from glmkit.render.compose import SERVICE
from glmkit.run.group_state import member_states

LOG_TAIL_LINES = 40


def client(docker_host: str | None = None) -> DockerClient:
    """This machine's engine (DOCKER_HOST or the default socket), or a node's engine."""
    try:
        if docker_host and docker_host.lower().startswith("tcp://"):
            # TLS verified as the docker CLI does it (host.nodes.tls_refusal): the SDK
            # reads the same DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
            _refuse_plain_tcp(docker_host)
            c = DockerClient(**kwargs_from_env({**os.environ, "DOCKER_HOST": docker_host}),
                             timeout=30)
        elif docker_host:
            c = DockerClient(base_url=docker_host, timeout=30,
                             use_ssh_client=docker_host.startswith("ssh://"))
        else:
            c = DockerClient.from_env(timeout=30)
        c.ping()
    except DockerException as err:
        where = f" on {docker_host}" if docker_host else ""
        raise EnvironmentProblem(
            f"The Docker engine{where} is not reachable ({err.__class__.__name__}). Start "
            "Docker (`sudo systemctl start docker`) or set DOCKER_HOST, then retry.") from None
    return c


def _refuse_plain_tcp(docker_host: str) -> None:
    if why := tls_refusal(docker_host, os.environ):
        raise UsageError(f"The Docker engine {why}")


def compose_env(docker_host: str | None = None, secrets: Mapping[str, str] | None = None
                ) -> dict[str, str]:
    """The environment of a `docker compose` call: which engine, and secrets by value. A
    node's engine over TCP only with TLS verified: the secrets travel in the request that
    creates each container."""
    if docker_host:
        _refuse_plain_tcp(docker_host)
    return child_env({**({"DOCKER_HOST": docker_host} if docker_host else {}),
                      **(secrets or {})})


def compose_cmd(project: str, compose_file: Path | None, *args: str) -> list[str]:
    argv = ["docker", "compose", "-p", project]
    if compose_file is not None:
        argv += ["-f", str(compose_file)]
    return argv + list(args)


def require_compose_v2() -> None:
    try:
        run(["docker", "compose", "version", "--short"])
    except CommandFailed:
        raise EnvironmentProblem(
            "Docker Compose v2 is missing (`docker compose version` fails). Install the "
            "docker-compose-plugin package, or run scripts/install-docker.sh.") from None


def project_containers(c: DockerClient, project: str) -> list[Any]:
    """Every container glmkit started in a compose project, running or stopped."""
    found: list[Any] = c.containers.list(all=True, ignore_removed=True, filters={"label": [
        f"com.docker.compose.project={project}", f"{MANAGED}=true"]})
    return found


def find_container(c: DockerClient, project: str) -> Any | None:
    """The serving container of a project: its one `vllm` service, a cluster's head, a
    pd_cluster's router, or a model group's door."""
    for container in project_containers(c, project):
        labels = container.labels
        if labels.get("com.docker.compose.service") == SERVICE or \
                labels.get(label_key("node_rank")) == "0" or \
                labels.get(label_key("role")) in ("router", "door"):
            return container
    return None


def log_tail(container: Any, lines: int = LOG_TAIL_LINES) -> str:
    try:
        raw: bytes = container.logs(tail=lines)
    except (DockerException, NotFound):
        return "(no logs: the container is gone)"
    return raw.decode(errors="replace").rstrip()


def port_free(host: str, port: int) -> bool:
    """Whether `host:port` can be bound here; an address this machine does not have is an
    error, not a free port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            reason = err.strerror or str(err)
        except OverflowError as err:  # a port above 65535
            reason = str(err)
        else:
            return True
    raise EnvironmentProblem(f"Cannot publish on {host}:{port} ({reason}). Pass --host "
                             "127.0.0.1, 0.0.0.0 or an address of this machine, and --port "
                             "1024-65535.")


def preflight(plan: ServePlan, c: DockerClient) -> None:
    """Everything that would make `up` fail late, checked before anything starts."""
    require_compose_v2()
    for dev in plan.vendor.devices:
        if not Path(dev).exists():
            raise EnvironmentProblem(
                f"{dev} is missing: no {plan.vendor.driver} on this host. Install it, or "
                "choose another --vendor.")
    if plan.vendor.gpu_reservation and \
            not gpu_runtime_registered(plan.vendor, c.info().get("Runtimes") or {}):
        raise EnvironmentProblem(
            "Docker has no NVIDIA runtime (`docker info` lists none). Install the NVIDIA "
            "Container Toolkit and run `sudo nvidia-ctk runtime configure --runtime=docker`"
            ", then restart Docker.")
    ours = find_container(c, plan.project)
    ours_running = ours is not None and ours.status == "running"
    if not ours_running and not port_free(plan.host, plan.port):
        raise EnvironmentProblem(
            f"Port {plan.port} on {plan.host} is in use. Pass --port N, or stop what listens "
            f"there (`ss -ltnp 'sport = :{plan.port}'`).")
    for mount in plan.mounts:
        if mount.kind == "bind" and not mount.read_only:
            Path(mount.source).mkdir(parents=True, exist_ok=True)


def check_model_dir(plan: ServePlan) -> None:
    if plan.model_dir is not None and not (plan.model_dir / "config.json").is_file():
        raise EnvironmentProblem(f"Model folder {plan.model_dir} has no config.json. For the "
                                 "tiny model run `invoke tiny-model`.")


@dataclass(frozen=True)
class Health:
    state: str  # running, exited, restarting, gone, ...
    healthy: bool
    exit_code: int | None
    restarts: int


def probe(container: Any, base_url: str, timeout_s: float = 3) -> Health:
    try:
        container.reload()
    except NotFound:  # removed entirely
        return Health(state="gone", healthy=False, exit_code=None, restarts=0)
    state = container.attrs.get("State", {})
    status = state.get("Status", "unknown")
    return Health(state=status, healthy=status == "running" and api_ready(base_url, timeout_s),
                  exit_code=state.get("ExitCode") if status != "running" else None,
                  restarts=int(container.attrs.get("RestartCount") or 0))


def wait_until(poll: Callable[[], str | None], timeout_s: float, console: Console,
               what: str, on_timeout: Callable[[], ServerFailed], poll_s: float = 0.5
               ) -> float:
    """The one wait loop (run.lifecycle's): `poll` returns None when ready, a progress
    hint while not, or raises when it never will be. Returns the seconds waited."""
    started = time.monotonic()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"waiting for {escape(what)}")
        while (hint := poll()) is not None:
            if time.monotonic() - started > timeout_s:
                raise on_timeout()
            # The hint is the container's last log line: shown as text, never as markup.
            progress.update(task, description=f"waiting for {escape(what)} "
                            f"[dim]{escape(hint[:90])}[/dim]")
            time.sleep(poll_s)
    return time.monotonic() - started


def down(project: str, docker_host: str | None = None) -> bool:
    """Stop and remove a project's containers. False when there was nothing to remove."""
    had = find_container(client(docker_host), project) is not None
    run(compose_cmd(project, None, "down", "-t", "5", "--remove-orphans"),
        env=compose_env(docker_host))
    return had


def managed_containers(c: DockerClient) -> list[Any]:
    # ignore_removed: the SDK inspects each container listed, and one that another `down`
    # removed meanwhile raised NotFound (a traceback from `invoke status`).
    result: list[Any] = c.containers.list(all=True, ignore_removed=True,
                                          filters={"label": f"{MANAGED}=true"})
    return result


@dataclass(frozen=True)
class ServerStatus:
    project: str
    node: str
    model: str
    vendor: str
    url: str
    state: str
    api: str  # "ready" when /health answers 200 right now
    docker_health: str
    restarts: int
    image: str
    # What the image tag named when pulled (repository@sha256:…, or the local image id):
    # a moving tag (nightly) is known by this, not by its name.
    digest: str = "-"


def container_digest(ct: Any) -> str:
    """The repository digest of a container's image, else the image's local id."""
    try:
        attrs = ct.image.attrs
    except (DockerException, NotFound):
        return "-"
    digests = attrs.get("RepoDigests") or []
    return str(digests[0] if digests else attrs.get("Id") or "-")


def server_statuses(c: DockerClient, project: str | None = None) -> list[ServerStatus]:
    """Every glmkit container on an engine (or one project's), with its state, restarts
    and a live /health probe."""
    rows = []
    # Read label by label, not through ServerLabels.from_labels: status shows every
    # managed container, one an older glmkit labelled less too.
    containers = [ct for ct in managed_containers(c)
                  if project is None or ct.labels.get(label_key("project")) == project]
    down_by_project: dict[str, list[str]] = {}
    for ct in containers:
        if ct.status != "running":
            down_by_project.setdefault(ct.labels.get(label_key("project"), "?"), []).append(
                ct.labels.get(label_key("node"), ct.name))
    doors: dict[str, dict[str, str]] = {}  # a model group's project: each member's state
    for ct in containers:
        if ct.labels.get(label_key("role")) == "door" and ct.status == "running":
            doors[ct.labels.get(label_key("project"), "?")] = member_states(ct)
    for ct in containers:
        labels = ct.labels
        state = ct.attrs.get("State", {})
        url = published_url(ct.attrs.get("HostConfig", {}).get("PortBindings"))
        api = "-"
        project = labels.get(label_key("project"), "?")
        if state.get("Status") == "running" and url is None:
            api = "worker"
        elif state.get("Status") == "running" and url is not None:
            api = "ready" if api_ready(url) else "not ready"
        group = labels.get(label_key("role")) in ("door", "member")
        if state.get("Status") == "running" and down_by_project.get(project) and not group:
            # A head whose worker died still answers /health (measured: for minutes).
            api = f"DEGRADED: {', '.join(down_by_project[project])} down"
        if labels.get(label_key("role")) == "member":
            # Which member is awake, when each last switched, which crashed: the door's.
            api = doors.get(project, {}).get(labels.get(label_key("served_model"), ""),
                                             "door not answering") \
                if project in doors else "no door running"
            if state.get("Status") != "running":
                api = "CRASHED: the door answers 503 for it (`invoke logs`; `invoke down` " \
                    "then `invoke up` restarts the group)"
        rows.append(ServerStatus(
            project=project, node=labels.get(label_key("node"), "-"),
            model=labels.get(label_key("model"), "?"),
            vendor=labels.get(label_key("vendor"), "?"), url=url or "-",
            state=f"{state.get('Status', '?')}"
            + (f" (exit {state.get('ExitCode')})" if state.get("Status") == "exited" else ""),
            api=api, docker_health=state.get("Health", {}).get("Status", "-"),
            restarts=int(ct.attrs.get("RestartCount") or 0),
            image=labels.get(label_key("image"), "?"), digest=container_digest(ct)))
    return rows
