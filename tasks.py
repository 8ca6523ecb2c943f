"""glmkit tasks: serve and benchmark GLM models with vLLM in containers.

Each task parses its options, resolves settings, calls the library and turns a
`GlmkitError` into a one-line message and an exit code. Imports of the library happen
inside the tasks so `invoke --list` stays instant.
"""

from __future__ import annotations

import functools
import inspect
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Context, Exit, task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

COMPOSE_DIR = ROOT / "compose"
RESULTS_DIR = ROOT / "results"

# Options shared by `render` and `up`; each maps to a glmkit.settings.Settings field.
SERVE_HELP = {
    "vendor": "cuda (nvidia), rocm (amd) or cpu; default: what this machine has",
    "model": "catalog id (`invoke models`), HF repo id or model folder; default glmkit/glm-tiny",
    "image": "image to run instead of the vendor's pinned one",
    "vllm_version": "vLLM version inside --image, so the rendered flags match it",
    "project": "compose project name (default glmkit)",
    "host": "address the port is published on (default 127.0.0.1)",
    "port": "host port (default 8000)",
    "tp": "tensor-parallel size (default: the catalog's for the model)",
    "dp": "data-parallel size (default 1)",
    "gpus": "GPU indexes, e.g. 0,1,2,3 (default: all)",
    "gpu_memory_utilization": "fraction of GPU memory for vLLM (default 0.9)",
    "max_model_len": "context length (default 65536, capped at the model's limit)",
    "max_num_batched_tokens": "vLLM --max-num-batched-tokens",
    "mtp": "MTP speculative decoding (GLM-4.5/4.6/4.7 text models)",
    "mtp_tokens": "MTP draft tokens (default: the recipe's: 1 for GLM-4.x, 3 for 5/5.1, 5 for 5.2)",
    "gpu": "plan for this GPU instead of the detected one: h100, h200, b200, b300, mi300x, "
           "mi325x, mi355x, or any name with --gpu-mem",
    "gpu_count": "GPUs per node to plan for (default: detected, else the GPU's 8-GPU node)",
    "gpu_mem": "GB per GPU, for a --gpu the recipes' hardware list lacks",
    "strategy": "the recipes' strategy: single_node_tp (default), single_node_tep, "
                "single_node_dep, multi_node_tp, multi_node_tp_pp, multi_node_tep, multi_node_dep",
    "cuda12": "use vLLM's CUDA 12 (-cu129) images; automatic with an NVIDIA driver below 580",
    "bench_mode": "serve with --no-enable-prefix-caching, as the recipes benchmark",
    "privileged": "ROCm: the seed's full docker run options (privileged, /dev/mem, SYS_ADMIN)",
    "enforce_eager": "skip torch.compile and graph capture (faster start, slower serving)",
    "media_dir": "V models: host folder served read-only as local media",
    "hf_cache": "host Hugging Face cache (default $HF_HOME or ~/.cache/huggingface)",
    "health_timeout": "seconds to wait for /health (default sized to the model)",
    "nodes": "several machines: 2 (simulated on this engine) or head=ssh://h1,w1=ssh://h2",
    "engine": "multi-node engine: mp (vLLM native, default), dp (data parallel) or ray",
    "pp": "pipeline-parallel size across nodes (default: nodes × GPUs per node / TP)",
    "gpus_per_node": "GPUs each node gives (default: detected, or 1 on cpu)",
    "ifname": "network interface for gloo/NCCL between nodes",
    "rdma": "pass /dev/infiniband to the nodes (RDMA fabrics)",
}
BOOL_OPTIONS = {"mtp", "bench_mode", "privileged", "enforce_eager", "rdma", "cuda12"}


def _fail(err: Exception) -> Exit:
    from rich.console import Console

    from glmkit.errors import GlmkitError, ServerFailed

    assert isinstance(err, GlmkitError)
    console = Console(stderr=True)
    if isinstance(err, ServerFailed) and err.log_tail:
        console.rule("container log (last lines)")
        console.print(err.log_tail, markup=False, highlight=False)
        console.rule()
    console.print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True)
    return Exit(code=err.exit_code)


def _exits(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map the library's errors to Exit; anything else keeps its traceback (a bug)."""

    @functools.wraps(fn)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> Any:
        from glmkit.errors import GlmkitError

        try:
            return fn(c, *args, **kwargs)
        except GlmkitError as err:
            raise _fail(err) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


def _serve_task(fn: Callable[..., Any]) -> Any:
    """A task that takes every serve option; extra vLLM flags go after `--`."""
    own = [p for p in inspect.signature(fn).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=False if name in BOOL_OPTIONS else None)
              for name in SERVE_HELP]
    wrapped = _exits(fn)
    wrapped.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    return task(wrapped, help=dict(SERVE_HELP), auto_shortflags=False)


