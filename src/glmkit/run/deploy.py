"""From settings to a running, checked server: the sequences behind `render`, `up`,
`export`, `down` and `logs`, for one node or a cluster.

    settings + host facts + recipe book ─▶ a Deployment (ServePlan | ClusterPlan | PdPlan)
        ─▶ compose files ─▶ containers ─▶ health (run.lifecycle) ─▶ one real chat request
        with tools and reasoning
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from glmkit.errors import CheckFailed, GlmkitError, UsageError
from glmkit.files import atomic_write
from glmkit.host.credentials import container_secrets, masked
from glmkit.host.facts import read_host_facts
from glmkit.host.hardware import Hardware
from glmkit.host.hub import check_access
from glmkit.host.nodes import Nodes, shown_engine
from glmkit.host.settings import Settings
from glmkit.knowledge.recipes import load_book
from glmkit.plan.deployment import AnyPlan, Deployment, plan_deployment
from glmkit.plan.parts import engines
from glmkit.plan.serve import ServePlan
from glmkit.process import stream
from glmkit.render import k8s
from glmkit.render.compose import write_compose_data
from glmkit.render.deployment import compose_files, manifests
from glmkit.run import engine, image_build, lifecycle
from glmkit.run.agents import AgentSetup, setups
from glmkit.run.tool_check import CaseResult, run_check

__all__ = ["Deployment", "plan_deployment"]


def plan_on_host(settings: Settings, hw: Hardware, env: Mapping[str, str]) -> AnyPlan:
    """The plan for this host: its facts read now, the recipe book loaded once."""
    return plan_deployment(settings, read_host_facts(settings, env, hw), load_book(env))


def plan_for_export(settings: Settings, hw: Hardware, env: Mapping[str, str]) -> AnyPlan:
    """The plan for another platform: only the facts that hold on any machine
    (`HostFacts.portable()`: no detected GPUs, group ids, completed download or owner)."""
    facts = read_host_facts(settings, env, hw).portable()
    return plan_deployment(settings, facts, load_book(env))


def render(deployment: Deployment, compose_dir: Path, *, check: bool = True) -> list[Path]:
    """Validated compose files: one per project (one, or one per machine of a cluster)."""
    return [write_compose_data(data, compose_dir, name, check=check)
            for name, data in compose_files(deployment).items()]


@dataclass(frozen=True)
class UpResult:
    plan: ServePlan
    seconds: float
    nodes: int
    readiness: list[CaseResult]  # the short tool-call check; empty when skipped
    keyed: bool = False  # the server wants an API key (VLLM_API_KEY)

    def agents(self) -> list[AgentSetup]:
        """How to point Claude Code and Codex at it (a cluster's API is its head's)."""
        return setups(self.plan.base_url, [self.plan.served_model_name, *self.plan.aliases],
                      self.keyed, self.plan.max_model_len)

    def check(self) -> None:
        if failed := [r for r in self.readiness if not r.ok]:
            raise CheckFailed(f"The server is up but its tool-call check failed: "
                              f"{failed[0].detail} (`invoke check` runs every case).")


def _prepare_here(deployment: Deployment, secrets: Mapping[str, str], root: Path,
                  console: Console, env: Mapping[str, str]) -> None:
    """Cheap checks first (devices, runtime, port, Hub access), then images and weights,
    for every model it serves (a model group's members each)."""
    engine.preflight(deployment.serving, engine.client())
    for plan in deployment.served():
        if plan.model.local_dir is None and "HF_HUB_OFFLINE" not in plan.environment:
            check_access(plan.model.id, secrets.get("HF_TOKEN"))
    for plan in deployment.served():
        image_build.ensure_images(plan.image, plan.model_dir, plan.facts.tiny, root, console,
                                  env)
    for image in deployment.overlay_images:
        if image.source == "build":  # rebuilt whenever its recipe changed, else skipped
            image_build.build_image(image, root, console, env)
    for plan in deployment.served():
        engine.check_model_dir(plan)


def up(deployment: Deployment, api_key: str | None, compose_dir: Path, root: Path,
       console: Console, env: Mapping[str, str], *, smoke: bool = True) -> UpResult:
    """Start a server, cluster or pd_cluster, wait until it serves, then one real chat
    check. No error it raises carries the token's or the API key's value."""
    plan = deployment.serving
    secrets = container_secrets(env, plan.host, api_key)
    if "VLLM_API_KEY" not in secrets and (exposed := deployment.exposed()):
        # The router may bind loopback while the pools listen on their nodes' addresses.
        where = ", ".join(f"{service} on {host}" for service, host in exposed)
        raise UsageError(f"{plan.strategy}'s pools listen beyond loopback ({where}): set an "
                         "API key (VLLM_API_KEY in the environment, or --api-key-file FILE).")
    with masked(secrets.values()):
        return _up(deployment, secrets, compose_dir, root, console, env, smoke)


def _up(deployment: Deployment, secrets: Mapping[str, str], compose_dir: Path, root: Path,
        console: Console, env: Mapping[str, str], smoke: bool) -> UpResult:
    plan = deployment.serving
    if deployment.local:
        # Real machines each pull their image and read their own HF cache.
        _prepare_here(deployment, secrets, root, console, env)
    paths = render(deployment, compose_dir)
    console.print(f"Starting [bold]{escape(plan.model.id)}[/bold] on {plan.vendor.name} "
                  f"({escape(plan.image.ref)}) from {escape(', '.join(map(str, paths)))}",
                  highlight=False)
    for line in deployment.describe():
        console.print(line, highlight=False, markup=False)
    if recipients := secret_recipients(deployment, secrets, env):
        console.print(recipients, highlight=False, markup=False)
    seconds = lifecycle.start(deployment, paths, secrets, console, env)
    readiness: list[CaseResult] = []
    # The API of real machines is theirs to reach; a model without GLM's parsers has no
    # tool calls to check.
    if smoke and deployment.local and plan.model.tool_parser and plan.model.reasoning_parser:
        readiness = run_check(plan.base_url, plan.served_model_name,
                              secrets.get("VLLM_API_KEY"), exact=False, quick=True)
    return UpResult(plan, seconds, deployment.node_count, readiness,
                    keyed="VLLM_API_KEY" in secrets)


def secret_recipients(deployment: Deployment, secrets: Mapping[str, str],
                      env: Mapping[str, str]) -> str | None:
    """The line `up` prints before secrets leave this machine: which secrets (by name, never
    a value) go to which engines; None when there are none, or every engine is this
    machine's own socket."""
    names = sorted({*secrets,
                    *([deployment.shared_secret] if deployment.shared_secret else [])})
    # This machine's engine, unless DOCKER_HOST points elsewhere.
    here = env.get("DOCKER_HOST") or ""
    here = "" if here.startswith("unix://") else here
    hosts: list[str] = list(dict.fromkeys(shown_engine(docker_host or here)
                               for _, docker_host in engines(deployment.parts())))
    if not names or not any(hosts):
        return None
    return (f"Sending {', '.join(names)} to {len(hosts)} Docker engine(s): "
            + ", ".join(h or "this machine's" for h in hosts))


def engines_of(project: str, nodes: Nodes | None) -> list[tuple[str, str | None]]:
    """(compose project, DOCKER_HOST) per engine a deployment runs on: this machine's one
    project, or one project per machine of a cluster on real nodes."""
    if not nodes or not nodes.machines:
        return [(project, None)]
    return [(f"{project}-{node.name}", node.docker_host) for node in nodes.machines]


def down(project: str, nodes: Nodes | None) -> list[tuple[str, bool]]:
    """(project, whether something was running) for each engine, after `compose down`."""
    return [(name, engine.down(name, docker_host)) for name, docker_host in
            engines_of(project, nodes)]


def show_logs(project: str, nodes: Nodes | None, *, follow: bool, tail: int) -> None:
    """`compose logs` of each engine, to the terminal; following only when there is one.
    Nothing there (no container, running or stopped) is an error, not an empty success."""
    targets = [(name, docker_host) for name, docker_host in engines_of(project, nodes)
               if engine.project_containers(engine.client(docker_host), name)]
    if not targets:
        raise UsageError(f"Nothing is running in project {project!r}: no glmkit container, "
                         "running or stopped, to show logs of. `invoke status` lists servers; "
                         "pass --project NAME for another.")
    for name, docker_host in targets:
        argv = engine.compose_cmd(name, None, "logs", "--tail", str(tail))
        # Following several machines at once would interleave without end: follow one.
        stream(argv + (["--follow"] if follow and len(targets) == 1 else []),
               env=engine.compose_env(docker_host), check=False)


def statuses(project: str | None, nodes: Nodes | None) -> list[engine.ServerStatus]:
    """Every glmkit server here, or with --nodes each machine's containers of a project."""
    if not nodes or not nodes.machines:
        return engine.server_statuses(engine.client())
    rows = []
    for _, docker_host in engines_of(project or "glmkit", nodes):
        try:
            rows += engine.server_statuses(engine.client(docker_host), project)
        except GlmkitError as err:
            rows.append(engine.ServerStatus(
                project=project or "glmkit", node=docker_host or "-", model="-", vendor="-",
                url="-", state="unreachable", api=str(err)[:80], docker_health="-",
                restarts=0, image="-"))
    return rows


@dataclass(frozen=True)
class Export:
    path: Path
    kinds: list[str]
    validation: str


def export_k8s(deployment: Deployment, compose_dir: Path) -> Export:
    """Kubernetes manifests for a host-independent plan, validated when the schemas are
    installed, written atomically beside the compose files."""
    found = manifests(deployment)
    validation = k8s.validate(found)
    path = atomic_write(compose_dir / f"{deployment.serving.project}.k8s.yaml",
                        k8s.dump(found))
    return Export(path, [m["kind"] for m in found], validation)
