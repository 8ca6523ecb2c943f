"""glmkit tasks: serve and benchmark GLM models with vLLM in containers.

Each task parses its options, calls one library function that returns data, and prints
it; a `GlmkitError` becomes a one-line message and an exit code. Library imports happen
inside the tasks so `invoke --list` stays instant.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

from glmkit.cli_help import BOOL_OPTIONS, HELP, SERVE_HELP  # noqa: E402  (plain data)

COMPOSE_DIR = ROOT / "compose"
RESULTS_DIR = ROOT / "results"


def _exits(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map the library's errors to Exit; anything else keeps its traceback (a bug)."""

    @functools.wraps(fn)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> Any:
        from glmkit.errors import GlmkitError

        try:
            return fn(c, *args, **kwargs)
        except GlmkitError as err:
            raise Exit(code=_views().print_error(err)) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


def _serve_task(fn: Callable[..., Any]) -> Any:
    """A task that takes every serve option; extra vLLM flags go after `--`."""
    own = [p for p in inspect.signature(fn).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=False if name.removeprefix("no_") in BOOL_OPTIONS
                                else None) for name in SERVE_HELP]
    wrapped = _exits(fn)
    wrapped.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    return task(wrapped, help=dict(HELP[fn.__name__]), auto_shortflags=False)