def _settings(c: Context, options: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    from glmkit.settings import resolve_settings

    flags = {name: (None if value is False else value) for name, value in options.items()
             if name in SERVE_HELP}
    remainder = getattr(c, "remainder", "") or ""
    if remainder.strip():
        flags["extra_args"] = tuple(shlex.split(remainder))
    config = dict(c.config.get("glmkit", {}) or {})
    return resolve_settings(flags, config, os.environ)


def _plan(c: Context, options: dict[str, Any]) -> Any:
    """A ServePlan, or a ClusterPlan when --nodes is given."""
    import dataclasses

    from glmkit import hardware
    from glmkit.cluster import build_cluster, parse_nodes, strategy_layout
    from glmkit.plan import build_plan

    settings, _ = _settings(c, options)
    hw = hardware.detect()
    if not settings.nodes:
        return build_plan(settings, hw, os.environ)
    nodes = parse_nodes(settings.nodes)
    # Parallel sizes are the cluster's: the one-node plan gives flags, devices, mounts.
    base = build_plan(dataclasses.replace(settings, tp=1, dp=1), hw, os.environ)
    per_node = settings.gpus_per_node or (
        hw.gpu_count if hw.vendor == base.vendor.name and hw.gpu_count else
        (1 if not base.vendor.has_gpus else 8))
    engine, tp, pp = strategy_layout(settings.strategy, settings.engine, settings.tp,
                                     settings.pp, per_node, len(nodes))
    return build_cluster(base, nodes, engine, tp=tp, pp=pp, gpus_per_node=per_node,
                         ifname=settings.ifname, rdma=settings.rdma)


def _console() -> Any:
    from rich.console import Console

    # Piped output (CI logs, tests) gets wide tables instead of truncated cells.
    return Console(width=None if sys.stdout.isatty() else 160)


def _print_notes(console: Any, plan: Any) -> None:
    for note in plan.notes:
        console.print(f"[cyan]note:[/cyan] {note}", highlight=False)


@_serve_task
def render(c, check=True, **options):  # type: ignore[no-untyped-def]
    """Write the compose file for a model and vendor under compose/, validated."""
    from glmkit.compose import write_compose

    console = _console()
    plan = _plan(c, options)
    if hasattr(plan, "nodes"):
        _render_cluster(plan, check, console)
        return
    _print_notes(console, plan)
    path = write_compose(plan, COMPOSE_DIR, check=check)
    print(path)


def _render_cluster(cluster: Any, check: bool, console: Any) -> list[Path]:
    from glmkit.cluster import cluster_compose
    from glmkit.compose import write_compose_data

    _print_notes(console, cluster.base)
    paths = [write_compose_data(data, COMPOSE_DIR, name, check=check)
             for name, data in cluster_compose(cluster).items()]
    console.print(f"{cluster.engine} engine, {len(cluster.nodes)} nodes: TP "
                  f"{cluster.tensor_parallel} × PP {cluster.pipeline_parallel}"
                  + (f", {cluster.data_parallel_local} DP ranks per node"
                     if cluster.engine == "dp" else ""), highlight=False)
    for port in cluster.ports():
        console.print(f"  open: {port}", highlight=False)
    for path in paths:
        print(path)
    return paths


render.help["check"] = "validate with `docker compose config` (default on)"


@_serve_task
def up(c, api_key=None, smoke=True, **options):  # type: ignore[no-untyped-def]
    """Start a vLLM server for a model, wait until healthy, and check chat, tools, reasoning."""
    from glmkit import build, lifecycle
    from glmkit.catalog import TINY_MODEL_ID
    from glmkit.compose import write_compose
    from glmkit.credentials import container_secrets
    from glmkit.process import child_env

    console = _console()
    plan = _plan(c, options)
    cluster = plan if hasattr(plan, "nodes") else None
    if cluster is not None:
        plan = cluster.base
    _print_notes(console, plan)
    secrets = container_secrets(os.environ, plan.host, api_key)
    if cluster is not None and not cluster.local:
        # Each machine's engine pulls the image and reads its own HF cache.
        _up_cluster(cluster, secrets, console)
        return
    docker = lifecycle.client()
    # Cheap checks first: devices, runtime, port, Hub access, before any pull or build.
    lifecycle.preflight(plan, docker)
    if plan.model.local_dir is None and "HF_HUB_OFFLINE" not in plan.environment:
        from glmkit.hub import check_access

        check_access(plan.model.id, secrets.get("HF_TOKEN"))
    build.ensure_images(plan.image, plan.model_dir, plan.model.id == TINY_MODEL_ID, ROOT,
                        console, os.environ)
    lifecycle.check_model_dir(plan)

    if cluster is not None:
        _up_cluster(cluster, secrets, console)
        return
    path = write_compose(plan, COMPOSE_DIR)
    console.print(f"Starting [bold]{plan.model.id}[/bold] on {plan.vendor.name} "
                  f"({plan.image.ref}) from {path}", highlight=False)
    lifecycle.start(plan, path, child_env(secrets))
    waited = lifecycle.wait_healthy(plan, docker, console)
    console.print(f"[green]healthy[/green] after {waited:.1f} s: {plan.base_url}/v1 "
                  f"serves {plan.served_model_name!r}", highlight=False)
    if smoke:
        _smoke(console, plan, secrets.get("VLLM_API_KEY"))


def _smoke(console: Any, plan: Any, api_key: str | None) -> None:
    """One real chat round-trip with a tool and with reasoning; exit 5 if it fails."""
    from glmkit.smoke import smoke_test

    result = smoke_test(plan.base_url, plan.served_model_name, api_key,
                        tools=plan.model.tool_parser is not None,
                        reasoning=plan.model.reasoning_parser is not None)
    mark = {True: "[green]ok[/green]", False: "[red]FAILED[/red]"}
    console.print(f"tool call: {mark[result.tool_call_ok]} ({result.tool_detail})",
                  highlight=False)
    console.print(f"reasoning: {mark[result.reasoning_ok]} ({result.reasoning_detail})",
                  highlight=False)
    if not result.ok:
        raise Exit("The server is up but the chat check failed (see above).", code=5)


def _up_cluster(cluster: Any, secrets: dict[str, str], console: Any) -> None:
    from glmkit import cluster as clusters
    from glmkit import lifecycle
    from glmkit.process import child_env, run

    clusters.refuse_broken(cluster)
    paths = _render_cluster(cluster, True, console)
    for node, path in zip(cluster.nodes if not cluster.local else cluster.nodes[:1], paths,
                          strict=True):
        env = {**clusters.node_env(node), **child_env(secrets)}
        run(lifecycle.compose_cmd(clusters.project_for(cluster, node), path, "up", "-d",
                                  "--remove-orphans"), env=env)
    if cluster.engine == "ray":
        clusters.start_ray_serve(cluster)
    waited = clusters.wait_cluster(cluster, cluster.base.health_timeout_s, console)
    console.print(f"[green]healthy[/green] after {waited:.1f} s: {len(cluster.nodes)} nodes, "
                  f"every node running and a real request served; API on the head "
                  f"({cluster.head.address}:{cluster.base.port})", highlight=False)
    if cluster.local:
        _smoke(console, cluster.base, secrets.get("VLLM_API_KEY"))


up.help.update(api_key="API key clients must send (or VLLM_API_KEY); required with a "
               "non-loopback --host", smoke="send one chat request with tools after start "
               "(default on)")


NODES_HELP = "the --nodes of a multi-machine `up` (head=ssh://h1,w1=ssh://h2), to reach each"


def _remote_nodes(project: str, nodes: str | None) -> list[tuple[str, dict[str, str]]]:
    """(compose project, environment) per node: one local project, or one per machine."""
    from glmkit.cluster import parse_nodes
    from glmkit.process import child_env

    if not nodes or nodes.isdigit():
        return [(project, child_env())]
    return [(f"{project}-{node.name}", child_env({"DOCKER_HOST": node.docker_host or ""}))
            for node in parse_nodes(nodes)]


@task(help={"project": "compose project name (default glmkit)", "nodes": NODES_HELP})
@_exits
def down(c, project="glmkit", nodes=None):  # type: ignore[no-untyped-def]
    """Stop and remove the server's containers (a no-op when nothing runs)."""
    from glmkit import lifecycle
    from glmkit.process import run

    if nodes and not nodes.isdigit():
        for name, env in _remote_nodes(project, nodes):
            run(lifecycle.compose_cmd(name, None, "down", "-t", "5", "--remove-orphans"),
                env=env)
            print(f"{name}: stopped and removed")
        return
    removed = lifecycle.down(project, COMPOSE_DIR / f"{project}.yaml")
    print(f"{project}: stopped and removed" if removed else f"{project}: nothing was running")


@task(help={"project": "compose project name", "follow": "keep streaming",
            "tail": "lines to show first (default 200)", "nodes": NODES_HELP})
@_exits
def logs(c, project="glmkit", follow=False, tail=200, nodes=None):  # type: ignore[no-untyped-def]
    """Show the server's logs (`-f` to follow); every node's for a cluster."""
    from glmkit import lifecycle
    from glmkit.process import stream

    targets = _remote_nodes(project, nodes)
    for name, env in targets:
        argv = lifecycle.compose_cmd(name, None, "logs", "--tail", str(tail))
        # Following several machines at once would interleave without end: follow one.
        follow_this = follow and len(targets) == 1
        stream(argv + (["--follow"] if follow_this else []), env=env, check=False)


@task(help={"json": "print JSON (one object per container) instead of a table",
            "nodes": NODES_HELP, "project": "with --nodes: the cluster's project"})
@_exits
def status(c, json=False, nodes=None, project="glmkit"):  # type: ignore[no-untyped-def]
    """What glmkit runs here: model, vendor, node, URL, state and whether the API answers."""
    import json as json_module
    from dataclasses import asdict, astuple, fields

    from rich.table import Table

    from glmkit import lifecycle

    if nodes and not nodes.isdigit():
        _status_remote(project, nodes, json)
        return
    rows = lifecycle.server_statuses(lifecycle.client())
    if json:
        print(json_module.dumps([asdict(row) for row in rows], indent=2))
        return
    if not rows:
        print("no glmkit servers")
        return
    table = Table()
    for field in fields(lifecycle.ServerStatus):
        table.add_column(field.name.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*astuple(row))
    _console().print(table)


def _status_remote(project: str, nodes: str, as_json: bool) -> None:
    """Each machine's container through its own engine, as Compose reports it."""
    import json

    from glmkit.lifecycle import compose_cmd
    from glmkit.process import run

    rows = []
    for name, env in _remote_nodes(project, nodes):
        done = run(compose_cmd(name, None, "ps", "-a", "--format", "json"), env=env,
                   check=False)
        found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        rows += [{"project": name, "node": item.get("Service"), "state": item.get("State"),
                  "status": item.get("Status")} for item in found] or \
            [{"project": name, "node": name, "state": "unreachable or missing",
              "status": (done.stderr.strip().splitlines() or [""])[-1][:160]}]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['project']:<28} {row['node']:<10} {row['state']:<10} {row['status']}")


