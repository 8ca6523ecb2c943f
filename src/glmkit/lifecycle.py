"""Container lifecycle: pre-flight checks, compose up, wait for health, logs, status, down.

Compose (the v2 CLI) starts and stops the stack; the Docker SDK reads container state,
health and logs.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from docker.client import DockerClient, from_env
from docker.errors import DockerException, NotFound
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from glmkit.compose import SERVICE
from glmkit.errors import CommandFailed, EnvironmentProblem, ServerFailed
from glmkit.hardware import nvidia_runtime_registered
from glmkit.plan import LABEL, ServePlan
from glmkit.process import run

LOG_TAIL_LINES = 40


def client() -> DockerClient:
    try:
        c = from_env(timeout=30)
        c.ping()
    except DockerException as err:
        raise EnvironmentProblem(
            f"The Docker engine is not reachable ({err.__class__.__name__}). Start Docker "
            "(`sudo systemctl start docker`) or set DOCKER_HOST, then retry.") from None
    return c


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


def find_container(c: DockerClient, project: str) -> Any | None:
    """The serving container of a project: its one `vllm` service, or a cluster's head."""
    found = c.containers.list(all=True, filters={"label": [
        f"com.docker.compose.project={project}", f"{LABEL}.managed=true"]})
    for container in found:
        labels = container.labels
        if labels.get("com.docker.compose.service") == SERVICE or \
                labels.get(f"{LABEL}.node-rank") == "0":
            return container
    return None


def log_tail(container: Any, lines: int = LOG_TAIL_LINES) -> str:
    try:
        raw: bytes = container.logs(tail=lines)
    except (DockerException, NotFound):
        return "(no logs: the container is gone)"
    return raw.decode(errors="replace").rstrip()


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as err:
            return err.errno not in (errno.EADDRINUSE, errno.EACCES)
    return True


def preflight(plan: ServePlan, c: DockerClient) -> None:
    """Everything that would make `up` fail late, checked before anything starts."""
    require_compose_v2()
    if plan.vendor.name == "rocm":
        for dev in ("/dev/kfd", "/dev/dri"):
            if not Path(dev).exists():
                raise EnvironmentProblem(
                    f"{dev} is missing: no AMD GPU driver (amdgpu/ROCm) on this host. Install "
                    "ROCm's kernel driver, or use --vendor cuda/cpu.")
    if plan.vendor.gpu_reservation and \
            not nvidia_runtime_registered(c.info().get("Runtimes") or {}):
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


# Errors Docker gives at container start on hosts without the device, and what to do.
_START_ERRORS = {
    "could not select device driver": "Docker cannot reach NVIDIA GPUs: install the NVIDIA "
    "Container Toolkit (nvidia-ctk runtime configure --runtime=docker) and restart Docker.",
    "/dev/kfd": "No /dev/kfd on this host: the AMD GPU driver (ROCm) is not loaded.",
    "port is already allocated": "The port is taken by another container: pass --port N.",
    "address already in use": "The port is in use: pass --port N.",
}


def start(plan: ServePlan, compose_file: Path, env: Mapping[str, str]) -> None:
    """`docker compose up -d`; on failure, remove what was created and explain."""
    argv = compose_cmd(plan.project, compose_file, "up", "-d", "--remove-orphans")
    try:
        run(argv, env=env)
    except CommandFailed as err:
        with contextlib.suppress(CommandFailed):
            run(compose_cmd(plan.project, compose_file, "down", "-t", "2"), env=env)
        text = err.stderr + err.stdout
        for needle, advice in _START_ERRORS.items():
            if needle in text:
                raise EnvironmentProblem(f"The container could not start: {advice}") from None
        raise


@dataclass(frozen=True)
class Health:
    state: str  # running, exited, ...
    healthy: bool
    exit_code: int | None


def probe(container: Any, base_url: str, timeout_s: float = 3) -> Health:
    try:
        container.reload()
    except NotFound:  # removed entirely
        return Health(state="gone", healthy=False, exit_code=None)
    state = container.attrs.get("State", {})
    healthy = False
    if state.get("Status") == "running":
        try:
            healthy = requests.get(f"{base_url}/health", timeout=timeout_s).status_code == 200
        except requests.RequestException:
            healthy = False
    exit_code = state.get("ExitCode") if state.get("Status") != "running" else None
    return Health(state=state.get("Status", "unknown"), healthy=healthy, exit_code=exit_code)


