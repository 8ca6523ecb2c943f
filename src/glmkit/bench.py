"""`vllm bench serve` inside the serving container, via `docker exec`.

Running the client in the server's own container means the same vLLM version and
tokenizer on both ends and no client install on the host. The result JSON is copied
out with `docker cp` into a new folder under results/, never over an earlier one.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from glmkit import __version__
from glmkit.errors import BenchFailed, CommandFailed, UsageError
from glmkit.plan import LABEL
from glmkit.process import run, stream

CONTAINER_RESULTS = "/tmp/glmkit-bench"
# Tokens left for the chat template and special tokens when lengths are fitted.
FIT_MARGIN = 64


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Defaults are the recipes' prompt-heavy run (8000 in / 1000 out, 16 prompts)."""

    input_len: int = 8000
    output_len: int = 1000
    num_prompts: int = 16
    request_rate: str = "10000"
    max_concurrency: int | None = None
    ignore_eos: bool = True
    seed: int = 0


@dataclass(frozen=True)
class Target:
    """What bench needs to know of the running server; read from the container's labels."""

    container: str
    served_model: str
    model_ref: str
    max_model_len: int
    vendor: str
    image: str
    serve_args: tuple[str, ...]


def target_from_container(container: Any) -> Target:
    labels = container.labels
    try:
        return Target(container=container.name, served_model=labels[f"{LABEL}.served-model"],
                      model_ref=labels[f"{LABEL}.model-ref"],
                      max_model_len=int(labels[f"{LABEL}.max-model-len"]),
                      vendor=labels[f"{LABEL}.vendor"], image=labels[f"{LABEL}.image"],
                      serve_args=tuple(container.attrs["Config"].get("Cmd") or ()))
    except KeyError as err:
        raise UsageError(f"Container {container.name} was not started by this glmkit version "
                         f"(missing label {err}); run `invoke up` again.") from None


def fit_lengths(input_len: int, output_len: int, max_model_len: int) -> tuple[int, int, bool]:
    """Scale input and output down, keeping their ratio, when they exceed the context."""
    budget = max_model_len - FIT_MARGIN
    if input_len + output_len <= budget:
        return input_len, output_len, False
    scale = budget / (input_len + output_len)
    return max(1, int(input_len * scale)), max(1, int(output_len * scale)), True


def bench_argv(target: Target, cfg: BenchConfig, result_name: str) -> list[str]:
    argv = ["vllm", "bench", "serve",
            "--model", target.served_model, "--tokenizer", target.model_ref,
            "--dataset-name", "random",
            "--random-input-len", str(cfg.input_len),
            "--random-output-len", str(cfg.output_len),
            "--num-prompts", str(cfg.num_prompts),
            "--request-rate", cfg.request_rate,
            "--seed", str(cfg.seed),
            "--save-result", "--result-dir", CONTAINER_RESULTS,
            "--result-filename", result_name]
    if cfg.max_concurrency:
        argv += ["--max-concurrency", str(cfg.max_concurrency)]
    if cfg.ignore_eos:
        argv.append("--ignore-eos")
    return argv


def new_run_dir(results_dir: Path, target: Target, label: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{target.served_model.rsplit('/', 1)[-1]}-{target.vendor}-{label}"
    for n in range(1000):
        candidate = results_dir / (base if n == 0 else f"{base}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise BenchFailed(f"Could not create a new results folder under {results_dir}.")


def run_bench(target: Target, cfg: BenchConfig, results_dir: Path, console: Console,
              label: str = "prompt-heavy") -> tuple[Path, dict[str, Any]]:
    in_len, out_len, fitted = fit_lengths(cfg.input_len, cfg.output_len, target.max_model_len)
    if fitted:
        console.print(f"[yellow]{cfg.input_len}+{cfg.output_len} tokens exceed the served "
                      f"context ({target.max_model_len}); using {in_len}/{out_len}.[/yellow]")
    cfg = BenchConfig(**{**asdict(cfg), "input_len": in_len, "output_len": out_len})
    result_name = "result.json"
    argv = bench_argv(target, cfg, result_name)
    # OPENAI_API_KEY is named without a value: docker passes it on from this process.
    exec_argv = ["docker", "exec", "-e", "OPENAI_API_KEY", target.container, *argv]
    console.print(f"[dim]$ docker exec {target.container} {' '.join(argv)}[/dim]")
    started = time.time()
    try:
        stream(exec_argv, hint="The benchmark client failed; its output is above.")
    except CommandFailed as err:
        raise BenchFailed(f"`vllm bench serve` exited with code {err.returncode} in "
                          f"{target.container}; its output is above.") from None
    run_dir = new_run_dir(results_dir, target, label)
    with tempfile.TemporaryDirectory() as tmp:
        run(["docker", "cp", f"{target.container}:{CONTAINER_RESULTS}/{result_name}", tmp])
        result: dict[str, Any] = json.loads((Path(tmp) / result_name).read_text())
    (run_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    meta = {
        "glmkit_version": __version__, "started": started, "finished": time.time(),
        "workload": label, "bench": asdict(cfg), "bench_argv": argv,
        "model": target.served_model, "vendor": target.vendor, "image": target.image,
        "serve_args": list(target.serve_args), "container": target.container,
    }
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return run_dir, result


SUMMARY_FIELDS = [
    ("completed", "Successful requests", "{:.0f}"),
    ("failed", "Failed requests", "{:.0f}"),
    ("duration", "Duration (s)", "{:.2f}"),
    ("request_throughput", "Requests/s", "{:.2f}"),
    ("output_throughput", "Output tok/s", "{:.2f}"),
    ("total_token_throughput", "Total tok/s", "{:.2f}"),
    ("mean_ttft_ms", "Mean TTFT (ms)", "{:.2f}"),
    ("p99_ttft_ms", "P99 TTFT (ms)", "{:.2f}"),
    ("mean_tpot_ms", "Mean TPOT (ms)", "{:.2f}"),
    ("p99_tpot_ms", "P99 TPOT (ms)", "{:.2f}"),
    ("mean_itl_ms", "Mean ITL (ms)", "{:.2f}"),
]


def summary_table(result: dict[str, Any], title: str) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, name, fmt in SUMMARY_FIELDS:
        if isinstance(result.get(key), int | float):
            table.add_row(name, fmt.format(result[key]))
    return table