@task(help={"vendor": "cuda (nvidia), rocm (amd) or cpu", "model": "build the image this "
            "catalog model uses (a transformers overlay where its image lacks one)",
            "vllm_version": "vLLM release of the official image to build on",
            "force": "rebuild even when up to date",
            "ca_cert": "extra CA certificate for the image (repeatable)"},
      iterable=["ca_cert"])
@_exits
def build(c, vendor="cpu", model=None, vllm_version=None, force=False, ca_cert=None):  # type: ignore[no-untyped-def]
    """Build a vLLM image from docker/ (CPU: offline, from a host wheelhouse)."""
    from glmkit import build as builder
    from glmkit.catalog import TINY_MODEL_ID, resolve_model
    from glmkit.images import choose_image
    from glmkit.vendors import resolve_vendor

    name = resolve_vendor(vendor).name
    profile = choose_image(resolve_model(model or TINY_MODEL_ID, os.environ), name,
                           vllm_version=vllm_version)
    if profile.source != "build":
        print(f"{profile.ref} is vLLM's official image; `invoke pull --vendor {vendor}` "
              "fetches it.")
        return
    builder.build_image(profile, ROOT, _console(), os.environ, ca_certs=ca_cert or (),
                        force=force)


@task(help={"vendor": "cuda (nvidia), rocm (amd) or cpu",
            "model": "pull the image this catalog model uses (its recipe's pin, if any)",
            "vllm_version": "vLLM release to pull (default: the newest stable)",
            "cuda12": "the CUDA 12 (-cu129) tag"})