def wait_healthy(plan: ServePlan, c: DockerClient, console: Console,
                 timeout_s: float | None = None, poll_s: float = 0.5) -> float:
    """Wait for /health; stop at once if the container dies. Returns seconds waited."""
    timeout_s = timeout_s or plan.health_timeout_s
    container = find_container(c, plan.project)
    if container is None:
        raise ServerFailed("The vLLM container was not created.")
    started = time.monotonic()
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=console, transient=True)
    with progress:
        task = progress.add_task(f"waiting for {plan.model.id} on {plan.base_url}")
        while True:
            health = probe(container, plan.base_url)
            if health.healthy:
                return time.monotonic() - started
            if health.state in ("exited", "dead", "gone"):
                raise ServerFailed(
                    f"The vLLM container exited with code {health.exit_code} before it became "
                    "healthy. Its last log lines are above; fix the cause and run `invoke up` "
                    "again.", log_tail(container))
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                raise ServerFailed(
                    f"vLLM was not healthy after {timeout_s:.0f} s (it is still running: "
                    "`invoke logs -f`). Large models take long to load: pass "
                    "--health-timeout, or `invoke down` to stop it.", log_tail(container))
            last = log_tail(container, 1).splitlines()
            hint = last[-1][:90] if last else ""
            progress.update(task, description=f"waiting for {plan.model.id} "
                            f"[dim]{hint}[/dim]")
            time.sleep(poll_s)


def down(project: str, compose_file: Path | None) -> bool:
    """Stop and remove the stack. Returns False when there was nothing to remove."""
    c = client()
    had = find_container(c, project) is not None
    file = compose_file if compose_file is not None and compose_file.exists() else None
    run(compose_cmd(project, file, "down", "-t", "5", "--remove-orphans"))
    return had


def managed_containers(c: DockerClient) -> list[Any]:
    result: list[Any] = c.containers.list(all=True, filters={"label": f"{LABEL}.managed=true"})
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
    image: str


def server_statuses(c: DockerClient) -> list[ServerStatus]:
    """Every glmkit container here, with its state and a live /health probe."""
    rows = []
    containers = managed_containers(c)
    down_by_project: dict[str, list[str]] = {}
    for ct in containers:
        if ct.status != "running":
            down_by_project.setdefault(ct.labels.get(f"{LABEL}.project", "?"), []).append(
                ct.labels.get(f"{LABEL}.node", ct.name))
    for ct in containers:
        labels = ct.labels
        state = ct.attrs.get("State", {})
        bindings = ct.attrs.get("HostConfig", {}).get("PortBindings") or {}
        binding: dict[str, str] = next(iter(bindings.values()), [{}])[0]
        host = binding.get("HostIp") or "0.0.0.0"
        url = f"http://{host}:{binding.get('HostPort', '?')}"
        api = "-"
        project = labels.get(f"{LABEL}.project", "?")
        if state.get("Status") == "running" and not bindings:
            api = "worker"
        elif state.get("Status") == "running":
            probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
            try:
                ok = requests.get(f"http://{probe_host}:{binding.get('HostPort')}/health",
                                  timeout=3).status_code == 200
            except requests.RequestException:
                ok = False
            api = "ready" if ok else "not ready"
        if state.get("Status") == "running" and down_by_project.get(project):
            # A head whose worker died still answers /health (measured: for minutes).
            api = f"DEGRADED: {', '.join(down_by_project[project])} down"
        rows.append(ServerStatus(
            project=project, node=labels.get(f"{LABEL}.node", "-"),
            model=labels.get(f"{LABEL}.model", "?"),
            vendor=labels.get(f"{LABEL}.vendor", "?"), url=url,
            state=f"{state.get('Status', '?')}"
            + (f" (exit {state.get('ExitCode')})" if state.get("Status") == "exited" else ""),
            api=api, docker_health=state.get("Health", {}).get("Status", "-"),
            image=labels.get(f"{LABEL}.image", "?")))
    return rows
