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

from glmkit.cli.help import BOOL_OPTIONS, HELP, SERVE_HELP, task_help  # noqa: E402
from glmkit.host.settings import RenderOptions, UpOptions  # noqa: E402

COMPOSE_DIR = ROOT / "compose"
RESULTS_DIR = ROOT / "results"


def _exits(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map the library's errors to Exit; anything else keeps its traceback (a bug)."""

    @functools.wraps(fn)
    def wrapper(c: Context, *args: Any, **kwargs: Any) -> Any:
        from glmkit.errors import GlmkitError
        from glmkit.host.settings import check_section

        if HELP_WORDS.intersection(v for v in (*args, *kwargs.values()) if isinstance(v, str)):
            return _print_help(fn.__name__)
        try:
            check_section(c.config.get("glmkit"))  # a list or text there: one line, not a crash
            return fn(c, *args, **kwargs)
        except GlmkitError as err:
            raise Exit(code=_views().print_error(err)) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


# invoke's parser fills a task's positional argument before it looks for --help, so
# `invoke bench-data --help` arrived here with out="--help" (and wrote a data set there).
HELP_WORDS = frozenset({"--help", "-h"})


def _print_help(name: str) -> None:
    """invoke's own help for one task, as `invoke --help NAME` prints it."""
    from invoke.collection import Collection
    from invoke.program import Program

    tasks = Collection.from_module(sys.modules[__name__])
    Program(namespace=tasks, binary="invoke").run(
        ["invoke", "--help", tasks.transform(name)], exit=False)


def _task(**kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """A task whose library errors end in one line and an exit code; help from cli_help."""
    return lambda fn: task(_exits(fn), help=task_help(fn, HELP.get(fn.__name__, {})), **kwargs)


def _serve_task(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """A task that takes every serve option; extra vLLM flags go after `--`."""
    own = [p for p in inspect.signature(fn).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=False if name.removeprefix("no_") in BOOL_OPTIONS
                                else None) for name in SERVE_HELP]
    wrapped = _exits(fn)
    wrapped.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
    return task(wrapped, help=task_help(fn, HELP[fn.__name__]), auto_shortflags=False,
                iterable=["model"], **kwargs)


def _flags(c: Context, options: dict[str, Any]) -> dict[str, Any]:
    """The command line's settings: these options (None: not given) and the words after
    `--`."""
    from glmkit.host.settings import flags_from_options, remainder_words

    words = remainder_words(getattr(c, "remainder", "") or "", sys.argv)
    return flags_from_options(options, words, BOOL_OPTIONS)


def _settings(c: Context, options: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """Settings from defaults < invoke.yaml < GLMKIT_* < these options (None: not given)."""
    from glmkit.host.settings import resolve_settings

    return resolve_settings(_flags(c, options), dict(c.config.get("glmkit", {}) or {}),
                            os.environ)


def _deployment(c: Context, options: dict[str, Any], console: Any = None,
                plan_for: Callable[..., Any] | None = None) -> Any:
    """The plan for these options (by `plan_for`, else for this host); its notes printed."""
    from glmkit.cli import views
    from glmkit.host import hardware
    from glmkit.run import deploy

    settings, _ = _settings(c, options)
    deployment = (plan_for or deploy.plan_on_host)(settings, hardware.detect(os.environ),
                                                   os.environ)
    views.print_notes(console or views.console(), deployment.serving.notes)
    return deployment


def _views() -> Any:
    from glmkit.cli import views  # rich and the library load only when a task runs

    return views


def _console() -> Any:
    return _views().console()


def _say(text: object) -> None:
    """A plain line on standard output, through the console that shows control
    characters as '?' (glmkit.text.printable)."""
    _views().say(text)


@_serve_task
def render(c: Context, check: bool = RenderOptions.check, **options: Any) -> None:
    """Write the compose file(s) for a model and vendor under compose/, validated."""
    from glmkit.run.deploy import render

    console = _console()
    deployment = _deployment(c, options, console)
    _views().print_render(console, deployment, render(deployment, COMPOSE_DIR, check=check))


def _secret(value: str | None, path: str | None, option: str) -> str | None:
    """A secret from `--X-file` or (warned: `ps` shows it) `--X`; None: neither."""
    from glmkit.host.credentials import secret_option

    secret, warnings = secret_option(value, path, option)
    _views().print_notes(_views().console(stderr=True), warnings, "warning")
    return secret


@functools.partial(_serve_task, optional=["eval"])  # --eval [N]
def up(c: Context, api_key: str | None = None, api_key_file: str | None = None,
       smoke: bool = UpOptions.smoke, eval: bool | str | None = None, **options: Any
       ) -> None:
    """Start a vLLM server for a model, wait until healthy, and check chat, tools, reasoning."""
    from glmkit.measure.evaluate import run_eval, up_eval_request
    from glmkit.run import deploy

    settings = _settings(c, options)[0]
    gate = up_eval_request(settings.project, eval)  # checked before anything starts
    api_key, console = _secret(api_key, api_key_file, "--api-key"), _console()
    deployment = _deployment(c, options, console)
    result = deploy.up(deployment, api_key, COMPOSE_DIR, ROOT, console, os.environ,
                       smoke=smoke)
    _views().print_up(console, result)
    result.check()
    if gate is not None:  # the accuracy gate after health: one summary line
        report = run_eval(gate, RESULTS_DIR, ROOT, os.environ, settings.hf_cache, console)
        _views().print_eval(console, report)
        report.check()


@_task()
def down(c: Context, project: str | None = None, nodes: str | None = None) -> None:
    """Stop and remove the server's containers (a no-op when nothing runs)."""
    from glmkit.run.deploy import down

    settings, _ = _settings(c, {"project": project, "nodes": nodes})
    for name, was_running in down(settings.project, settings.nodes):
        _say(f"{name}: stopped and removed" if was_running else f"{name}: nothing was running")


@_task()
def logs(c: Context, project: str | None = None, follow: bool = False,
         tail: str | None = None, nodes: str | None = None) -> None:
    """Show the server's logs (`-f` to follow); every node's for a cluster."""
    from glmkit.host.settings import task_option
    from glmkit.run.deploy import show_logs

    settings, _ = _settings(c, {"project": project, "nodes": nodes})
    show_logs(settings.project, settings.nodes, follow=follow,
              tail=task_option("logs", "tail", tail))


@_task()
def status(c: Context, json: bool = False, nodes: str | None = None,
           project: str | None = None) -> None:
    """What glmkit runs here: model, vendor, node, URL, state, restarts, whether the API answers."""
    from glmkit.run.agents import for_project
    from glmkit.run.deploy import statuses

    settings, _ = _settings(c, {"project": project, "nodes": nodes})
    _views().print_status(_console(), statuses(settings.project, settings.nodes), as_json=json)
    if not json:  # how to point an agent at this project's server, when it runs
        _views().print_agents(_console(), for_project(settings.project))


@_task(iterable=["ca_cert"])
def build(c: Context, vendor: str | None = None, model: str | None = None,
          vllm_version: str | None = None, force: bool = False,
          ca_cert: list[str] | None = None) -> None:
    """Build a vLLM image from docker/ (CPU: offline, from a host wheelhouse)."""
    from glmkit.host.settings import task_option
    from glmkit.run.image_build import build_for

    s, src = _settings(c, {"vendor": vendor, "model": model, "vllm_version": vllm_version})
    model_ = s.model if src["model"] != "default" else None
    _say(build_for(s.vendor or task_option("build", "vendor", None), model_, s.vllm_version,
                   ROOT, _console(), os.environ, ca_certs=ca_cert or (), force=force))


@_task()
def pull(c: Context, vendor: str | None = None, model: str | None = None,
         vllm_version: str | None = None, cuda12: bool = False) -> None:
    """Pull vLLM's official image for a vendor (CPU: vLLM's published CPU image)."""
    from glmkit.host.settings import task_option
    from glmkit.run.image_build import pull_for

    s, src = _settings(c, {"vendor": vendor, "model": model, "vllm_version": vllm_version,
                           "cuda12": cuda12})
    model_ = s.model if src["model"] != "default" else None
    _say(pull_for(s.vendor or task_option("pull", "vendor", None), model_, s.vllm_version,
                  s.cuda12, _console(), os.environ))


@_task()
def login(c: Context, token: str | None = None, token_file: str | None = None) -> None:
    """Log in to Hugging Face; the token is stored by huggingface_hub, never in this repo."""
    from glmkit.host.credentials import login as hf_login

    token = _secret(token, token_file, "--token")
    user = hf_login(token, os.environ, interactive=sys.stdin.isatty())
    _say(f"logged in to Hugging Face as {user}")


@_task()
def tiny_model(c: Context, layers: str | None = None, force: bool = False,
               vision: bool = False) -> None:
    """Generate the tiny GLM-4 MoE model (or, --vision, GLM-4.5V) inside the CPU image."""
    from glmkit.host.settings import task_option
    from glmkit.run.image_build import tiny_model as make_tiny

    _say(make_tiny(ROOT, _console(), os.environ,
                   layers=task_option("tiny_model", "layers", layers), force=force,
                   vision=vision))


@_task()
def models(c: Context) -> None:
    """Every served checkpoint: family, precision, size, context, parsers, min vLLM, source."""
    from glmkit.knowledge.catalog import catalog

    _console().print(_views().models_table(catalog(os.environ).values()))


@_serve_task
def config(c: Context, **options: Any) -> None:
    """Show the resolved settings and where each comes from (default, invoke.yaml, env, flag)."""
    settings, sources = _settings(c, options)
    _console().print(_views().settings_table(settings.values(), sources))


@_task()
def bench(c: Context, project: str | None = None, workload: str | None = None,
          batch: str | None = None, mode: str | None = None, input_len: str | None = None,
          output_len: str | None = None, num_prompts: str | None = None,
          request_rate: str | None = None, label: str | None = None,
          resume: str | None = None, dataset_path: str | None = None,
          off_project: str | None = None, sessions: str | None = None,
          turns: str | None = None, model: str | None = None) -> None:
    """Benchmark the running server with `vllm bench serve` inside its container."""
    from glmkit.host import hardware
    from glmkit.measure.bench import parse_request, run_bench
    from glmkit.paths import hf_cache

    settings = _settings(c, {"project": project})[0]
    if workload == "agentic":  # multi-turn sessions, prefix caching on vs off
        from glmkit.measure.agentic import bench_agentic, parse_spec

        _views().print_agentic(_console(), bench_agentic(
            settings.project, off_project, parse_spec(sessions, turns, output_len),
            RESULTS_DIR, lambda _: None))
        return
    request = parse_request(
        settings.project, workload=workload, batch=batch,
        mode=mode, input_len=input_len, output_len=output_len, num_prompts=num_prompts,
        request_rate=request_rate, label=label, resume=resume, model=model,
        dataset_path=dataset_path, hf_cache=hf_cache(os.environ, settings.hf_cache))
    outcome = run_bench(request, RESULTS_DIR, ROOT, hardware.detect(os.environ), _console())
    _views().print_report(_console(), [outcome.series], outcome.path)
    outcome.check()


@_task()
def check(c: Context, project: str | None = None, api: str | None = None,
          verbose: bool = False, model: str | None = None) -> None:
    """Tool-call conformance of the running server per API: every tool_choice, streamed and not."""
    from glmkit.host.settings import task_option
    from glmkit.run.api_check import check_server

    settings, _ = _settings(c, {"project": project})
    report = check_server(settings.project, RESULTS_DIR, task_option("check", "api", api), model)
    _views().print_check(_console(), report, verbose)
    report.check()


@_task(auto_shortflags=False)
def eval(c: Context, project: str | None = None, protocol: str | None = None,
         limit: str | None = None, seed: str | None = None, concurrency: str | None = None,
         dataset: str | None = None, against: str | None = None, save_baseline: bool = False,
         model: str | None = None, label: str | None = None, verbose: bool = False) -> None:
    """GSM8K against the running server: score, interval, and a gate on published scores."""
    from glmkit.measure.evaluate import parse_request, run_eval

    settings = _settings(c, {"project": project})[0]
    report = run_eval(parse_request(
        settings.project, protocol=protocol, dataset=dataset, limit=limit, seed=seed,
        concurrency=concurrency, against=against, save_baseline=save_baseline, model=model,
        label=label), RESULTS_DIR, ROOT, os.environ, settings.hf_cache, _console())
    _views().print_eval(_console(), report, verbose)
    report.check()


@_task(iterable=["runs"])
def report(c: Context, runs: list[str] | None = None, compare: bool = False,
           out: str | None = None) -> None:
    """Tables, plots and CSV over benchmark runs; `--compare` two of them; accuracy beside."""
    from glmkit.measure.eval_runs import split_report
    from glmkit.measure.results import load_report, report_folder

    bench, accuracy = split_report(RESULTS_DIR, list(runs or []))
    if bench is not None:
        series, skipped = load_report(RESULTS_DIR, bench)
        _views().print_report(_console(), series, report_folder(RESULTS_DIR, out),
                              compare=compare, csv=True, notes=skipped)
    _views().print_accuracy(_console(), accuracy)


@_task()
def doctor(c: Context, vendor: str | None = None, model: str | None = None,
           port: str | None = None, host: str | None = None) -> None:
    """Check this machine: Docker, Compose, GPUs and devices, disk, port, HF token, image."""
    from glmkit.run.doctor import diagnose, raise_for_failures, render_lines

    checks = diagnose(*_settings(c, {"vendor": vendor, "model": model, "port": port,
                                     "host": host}), os.environ)
    _console().print("\n".join(render_lines(checks)), highlight=False)
    raise_for_failures(checks)


@_task()
def download(c: Context, model: str | None = None, revision: str | None = None,
             hf_cache: str | None = None, dataset: str | None = None) -> None:
    """Pre-download a model's weights (or a bench data set) into the HF cache (resumable)."""
    from glmkit.host.hub import download_model
    from glmkit.measure.bench_data import download_dataset
    from glmkit.paths import hf_cache as cache_dir

    cache = cache_dir(os.environ, hf_cache)
    if dataset is not None:
        _say(download_dataset(dataset, revision, cache, os.environ))
    else:
        _say(download_model(model or "", revision, cache, os.environ))


@_task()
def bench_data(c: Context, out: str, rows: str | None = None) -> None:
    """Write a small VisionArena-Chat data set (parquet) for `bench --dataset-path`."""
    from glmkit.host.settings import task_option
    from glmkit.knowledge.images import CPU_IMAGE
    from glmkit.measure.bench_data import make_sample

    info = make_sample(CPU_IMAGE.ref, out, ROOT / "scripts",
                       task_option("bench_data", "rows", rows))
    _say(f"wrote {info['rows']} rows ({info['revision']}) to {info['path']}")


@_task(iterable=["model"])
def plan(c: Context, model: list[str] | None = None, vendor: str | None = None,
         gpu_count: str | None = None, gpu: str | None = None, gpu_mem: str | None = None,
         tp: str | None = None, batch: str | None = None, context: str | None = None,
         gpu_memory_utilization: str | None = None, nodes: str | None = None,
         strategy: str | None = None, goal: str | None = None,
         sleep_level: str | None = None) -> None:
    """Will a model fit these GPUs: BF16/FP8, TP and DP, max context, offload, decode time."""
    from glmkit.host import hardware
    from glmkit.plan.advice import advise_all, plan_request

    settings, _ = _settings(c, dict(model=model, vendor=vendor, gpu_count=gpu_count, gpu=gpu,
                                    gpu_mem=gpu_mem, tp=tp, nodes=nodes, strategy=strategy,
                                    gpu_memory_utilization=gpu_memory_utilization,
                                    sleep_level=sleep_level))
    request = plan_request(settings, batch=batch, context=context, goal=goal)
    _views().print_advice(_console(), *advise_all(request, hardware.detect(os.environ),
                                                  os.environ))


@_serve_task
def tune(c: Context, workload: str | None = None, batch: str | None = None,
         slo: str | None = None, budget: str | None = None, candidates: str | None = None,
         resume: str | None = None, eval_limit: str | None = None, **options: Any) -> None:
    """Search the recipe's knobs for a workload under an SLO; write the winner's settings."""
    from glmkit.host import hardware
    from glmkit.measure.tune import parse_request, run_tune

    # A resumed tune resolves its saved settings (no more trusted than invoke.yaml) under
    # this command line's.
    report = run_tune(parse_request(
        _settings(c, options)[0], workload=workload, batch=batch, slo=slo, budget=budget,
        candidates=candidates, resume=resume, eval_limit=eval_limit,
        flags=_flags(c, options)),
        hardware.detect(os.environ), os.environ, ROOT, _console())
    _views().print_tune(_console(), report)


@_task()
def tune_moe(c: Context, project: str | None = None, budget: str | None = None) -> None:
    """Tune vLLM's fused-MoE kernel for the running model; kept only where it beats vLLM's."""
    from glmkit.host.settings import task_option
    from glmkit.measure.moe_tune import tune_moe as run_tuner

    settings = _settings(c, {"project": project})[0]
    _views().print_tune_moe(_console(), run_tuner(settings.project,
                                                  task_option("tune_moe", "budget", budget)))


@_serve_task
def export(c: Context, target: str, **options: Any) -> None:
    """Export the plan for another platform: `invoke export k8s` writes Kubernetes manifests."""
    from glmkit.errors import UsageError
    from glmkit.run.deploy import export_k8s, plan_for_export

    if target != "k8s":
        raise UsageError(f"Unknown export target {target[:40]!r}; `k8s` is the one there "
                         "is.")
    done = export_k8s(_deployment(c, options, plan_for=plan_for_export), COMPOSE_DIR)
    _say(f"{done.path} ({', '.join(done.kinds)}; {done.validation})")


@_task(positional=["action"])
def recipes(c: Context, action: str, from_: str | None = None) -> None:
    """The recipe book: where model knowledge comes from; `sync` the newest, `diff` it."""
    from glmkit.errors import UsageError
    from glmkit.knowledge import recipes as book

    console = _console()
    if action == "sync":
        result = book.sync(from_, os.environ)
        _views().print_notes(console, result.notes, "skipped")
        _views().print_notes(console, result.unknown_notes(), "unknown keys")
        console.print(result.describe(), highlight=False, markup=False)
    elif action in ("diff", "list"):
        loaded = book.load_book(os.environ)
        console.print(_views().recipe_diff_table(book.diff(os.environ)) if action == "diff"
                      else _views().recipes_table(loaded))
        _views().print_notes(console, loaded.notes)
    else:
        raise UsageError(f"Unknown action {action[:40]!r}: list, sync or diff.")