@_exits
def pull(c, vendor="cuda", model=None, vllm_version=None, cuda12=False):  # type: ignore[no-untyped-def]
    """Pull vLLM's official image for a vendor (CPU: vLLM's published CPU image)."""
    from glmkit import build as builder
    from glmkit.catalog import resolve_model
    from glmkit.images import CPU_IMAGE, CURRENT_VLLM, choose_image, official_image
    from glmkit.process import run
    from glmkit.vendors import resolve_vendor

    name = resolve_vendor(vendor).name
    if name == "cpu":
        profile = CPU_IMAGE
    elif model:
        profile = choose_image(resolve_model(model, os.environ), name, cuda12=cuda12,
                               vllm_version=vllm_version)
    else:
        profile = official_image(name, vllm_version or CURRENT_VLLM, cuda12=cuda12)
    ref = profile.official_ref or profile.ref
    builder.pull_image(ref, _console())
    if ref != profile.ref:
        run(["docker", "tag", ref, profile.ref])
        print(f"tagged {ref} as {profile.ref}")


@task(help={"token": "the token (default: HF_TOKEN, else a hidden prompt)"})
@_exits
def login(c, token=None):  # type: ignore[no-untyped-def]
    """Log in to Hugging Face; the token is stored by huggingface_hub, never in this repo."""
    from glmkit.credentials import login as hf_login

    user = hf_login(token, os.environ, interactive=sys.stdin.isatty())
    print(f"logged in to Hugging Face as {user}")


@task(help={"layers": "decoder layers (default 2; pipeline parallel needs 4)",
            "force": "regenerate even if present"})
@_exits
def tiny_model(c, layers=2, force=False):  # type: ignore[no-untyped-def]
    """Generate the tiny GLM-4 MoE model (random weights) inside the CPU image."""
    from glmkit import build as builder
    from glmkit import tiny
    from glmkit.catalog import CATALOG, TINY_MODEL_ID
    from glmkit.images import CPU_IMAGE
    from glmkit.paths import kit_home

    profile = CPU_IMAGE
    if not builder.image_present(profile.ref):
        builder.build_image(profile, ROOT, _console(), os.environ)
    local_dir = CATALOG[TINY_MODEL_ID].local_dir
    assert local_dir is not None
    out = kit_home(os.environ) / local_dir
    made = tiny.generate(profile.ref, out, ROOT / "scripts", layers=int(layers), force=force)
    print(f"{'generated' if made else 'already present:'} {out}")