def _settings(c: Context, options: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """Settings from defaults < invoke.yaml < GLMKIT_* < these options (None: not given)."""
    from glmkit.settings import flags_from_options, resolve_settings

    flags = flags_from_options(options, getattr(c, "remainder", "") or "", BOOL_OPTIONS)
    return resolve_settings(flags, dict(c.config.get("glmkit", {}) or {}), os.environ)


def _deployment(c: Context, options: dict[str, Any], console: Any = None,
                portable: bool = False) -> Any:
    """The plan for these options; its notes printed when a console is given."""
    from glmkit import deploy, hardware, views

    settings, _ = _settings(c, options)
    deployment = deploy.plan_deployment(settings, hardware.detect(os.environ), os.environ,
                                        portable=portable)
    views.print_notes(console or views.console(), deploy.single(deployment).notes)
    return deployment


def _views() -> Any:
    from glmkit import views  # rich and the library load only when a task runs

    return views


def _console() -> Any:
    return _views().console()


@_serve_task
def render(c: Context, check: bool = True, **options: Any) -> None:
    """Write the compose file(s) for a model and vendor under compose/, validated."""
    from glmkit.deploy import render

    console = _console()
    deployment = _deployment(c, options, console)
    _views().print_render(console, deployment, render(deployment, COMPOSE_DIR, check=check))


@_serve_task
def up(c: Context, api_key: str | None = None, smoke: bool = True, **options: Any) -> None:
    """Start a vLLM server for a model, wait until healthy, and check chat, tools, reasoning."""
    from glmkit import deploy

    console = _console()
    deployment = _deployment(c, options, console)
    result = deploy.up(deployment, api_key, COMPOSE_DIR, ROOT, console, os.environ,
                       smoke=smoke)
    _views().print_up(console, result)
    result.check()


@task(help=HELP["down"])
@_exits
def down(c: Context, project: str | None = None, nodes: str | None = None) -> None:
    """Stop and remove the server's containers (a no-op when nothing runs)."""
    from glmkit.deploy import down

    settings, _ = _settings(c, {"project": project, "nodes": nodes})
    for name, was_running in down(settings.project, settings.nodes):
        print(f"{name}: stopped and removed" if was_running else f"{name}: nothing was running")


@task(help=HELP["logs"])
@_exits
def logs(c: Context, project: str | None = None, follow: bool = False, tail: int = 200,
         nodes: str | None = None) -> None:
    """Show the server's logs (`-f` to follow); every node's for a cluster."""
    from glmkit.deploy import show_logs

    settings, _ = _settings(c, {"project": project, "nodes": nodes})
    show_logs(settings.project, settings.nodes, follow=follow, tail=int(tail))


@task(help=HELP["status"])
@_exits
def status(c: Context, json: bool = False, nodes: str | None = None,
           project: str | None = None) -> None:
    """What glmkit runs here: model, vendor, node, URL, state, restarts, whether the API answers."""
    from glmkit.deploy import statuses

    settings, _ = _settings(c, {"project": project, "nodes": nodes})
    _views().print_status(_console(), statuses(settings.project, settings.nodes), as_json=json)


@task(help=HELP["build"], iterable=["ca_cert"])
@_exits
def build(c: Context, vendor: str = "cpu", model: str | None = None,
          vllm_version: str | None = None, force: bool = False,
          ca_cert: list[str] | None = None) -> None:
    """Build a vLLM image from docker/ (CPU: offline, from a host wheelhouse)."""
    from glmkit.build import build_for

    print(build_for(vendor, model, vllm_version, ROOT, _console(), os.environ,
                    ca_certs=ca_cert or (), force=force))


@task(help=HELP["pull"])
@_exits
def pull(c: Context, vendor: str = "cuda", model: str | None = None,
         vllm_version: str | None = None, cuda12: bool = False) -> None:
    """Pull vLLM's official image for a vendor (CPU: vLLM's published CPU image)."""
    from glmkit.build import pull_for

    print(pull_for(vendor, model, vllm_version, cuda12, _console(), os.environ))


@task(help=HELP["login"])
@_exits
def login(c: Context, token: str | None = None) -> None:
    """Log in to Hugging Face; the token is stored by huggingface_hub, never in this repo."""
    from glmkit.credentials import login as hf_login

    user = hf_login(token, os.environ, interactive=sys.stdin.isatty())
    print(f"logged in to Hugging Face as {user}")


@task(help=HELP["tiny_model"])
@_exits
def tiny_model(c: Context, layers: int = 2, force: bool = False) -> None:
    """Generate the tiny GLM-4 MoE model (random weights) inside the CPU image."""
    from glmkit.build import tiny_model as make_tiny

    print(make_tiny(ROOT, _console(), os.environ, layers=int(layers), force=force))


@task
@_exits
def models(c: Context) -> None:
    """Every served checkpoint: family, precision, size, context, parsers, min vLLM, source."""
    from glmkit.catalog import catalog

    _console().print(_views().models_table(catalog(os.environ).values()))


@_serve_task
def config(c: Context, **options: Any) -> None:
    """Show the resolved settings and where each comes from (default, invoke.yaml, env, flag)."""
    import dataclasses


    settings, sources = _settings(c, options)
    _console().print(_views().settings_table(dataclasses.asdict(settings), sources))


@task(help=HELP["bench"])
@_exits
def bench(c: Context, project: str | None = None, workload: str = "prompt-heavy",
          batch: str | None = None, mode: str = "prompts", input_len: str | None = None,
          output_len: str | None = None, num_prompts: str | None = None,
          request_rate: str = "10000", label: str | None = None,
          resume: str | None = None) -> None:
    """Benchmark the running server with `vllm bench serve` inside its container."""
    from glmkit import hardware
    from glmkit.settings import number as _number
    from glmkit.sweep import BenchRequest, run_bench

    settings, _ = _settings(c, {"project": project})
    request = BenchRequest(
        project=settings.project, workload=workload, batch=batch, mode=mode,
        input_len=_number(input_len, int, "input-len"), label=label, resume=resume,
        output_len=_number(output_len, int, "output-len"), request_rate=str(request_rate),
        num_prompts=_number(num_prompts, int, "num-prompts"))
    console = _console()
    outcome = run_bench(request, RESULTS_DIR, ROOT, hardware.detect(os.environ), console)
    _views().print_report(console, [outcome.series], outcome.path)
    outcome.check()


@task(help=HELP["check"])
@_exits
def check(c: Context, project: str | None = None) -> None:
    """Tool-call conformance of the running server: every tool_choice, streamed and not."""
    from glmkit.conformance import check_server

    settings, _ = _settings(c, {"project": project})
    report = check_server(settings.project, RESULTS_DIR)
    _console().print(_views().check_table(report.results), f"saved {report.path}")
    report.check()


@task(help=HELP["report"], iterable=["runs"])
@_exits
def report(c: Context, runs: list[str] | None = None, compare: bool = False,
           out: str | None = None) -> None:
    """Tables, plots and CSV over benchmark runs; `--compare` two of them."""
    import time

    from glmkit.results import load_all

    series = load_all(RESULTS_DIR, list(runs or []))
    folder = Path(out) if out else RESULTS_DIR / "reports" / time.strftime("%Y%m%d-%H%M%S")
    _views().print_report(_console(), series, folder, compare=compare, csv=True)


@task(help=HELP["doctor"])
@_exits
def doctor(c: Context, vendor: str | None = None, model: str | None = None, port: int = 8000,
           host: str = "127.0.0.1") -> None:
    """Check this machine: Docker, Compose, GPUs and devices, disk, port, HF token, image."""
    from glmkit.doctor import raise_for_failures, render_lines, run_doctor
    from glmkit.paths import hf_cache

    checks = run_doctor(vendor=vendor, model_id=model, host=host, port=int(port),
                        hf_cache_dir=hf_cache(os.environ), env=os.environ)
    _console().print("\n".join(render_lines(checks)), highlight=False)
    raise_for_failures(checks)


@task(help=HELP["download"])
@_exits
def download(c: Context, model: str, revision: str | None = None,
             hf_cache: str | None = None) -> None:
    """Pre-download a model's weights into the shared HF cache (resumable; then starts offline)."""
    from glmkit.hub import download_model
    from glmkit.paths import hf_cache as cache_dir

    print(download_model(model, revision, cache_dir(os.environ, hf_cache), os.environ))


@task(help=HELP["plan"])
@_exits
def plan(c: Context, model: str = "glmkit/glm-tiny", vendor: str | None = None,
         gpu_count: str | None = None, gpu: str | None = None, gpu_mem: str | None = None,
         tp: str | None = None, batch: int = 16, context: int = 9000,
         gpu_memory_utilization: float = 0.9, nodes: str | None = None,
         strategy: str | None = None, goal: str = "latency") -> None:
    """Will a model fit these GPUs: BF16/FP8, TP and DP, max context, offload, decode time."""
    from glmkit import hardware
    from glmkit.advice import PlanRequest, advise
    from glmkit.settings import number as _number

    advice = advise(PlanRequest(
        model=model, vendor=vendor, gpu=gpu, gpu_count=_number(gpu_count, int, "gpu-count"),
        gpu_mem=_number(gpu_mem, float, "gpu-mem"), strategy=strategy, goal=goal,
        tp=_number(tp, int, "tp"), batch=int(batch), context=int(context),
        gpu_memory_utilization=float(gpu_memory_utilization),
        nodes=_number(nodes, int, "nodes")), hardware.detect(os.environ), os.environ)
    _views().print_advice(_console(), advice)


@_serve_task
def tune(c: Context, workload: str = "balanced", batch: str = "16", slo: str | None = None,
         budget: float = 30.0, candidates: int = 0, resume: str | None = None,
         **options: Any) -> None:
    """Search the recipe's knobs for a workload under an SLO; write the winner's settings."""
    from glmkit import hardware
    from glmkit.tune import TuneRequest, run_tune
    from glmkit.workloads import parse_slo

    settings, _ = _settings(c, options)
    report = run_tune(TuneRequest(
        settings=settings, workload=workload, batch=str(batch), slo=parse_slo(slo),
        budget_min=float(budget), max_candidates=int(candidates) or None, resume=resume),
        hardware.detect(os.environ), os.environ, ROOT, _console())
    _views().print_tune(_console(), report)


@_serve_task
def export(c: Context, target: str, **options: Any) -> None:
    """Export the plan for another platform: `invoke export k8s` writes Kubernetes manifests."""
    from glmkit.deploy import export_k8s
    from glmkit.errors import UsageError

    if target != "k8s":
        raise UsageError(f"Unknown export target {target!r}; `k8s` is the one there is.")
    done = export_k8s(_deployment(c, options, portable=True), COMPOSE_DIR)
    print(f"{done.path} ({', '.join(done.kinds)}; {done.validation})")


@task(help=HELP["recipes"], positional=["action"])
@_exits
def recipes(c: Context, action: str, from_: str | None = None) -> None:
    """The recipe book: where model knowledge comes from; `sync` the newest, `diff` it."""
    from glmkit import recipes as book
    from glmkit.errors import UsageError

    console = _console()
    if action == "sync":
        result = book.sync(from_, os.environ)
        _views().print_notes(console, result.notes, "skipped")
        console.print(result.describe(), highlight=False)
    elif action in ("diff", "list"):
        loaded = book.load_book(os.environ)
        console.print(_views().recipe_diff_table(book.diff(os.environ)) if action == "diff"
                      else _views().recipes_table(loaded))
        _views().print_notes(console, loaded.notes)
    else:
        raise UsageError(f"Unknown action {action!r}: list, sync or diff.")