@task
@_exits
def models(c):  # type: ignore[no-untyped-def]
    """Every served checkpoint: family, precision, size, context, parsers, min vLLM, source."""
    from rich.table import Table

    from glmkit.catalog import catalog

    table = Table()
    for column in ("model", "family", "precision", "params (active)", "needs GB", "context",
                   "tool / reasoning", "MTP", "vision", "min vLLM", "source"):
        table.add_column(column)
    for m in catalog(os.environ).values():
        table.add_row(m.id, m.family, m.precision,
                      f"{m.total_params_b:g}B ({m.active_params_b:g}B)",
                      f"{m.vram_minimum_gb:g}", str(m.max_context),
                      f"{m.tool_parser or '-'} / {m.reasoning_parser or '-'}",
                      "yes" if m.has_mtp else "-", "yes" if m.vision else "-", m.min_vllm,
                      m.source)
    _console().print(table)


@_serve_task
def config(c, **options):  # type: ignore[no-untyped-def]
    """Show the resolved settings and where each comes from (default, invoke.yaml, env, flag)."""
    from rich.table import Table

    settings, sources = _settings(c, options)
    table = Table()
    table.add_column("setting")
    table.add_column("value")
    table.add_column("from")
    for name, source in sources.items():
        table.add_row(name, repr(getattr(settings, name)), source)
    _console().print(table)


@task(help={"project": "compose project of the server to benchmark (default glmkit)",
            "workload": "prompt-heavy (8000/1000, default), decode-heavy (1000/8000), "
                        "balanced (1000/1000), vision (VisionArena), or custom",
            "batch": "batch sizes, e.g. 1,16,64, or 'recipe' for 1,16,32,64,128,256,512 "
                     "(default 16)",
            "mode": "prompts: batch = --num-prompts, all at once (the recipes); "
                    "concurrency: batch = --max-concurrency",
            "input_len": "prompt tokens (overrides the workload's)",
            "output_len": "output tokens (overrides the workload's)",
            "num_prompts": "prompts per point in concurrency mode; in prompts mode, the batch",
            "request_rate": "requests/s (default 10000, as the recipes: all at once)",
            "label": "name for this run in reports (default: model-vendor-workload)",
            "resume": "finish the missing points of an earlier run (its id or folder)"})
@_exits
def bench(c, project="glmkit", workload="prompt-heavy", batch=None, mode="prompts",  # type: ignore[no-untyped-def]
          input_len=None, output_len=None, num_prompts=None, request_rate="10000", label=None,
          resume=None):
    """Benchmark the running server with `vllm bench serve` inside its container."""
    from glmkit import hardware, lifecycle
    from glmkit.bench import fit_lengths, new_sweep, sweep_points, target_from_container
    from glmkit.errors import BenchFailed, UsageError
    from glmkit.report import Series, results_table, write_plots
    from glmkit.results import open_run
    from glmkit.sweep import run_sweep
    from glmkit.workloads import Workload, parse_batches, resolve_workload

    console = _console()
    if mode not in ("prompts", "concurrency"):
        raise UsageError(f"--mode {mode!r}: choose prompts or concurrency.")
    wl = resolve_workload(workload, int(input_len) if input_len else None,
                          int(output_len) if output_len else None)
    batches = parse_batches(batch or str(num_prompts or 16))
    docker = lifecycle.client()
    container = lifecycle.find_container(docker, project)
    if container is None or container.status != "running":
        raise UsageError(f"No running glmkit server in project {project!r}: `invoke up` first.")
    target = target_from_container(container)
    if resume:
        run = open_run(RESULTS_DIR, resume)
        wl = Workload(**run.meta["workload"])
        if run.meta["model"] != target.served_model:
            raise UsageError(f"Run {run.run_id} benchmarked {run.meta['model']}, but "
                             f"{project} serves {target.served_model}.")
        console.print(f"resuming {run.run_id}: missing batches {run.missing()}")
    else:
        if wl.vision and "--mm-encoder-tp-mode" not in target.serve_args:
            raise UsageError(f"--workload vision needs a vision model; {project} serves "
                             f"{target.served_model}.")
        fitted_in, fitted_out, fitted = fit_lengths(wl.input_len, wl.output_len,
                                                    target.max_model_len)
        if fitted:
            console.print(f"[yellow]{wl.input_len}+{wl.output_len} tokens exceed the served "
                          f"context ({target.max_model_len}); using {fitted_in}/{fitted_out}."
                          "[/yellow]")
            wl = Workload(**{**wl.__dict__, "input_len": fitted_in, "output_len": fitted_out})
        points = sweep_points(batches, mode, int(num_prompts) if num_prompts and batch else None,
                              str(request_rate))
        hw = hardware.detect()
        hw_meta = {"vendor": hw.vendor, "description": hw.describe(),
                   "gpus": [g.__dict__ for g in hw.gpus], "cpu_count": os.cpu_count()}
        run = new_sweep(RESULTS_DIR, target, wl, mode, points, hw_meta, ROOT, label)  # type: ignore[arg-type]
    if target.prefix_caching:
        console.print("[yellow]warning:[/yellow] prefix caching is on; the recipes benchmark "
                      "with `invoke up --bench-mode` (--no-enable-prefix-caching).")
    report = run_sweep(run, target, wl, container, console)
    series = Series(run.label(), run.meta, run.points(), tuple(run.missing()))
    console.print(results_table([series]))
    if series.points:
        console.print(f"plots: {write_plots([series], run.path / 'report.png')}",
                      highlight=False)
    console.print(f"saved {run.path}", highlight=False)
    if report.interrupted or report.missing:
        raise Exit(f"interrupted: missing batches {report.missing}; finish with "
                   f"`invoke bench --project {project} --resume {run.run_id}`", code=130)
    failed_points = [o.batch for o in report.outcomes if o.result is None]
    failed_requests = [b for b, r in series.points.items() if (r.get("failed") or 0) > 0]
    if failed_points or failed_requests:
        raise BenchFailed(f"points that failed: {failed_points}; points with failed requests: "
                          f"{failed_requests} (see {run.path}/failures)")


@task(help={"runs": "run ids, folders or ref:NAME (default: every run); repeatable",
            "compare": "print B / A ratios for exactly two runs",
            "out": "folder for report.png and report.csv (default results/reports/<time>)"},
      iterable=["runs"])
@_exits
def report(c, runs=None, compare=False, out=None):  # type: ignore[no-untyped-def]
    """Tables, plots and CSV over benchmark runs; `--compare` two of them."""
    import time

    from glmkit.errors import UsageError
    from glmkit.report import (
        compare_table,
        load_all,
        reference_names,
        results_table,
        write_csv,
        write_plots,
    )

    console = _console()
    series = load_all(RESULTS_DIR, list(runs or []))
    console.print(results_table(series))
    if compare:
        if len(series) != 2:
            raise UsageError("--compare needs exactly two runs: "
                             "`invoke report --compare --runs A --runs B`.")
        console.print(compare_table(series[0], series[1]))
    folder = Path(out) if out else RESULTS_DIR / "reports" / time.strftime("%Y%m%d-%H%M%S")
    console.print(f"plots: {write_plots(series, folder / 'report.png')}", highlight=False)
    console.print(f"csv:   {write_csv(series, folder / 'report.csv')}", highlight=False)
    console.print(f"[dim]reference runs: {', '.join('ref:' + n for n in reference_names())}"
                  "[/dim]")


@task(help={"vendor": "the vendor you will use (default: what this machine has)",
            "model": "check disk space and Hub access for this model",
            "port": "the port you will serve on (default 8000)",
            "host": "the address you will publish on (default 127.0.0.1)"})
@_exits
def doctor(c, vendor=None, model=None, port=8000, host="127.0.0.1"):  # type: ignore[no-untyped-def]
    """Check this machine: Docker, Compose, GPUs and devices, disk, port, HF token, image."""
    from glmkit.doctor import render_lines, run_doctor
    from glmkit.paths import hf_cache

    checks = run_doctor(vendor=vendor, model_id=model, host=host, port=int(port),
                        hf_cache_dir=hf_cache(os.environ), env=os.environ)
    console = _console()
    for line in render_lines(checks):
        console.print(line, highlight=False)
    failed = [ch.name for ch in checks if ch.status == "fail"]
    if failed:
        raise Exit(f"{len(failed)} problem(s): {', '.join(failed)}", code=3)


@task(help={"model": "catalog id or Hugging Face repo id",
            "revision": "branch, tag or commit (default main)",
            "hf_cache": "host Hugging Face cache (default $HF_HOME or ~/.cache/huggingface)"})
@_exits
def download(c, model, revision=None, hf_cache=None):  # type: ignore[no-untyped-def]
    """Pre-download a model's weights into the shared HF cache (resumable; then starts offline)."""
    from glmkit.catalog import resolve_model
    from glmkit.credentials import hf_token
    from glmkit.errors import UsageError
    from glmkit.hub import download as hub_download
    from glmkit.paths import hf_cache as cache_dir

    spec = resolve_model(model)
    if spec.local_dir:
        raise UsageError(f"{spec.id} is a local model; nothing to download.")
    result = hub_download(spec.id, cache_dir(os.environ, hf_cache), hf_token(os.environ),
                          revision=revision)
    print(f"{spec.id}@{result.revision[:12]}: {result.files} files, {result.size_gb:.1f} GB in "
          f"{result.seconds:.0f} s → {result.path}")
    print("servers for it now start with HF_HUB_OFFLINE=1")


@task(help={"model": "catalog id (default: the tiny model)",
            "vendor": "cuda, rocm (default: what this machine has); picks the reference GPU "
                      "when none is named or detected",
            "gpu_count": "number of GPUs (default: detected, else the GPU's 8-GPU node)",
            "gpu": "GPU type: h100, h200, b200, b300, mi300x, mi325x, mi355x (default: detected)",
            "gpu_mem": "GB per GPU, for a GPU type glmkit does not know",
            "strategy": "size for this recipe strategy (default: the recommendation for --goal)",
            "goal": "latency (TP/TEP with MTP) or throughput (DEP); default latency",
            "tp": "check this tensor-parallel size instead of choosing one",
            "batch": "decode batch for the TPOT estimate (default 16)",
            "context": "tokens per sequence for the TPOT estimate (default 9000: 8k in + 1k out)",
            "gpu_memory_utilization": "fraction of GPU memory for vLLM (default 0.9)",
            "nodes": "plan for this many machines of --gpu-count GPUs each"})
@_exits
def plan(c, model="glmkit/glm-tiny", vendor=None, gpu_count=None, gpu=None, gpu_mem=None,  # type: ignore[no-untyped-def]
         tp=None, batch=16, context=9000, gpu_memory_utilization=0.9, nodes=None,
         strategy=None, goal="latency"):
    """Will a model fit these GPUs: BF16/FP8, TP and DP, max context, offload, decode time."""
    from rich.table import Table

    from glmkit import hardware
    from glmkit.catalog import resolve_model
    from glmkit.errors import UsageError
    from glmkit.paths import hf_cache
    from glmkit.plan import choose_target
    from glmkit.recipes import load_book
    from glmkit.resolver import default_features, recommend_strategy, resolve
    from glmkit.sizing import ASSUMPTIONS, gpu_spec, kv_cache_bytes, model_arch, plan_report
    from glmkit.vendors import resolve_vendor

    if goal not in ("latency", "throughput"):
        raise UsageError(f"--goal {goal!r}: choose latency or throughput.")
    spec = resolve_model(model, os.environ)
    hw = hardware.detect()
    book = load_book(os.environ)
    wanted = resolve_vendor(vendor).name if vendor else hw.vendor
    count = int(gpu_count) if gpu_count else None
    if count is not None and count < 1:
        raise UsageError("--gpu-count must be at least 1.")
    target, _, _ = choose_target(book, wanted, hw, gpu=gpu, gpu_count=count,
                                 gpu_mem=float(gpu_mem) if gpu_mem else None)
    card = gpu_spec(target.id or gpu or hw.gpus[0].name, target.gpu_memory_gb)
    count = target.gpu_count
    from glmkit.credentials import hf_token
    from glmkit.hub import fetch_config

    cache = hf_cache(os.environ)
    arch = model_arch(spec, cache, fetch=None if spec.local_dir or not spec.in_catalog else
                      lambda: fetch_config(spec.id, cache, hf_token(os.environ), os.environ))
    kv_bytes = 2.0
    recommended: list[tuple[str, str]] = []
    if spec.recipe is not None and spec.variant is not None:
        for aim in ("latency", "throughput"):
            name, why = recommend_strategy(spec.recipe, aim)
            recommended.append((f"for {aim}", f"--strategy {name}"
                                + (" --mtp" if aim == "latency" and spec.has_mtp else "")
                                + f": {why}"))
        chosen_strategy = strategy or recommend_strategy(spec.recipe, goal)[0]
        resolved = resolve(book, spec.recipe, spec.variant, chosen_strategy, target,
                           default_features(spec.recipe))
        kv_bytes = kv_cache_bytes(resolved.args)
    rep = plan_report(spec, arch, card, count, batch=int(batch), context=int(context),
                      utilization=float(gpu_memory_utilization), tp=int(tp) if tp else None,
                      kv_bytes=kv_bytes)
    console = _console()
    table = Table(title=f"{spec.id} on {count} × {card.name} ({card.memory_gb:g} GB, "
                  f"{card.bandwidth_tb_s:g} TB/s)", show_header=False)
    table.add_column("")
    table.add_column("")
    table.add_row("model", f"{spec.total_params_b:g}B total / {spec.active_params_b:g}B active, "
                  f"{arch.layers} layers, {arch.heads} heads, {arch.kv_heads} KV heads × "
                  f"{arch.head_dim} (facts from {arch.source})")
    for precision, f in rep.fits.items():
        verdict = "no TP size works" if f is None else (
            f"fits at TP {f.tp} ({f.weights_per_gpu_gb:.0f} GB weights/GPU)" if f.fits else
            f"does not fit: needs --cpu-offload-gb {f.cpu_offload_gb} at TP {f.tp}")
        table.add_row(f"in {precision.upper()}", verdict)
    ch = rep.chosen
    if spec.recipe is not None:
        ep = " --enable-expert-parallel" if "--enable-expert-parallel" in resolved.args else ""
        table.add_row("recipe layout", f"{chosen_strategy}: {resolved.parallel_flag} "
                      f"{resolved.parallel_size}{ep}")
    table.add_row("smallest fit", f"--tensor-parallel-size {ch.tp}, {ch.replicas} "
                  f"data-parallel replica(s) on {count} GPUs")
    table.add_row("KV cache", f"{ch.kv_budget_per_gpu_gb:.1f} GB per GPU; largest "
                  f"--max-model-len {ch.max_model_len}")
    table.add_row("CPU offload", f"--cpu-offload-gb {ch.cpu_offload_gb} (crosses PCIe each "
                  "step: in the TPOT bound)" if ch.cpu_offload_gb else "not needed")
    if spec.vram_minimum_gb:
        verdict = "fits" if spec.vram_minimum_gb <= target.vram_gb else "needs more than"
        table.add_row("recipe check", f"vram_minimum_gb {spec.vram_minimum_gb:g} GB {verdict} "
                      f"the node's {target.vram_gb:g} GB ({target.describe()})")
    table.add_row("KV cache dtype", "fp8 (the recipe's, on this GPU): half the bytes"
                  if kv_bytes == 1.0 else "bf16 (vLLM's default)")
    for label, text in recommended:
        table.add_row(label, text)
    if rep.impossible_tp:
        table.add_row("impossible TP", "; ".join(f"{t}: {why}" for t, why in
                                                 sorted(rep.impossible_tp.items())[:4]))
    d = rep.decode
    table.add_row("decode bound", f"TPOT ≥ {d.tpot_ms:.2f} ms at batch {rep.batch} × "
                  f"{rep.context} tokens ({d.weights_read_gb:.1f} GB weights + "
                  f"{d.kv_read_gb:.1f} GB KV read per GPU per step; "
                  f"{d.distinct_experts:.0f} experts touched per layer)")
    console.print(table)
    node_count = int(nodes) if nodes else (2 if not ch.fits else 1)
    if node_count > 1:
        from glmkit.sizing import multinode

        mn = multinode(spec, arch, card, count, node_count, spec.precision,
                       float(gpu_memory_utilization))
        verdict = "fits" if mn.fits else "does not fit either"
        console.print(f"[bold]{node_count} nodes[/bold] × {count} GPUs: TP {mn.tp} × PP {mn.pp} "
                      f"({mn.weights_per_gpu_gb:.0f} GB weights per GPU) {verdict}. "
                      f"Between nodes per generated token: {mn.pp_bytes_per_token / 1e3:.0f} KB"
                      f" of activations with PP across nodes, vs "
                      f"{mn.tp_bytes_per_token / 1e6:.1f} MB of all-reduce with TP across "
                      f"them. `invoke up --nodes head=HOST1,w1=HOST2 --tp {mn.tp} --pp "
                      f"{mn.pp}`", highlight=False)
    for line in ASSUMPTIONS:
        console.print(f"[dim]assumes: {line}[/dim]", highlight=False)


@_serve_task
def export(c, target, **options):  # type: ignore[no-untyped-def]
    """Export the plan for another platform: `invoke export k8s` writes validated manifests."""
    from glmkit import k8s
    from glmkit.errors import UsageError

    if target != "k8s":
        raise UsageError(f"Unknown export target {target!r}; `k8s` is the one there is.")
    plan = _plan(c, options)
    manifests = k8s.multi_node(plan) if hasattr(plan, "nodes") else k8s.single_node(plan)
    k8s.validate(manifests)
    COMPOSE_DIR.mkdir(exist_ok=True)
    base = plan.base if hasattr(plan, "nodes") else plan
    path = COMPOSE_DIR / f"{base.project}.k8s.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(k8s.dump(manifests))
    tmp.replace(path)
    kinds = ", ".join(m["kind"] for m in manifests)
    print(f"{path} ({kinds}; valid for Kubernetes {k8s.K8S_VERSION})")


export.help["target"] = "what to export: k8s"


@task(help={"action": "list, sync or diff",
            "from_": "sync from this folder, git URL or .tar.gz URL "
                     "(default: the vllm-project/recipes repository)"},
      positional=["action"])
@_exits
def recipes(c, action, from_=None):  # type: ignore[no-untyped-def]
    """The recipe book: where model knowledge comes from; `sync` the newest, `diff` it."""
    from rich.table import Table

    from glmkit import recipes as book_module
    from glmkit.errors import UsageError

    console = _console()
    if action == "sync":
        result = book_module.sync(from_, os.environ)
        for note in result.notes:
            console.print(f"[yellow]skipped:[/yellow] {note}", highlight=False)
        console.print(f"synced {len(result.recipes)} GLM recipes from {result.origin}"
                      + (f" @ {result.commit[:12]}" if result.commit else "")
                      + f" into {result.root}", highlight=False)
        return
    if action == "diff":
        table = Table(title="synced recipes against the built-in data")
        for column in ("recipe", "change", "field", "built-in", "synced"):
            table.add_column(column)
        for ch in book_module.diff(os.environ):
            table.add_row(ch.recipe, ch.kind, ch.path, "" if ch.builtin is None else
                          str(ch.builtin), "" if ch.synced is None else str(ch.synced))
        console.print(table)
        return
    if action != "list":
        raise UsageError(f"Unknown action {action!r}: list, sync or diff.")
    book = book_module.load_book(os.environ)
    table = Table()
    for column in ("recipe", "checkpoints", "min vLLM", "strategies", "source"):
        table.add_column(column)
    for key, recipe in book.recipes.items():
        table.add_row(key, ", ".join(recipe.variant_model_id(v) for v in recipe.variants),
                      recipe.min_vllm, ", ".join(recipe.compatible_strategies),
                      recipe.source.describe())
    console.print(table)
    for note in book.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
