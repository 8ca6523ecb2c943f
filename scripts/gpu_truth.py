"""GPU truth: serve glmkit's rendered command on a real GPU with random weights of the
model's published shape, record vLLM's own memory accounting and `vllm bench serve`
points, and store them as runs `invoke report` shows beside the recipes' ref: runs.

Two steps, so the GPU host needs neither Docker, a registry nor the Hub:

    # where glmkit is installed (renders exactly what a user gets):
    python scripts/gpu_truth.py prepare --model zai-org/GLM-4.7-Flash [--mtp] \
        --gpu "NVIDIA H200" --gpu-mem-mib 143771 --out layouts/flash-bf16
    # on the GPU host (vLLM importable, e.g. from carried wheels on PYTHONPATH):
    python3 scripts/gpu_truth.py run layouts/flash-bf16 --results results \
        --concurrency 1,16,64 [--tuned-moe DIR] [--tag tuned]
    python3 scripts/gpu_truth.py tune-moe layouts/flash-bf16 --out moe-configs

`prepare` runs `invoke render --vendor nvidia` on a hardware file naming the GPU and
keeps the vllm argv of the compose file, with the model's published config.json (the
kit's built-in copy, glmkit/knowledge/configs/, or the HF cache). `run` changes two
things only: the model id becomes a local folder (that config.json and a generated
tokenizer covering every id) and `--load-format dummy` is added. Dummy weights give
every layer the same router, so decode runs with uniform expert routing
(VLLM_MOE_ROUTING_SIMULATION_STRATEGY=uniform_random), recorded in each run's provenance.
One server start per layout; each start is healthy-or-fail within --health-timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # glmkit's own readers, also on a GPU host without it
CONFIGS = ROOT / "src" / "glmkit" / "knowledge" / "configs"
BENCH_INPUT, BENCH_OUTPUT = 1000, 200
# Prompts per point: enough waves for a steady median, few enough for a 30-minute lease.
PROMPTS = {1: 10, 16: 64, 64: 192}

LAUNCHER = '''import sys
from vllm.entrypoints.cli.main import main
if __name__ == "__main__":  # the engine core is spawned and re-imports this module
    sys.exit(main())
'''

# GLM's special and markup tokens: the glm45/glm47 parsers look them up by text.
SPECIAL = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>",
           "<|user|>", "<|assistant|>", "<|observation|>", "<|begin_of_image|>",
           "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>"]
MARKUP = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>",
          "<arg_value>", "</arg_value>", "<tool_response>", "</tool_response>", "/nothink"]
CHAT_TEMPLATE = ("[gMASK]<sop>{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n<think>"
                 "{% endif %}")

# vLLM's log lines this run keeps (0.26; each optional, the raw line kept too).
MEMORY_PATTERNS = {
    "weights_gib": r"Model loading took ([\d.]+) GiB",
    "load_seconds": r"Model loading took [\d.]+ GiB memory and ([\d.]+) seconds",
    "kv_cache_gib": r"Available KV cache memory: ([\d.]+) GiB",
    "kv_tokens": r"GPU KV cache size: ([\d,]+) tokens",
    "max_concurrency": r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x",
    "total_gib": r"Free memory on device \([\d.]+/([\d.]+) GiB\)",
    "requested_gib": r"Desired GPU memory utilization is \([\d.]+, ([\d.]+) GiB\)",
    "activation_peak_gib": r"([\d.]+) GiB for peak activation",
    "non_torch_gib": r"([\d.]+) GiB for non-torch memory",
    "cuda_graph_gib": r"([\d.]+) GiB for CUDAGraph memory",
    "cuda_graph_estimate_gib": r"CUDA graph pool memory: [\d.]+ GiB \(actual\), ([\d.]+) GiB",
    "cuda_graph_seconds": r"Graph capturing finished in (\d+) secs",
    "compile_seconds": r"torch.compile took ([\d.]+) s in total",
    "default_moe_config": r"(Using default MoE config)",
    "tuned_moe_config": r"Using configuration from (\S+) for MoE layer",
    "routing_simulation": r"(Simulating MoE routing)",
}


def _glmkit_key(model_id: str) -> str:
    return model_id.rsplit("/", 1)[-1]


def published_config(model_id: str, hf_cache: Path | None) -> dict[str, Any]:
    """The model's config.json: the kit's built-in copy, else the HF cache's."""
    builtin = CONFIGS / f"{_glmkit_key(model_id)}.json"
    if builtin.is_file():
        data: dict[str, Any] = json.loads(builtin.read_text())
        return data
    if hf_cache is not None:
        from glmkit.knowledge.sizing import cached_config  # the kit's bounded reader

        if (cached := cached_config(hf_cache, model_id)) is not None:
            return cached
    raise SystemExit(f"No config.json for {model_id}: none built in ({CONFIGS}) and none "
                     "in the HF cache (`invoke download` it, config only).")


# --- prepare (where glmkit is installed) ----------------------------------------------------

def prepare(args: argparse.Namespace) -> None:
    if shutil.which("invoke") is None:
        raise SystemExit("`invoke` is not on PATH: run prepare where glmkit is installed "
                         "(e.g. with .venv/bin on PATH).")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SystemExit(f"--out {out}: {err}") from None
    hardware = out / "hardware.json"
    hardware.write_text(json.dumps({
        "vendor": "nvidia", "driver_version": args.driver,
        "gpus": [{"index": i, "name": args.gpu, "memory_mib": args.gpu_mem_mib}
                 for i in range(args.gpus)]}))
    project = "gpu-truth"
    argv = ["invoke", "render", "--vendor", "nvidia", "--model", args.model,
            "--project", project, "--no-check", *(["--mtp"] if args.mtp else []),
            *args.extra]
    env = {**os.environ, "GLMKIT_HARDWARE": str(hardware)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"invoke render failed ({done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()}")
    import yaml

    compose_file = ROOT / "compose" / f"{project}.yaml"
    compose = yaml.safe_load(compose_file.read_text())
    compose_file.unlink()
    service = compose["services"]["vllm"]
    entry, command = service["entrypoint"], service["command"]
    if entry != ["vllm", "serve"]:
        raise SystemExit(f"unexpected entrypoint {entry}")
    environment = dict(item.split("=", 1) for item in service.get("environment", [])
                       if "=" in item)
    model_dir = out / "model"
    model_dir.mkdir(exist_ok=True)
    config = published_config(args.model, Path(args.hf_cache) if args.hf_cache else None)
    (model_dir / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    layout = {
        "model": args.model, "mtp": args.mtp, "serve_args": command[1:],
        "environment": environment, "image": service["image"],
        "start_period": service["healthcheck"]["start_period"],
        "render": " ".join(argv), "notes": done.stderr.strip().splitlines(),
        "glmkit_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                        capture_output=True, text=True,
                                        check=False).stdout.strip(),
    }
    (out / "layout.json").write_text(json.dumps(layout, indent=1) + "\n")
    print(f"{out}: vllm serve {args.model} {' '.join(command[1:])}")


# --- run (on the GPU host) ------------------------------------------------------------------

def make_tokenizer(model_dir: Path, vocab_size: int) -> None:
    """A WordLevel tokenizer that decodes every id of the model's vocabulary, with GLM's
    special and markup tokens at the top ids (no Hub download)."""
    if (model_dir / "tokenizer.json").is_file():
        return
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    named = SPECIAL + MARKUP
    plain = vocab_size - len(named)
    vocab = {f"w{i}": i for i in range(plain)}
    vocab.update({token: plain + n for n, token in enumerate(named)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="w0",
                                   additional_special_tokens=SPECIAL[1:])
    fast.add_tokens(MARKUP)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(model_dir))


def serve_argv(layout: dict[str, Any], model_dir: Path, port: int) -> list[str]:
    """The rendered args, the model id replaced by the folder, `--load-format dummy`
    added; the container's 0.0.0.0 becomes loopback on a host without a container."""
    args = list(layout["serve_args"])
    for i, word in enumerate(args[:-1]):
        if word == "--host":
            args[i + 1] = "127.0.0.1"
        elif word == "--port":
            args[i + 1] = str(port)
    return [str(model_dir), *args, "--load-format", "dummy"]


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-40:]
            lines = "\n".join(tail)
            raise SystemExit(f"vllm serve exited with {proc.returncode} before healthy:\n{lines}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return time.monotonic() - started
        except OSError:
            time.sleep(1)
    raise SystemExit(f"not healthy within {timeout:.0f} s; see {log}")


def memory_facts(text: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for key, pattern in MEMORY_PATTERNS.items():
        match = re.search(pattern, text)
        if not match:
            continue
        if key == "max_concurrency":
            facts["max_concurrency_context"] = int(match.group(1).replace(",", ""))
            facts[key] = float(match.group(2))
        elif key in ("default_moe_config", "routing_simulation"):
            facts[key] = True
        elif key == "tuned_moe_config":
            facts[key] = match.group(1)
        else:
            value = match.group(1).replace(",", "")
            facts[key] = float(value) if "." in value else int(value)
    facts["lines"] = [line for line in text.splitlines()
                      if re.search("|".join(MEMORY_PATTERNS.values()), line)][:40]
    return facts


def host_facts() -> dict[str, Any]:
    import torch

    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True,
                         check=False).stdout.strip().splitlines()
    name, memory, driver = (p.strip() for p in smi[0].split(",")) if smi else ("?", "0", "?")
    import vllm

    return {"gpu": name, "memory_mib": int(float(memory)), "driver": driver,
            "gpu_count": torch.cuda.device_count(), "vllm": vllm.__version__,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "date": time.strftime("%Y-%m-%d")}


def bench(launcher: Path, layout: dict[str, Any], model_dir: Path, port: int,
          concurrency: int, out: Path, env: dict[str, str]) -> dict[str, Any]:
    served = layout["model"]
    name = f"c{concurrency}.json"
    argv = [sys.executable, str(launcher), "bench", "serve", "--model", served,
            "--tokenizer", str(model_dir), "--base-url", f"http://127.0.0.1:{port}",
            "--dataset-name", "random", "--random-input-len", str(BENCH_INPUT),
            "--random-output-len", str(BENCH_OUTPUT), "--ignore-eos",
            "--num-prompts", str(PROMPTS.get(concurrency, 3 * concurrency)),
            "--max-concurrency", str(concurrency), "--request-rate", "inf", "--seed", "0",
            "--save-result", "--result-dir", str(out), "--result-filename", name]
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                              timeout=400)
    except subprocess.TimeoutExpired:  # a point that does not finish is a failed point
        return {"failed": True, "error": "vllm bench serve did not finish in 400 s"}
    if done.returncode != 0 or not (out / name).is_file():
        return {"failed": True, "error": (done.stderr or done.stdout)[-2000:]}
    result: dict[str, Any] = json.loads((out / name).read_text())
    return result


def read_layout(folder: Path) -> dict[str, Any]:
    """A prepared layout, or one line saying what is missing."""
    try:
        layout: dict[str, Any] = json.loads((folder / "layout.json").read_text())
        return layout
    except (OSError, ValueError) as err:
        raise SystemExit(f"{folder} is not a layout from `gpu_truth.py prepare` ({err})") \
            from None


# What `run` imports beyond the standard library, found before the server starts: a
# module missing on the GPU host cost a whole start when it surfaced after healthy
# (RECIPES.md §14). The results store is imported for real (its own imports are what
# was missing); vLLM and the rest only looked up, importing them takes a while.
STORE_MODULES = ("glmkit.measure.results", "glmkit.measure.workloads", "glmkit.vllm_args")
RUN_MODULES = {"vllm": "the server and `vllm bench serve`", "torch": "the host's facts",
               "transformers": "the generated tokenizer", "tokenizers": "the generated "
               "tokenizer"}
# What vLLM's FP8 path imports besides its own wheel (docs/gpu.md: the GLM FP8 runs).
QUANTIZED_MODULES = {"compressed_tensors": "vLLM's FP8 layers (the compressed-tensors "
                     "wheel)", "loguru": "compressed-tensors"}


def check_imports(quantized: bool = False) -> None:
    """Every module `run` needs is importable (with a `quantized` checkpoint, what vLLM's
    FP8 path imports too); else one line naming the first missing."""
    import importlib
    import importlib.util

    where = "docs/gpu.md lists what the GPU host needs"
    for module in STORE_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as err:
            # The package to install: `docker`, not the `docker.client` it failed on.
            missing = (err.name or str(err).splitlines()[0][:80]).split(".")[0]
            raise SystemExit(f"gpu_truth.py run: Python module {missing!r} is not "
                             f"importable (the results store, {module}, needs it); "
                             f"{where}.") from None
    for name, why in {**RUN_MODULES, **(QUANTIZED_MODULES if quantized else {})}.items():
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package that fails, a broken entry
            found = False
        if not found:
            raise SystemExit(f"gpu_truth.py run: Python module {name!r} is not importable "
                             f"({why}); {where}.")


def run(args: argparse.Namespace) -> None:
    folder = Path(args.layout)
    layout = read_layout(folder)
    Path(args.results).mkdir(parents=True, exist_ok=True)
    model_dir = (folder / "model").resolve()
    config = json.loads((model_dir / "config.json").read_text())
    # Before the server: a missing module costs seconds, not a start.
    check_imports(quantized=bool(config.get("quantization_config")))
    make_tokenizer(model_dir, int(config.get("text_config", config)["vocab_size"]))
    work = Path(tempfile.mkdtemp(prefix="gpu-truth-"))
    launcher = work / "vllm_main.py"
    launcher.write_text(LAUNCHER)
    env = {**os.environ, **layout["environment"],
           "VLLM_MOE_ROUTING_SIMULATION_STRATEGY": "uniform_random",
           "VLLM_USE_FLASHINFER_SAMPLER": "0", "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_HOME", None)  # the container's path; nothing is downloaded here
    if args.tuned_moe:
        env["VLLM_TUNED_CONFIG_FOLDER"] = str(Path(args.tuned_moe).resolve())
    argv = [sys.executable, str(launcher), "serve",
            *serve_argv(layout, model_dir, args.port)]
    log = work / "serve.log"
    started = time.time()
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        healthy_s = wait_healthy(proc, args.port, log, args.health_timeout)
        facts = memory_facts(log.read_text(errors="replace"))
        print(json.dumps({k: v for k, v in facts.items() if k != "lines"}), flush=True)
        provenance = {**host_facts(), "weights": "dummy (--load-format dummy)",
                      "routing": "uniform_random (VLLM_MOE_ROUTING_SIMULATION_STRATEGY)",
                      "tuned_moe": bool(args.tuned_moe),
                      "time_to_healthy_s": round(healthy_s, 1), "memory": facts,
                      "rendered_image": layout["image"],
                      "rendered_start_period": layout["start_period"],
                      "glmkit_commit": layout["glmkit_commit"], "started": started}
        concurrency = [int(c) for c in args.concurrency.split(",")]
        # The run exists before the first point, and each point is stored as it
        # finishes: a lease or timeout that ends the step keeps what was measured.
        stored = create_store(args, layout, provenance, concurrency)
        for c in concurrency:
            point = bench(launcher, layout, model_dir, args.port, c, work, env)
            if point.get("failed"):
                stored.save_failure(c, point)
            else:
                stored.save_point(c, point)
            print(f"c={c}: median TPOT {point.get('median_tpot_ms', float('nan')):.2f} ms, "
                  f"output {point.get('output_throughput', float('nan')):.0f} tok/s"
                  f"{' FAILED' if point.get('failed') else ''}", flush=True)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have died on its own
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.copy(log, Path(args.results) / f"{args.tag or 'run'}-"
                    f"{_glmkit_key(layout['model'])}{'-mtp' if layout['mtp'] else ''}.serve.log")
        shutil.rmtree(work, ignore_errors=True)


def create_store(args: argparse.Namespace, layout: dict[str, Any], provenance: dict[str, Any],
                 concurrency: list[int]) -> Any:
    """A run in the results store with a point per concurrency, as `invoke bench` writes."""
    from glmkit.measure.results import GpuInfo, HardwareMeta, RunMeta, create_run
    from glmkit.measure.workloads import Point, Workload

    results = Path(args.results)
    gpu = provenance["gpu"].replace(" ", "-")
    label = "-".join(filter(None, [gpu, _glmkit_key(layout["model"]),
                                   "mtp" if layout["mtp"] else "", args.tag]))
    workload = Workload(name="random-1000-200", description="random 1000 in / 200 out, "
                        "--ignore-eos (GPU truth)", input_len=BENCH_INPUT,
                        output_len=BENCH_OUTPUT)
    meta = RunMeta(
        label=re.sub(r"[^A-Za-z0-9._-]+", "-", label)[:100], model=layout["model"],
        vendor="cuda", image=f"vllm {provenance['vllm']} wheel (no container)",
        serve_args=(*layout["serve_args"], "--load-format", "dummy"),
        max_model_len=_flag_int(layout["serve_args"], "--max-model-len"),
        workload=workload, mode="concurrency",
        points=tuple(Point(batch=c, num_prompts=PROMPTS.get(c, 3 * c), max_concurrency=c,
                           request_rate="inf") for c in concurrency),
        hardware=HardwareMeta(vendor="cuda", description=f"{provenance['gpu_count']} × "
                              f"{provenance['gpu']} (driver {provenance['driver']})",
                              gpus=(GpuInfo(provenance["gpu"], provenance["memory_mib"], 0),)),
        glmkit_commit=layout["glmkit_commit"], created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        provenance=provenance)
    stored = create_run(results, meta)
    print(f"stored {stored.path}", flush=True)
    return stored


def _flag_int(args: list[str], flag: str) -> int | None:
    from glmkit.vllm_args import flag_value  # `--flag N` and `--flag=N`, the last one wins

    value = flag_value(args, flag)
    return int(value) if value is not None else None


# --- tune-moe (on the GPU host) -------------------------------------------------------------

def tune_moe(args: argparse.Namespace) -> None:
    """vLLM's fused-MoE kernel tuned for this layout's expert shape (measure/moe_tuner)."""
    from glmkit.knowledge.gpu_model import moe_split
    from glmkit.measure.moe_tuner import format_args

    layout = read_layout(Path(args.layout))
    config = json.loads((Path(args.layout) / "model" / "config.json").read_text())
    text = config.get("text_config", config)
    try:
        # The checkpoint's format (GLM-4.x FP8: channel-wise, no blocks) and one rank's
        # split as the layout's vLLM makes it.
        fmt, split = format_args(config), moe_split(layout["serve_args"])
    except ValueError as err:
        raise SystemExit(f"tune-moe: {err}") from None
    argv = [sys.executable, str(ROOT / "src" / "glmkit" / "measure" / "moe_tuner.py"),
            "--experts", str(text["n_routed_experts"]),
            "--intermediate", str(text["moe_intermediate_size"]),
            "--hidden", str(text["hidden_size"]), "--topk", str(text["num_experts_per_tok"]),
            "--tp", str(split.tp), "--ep", str(split.ep), "--out", args.out,
            "--budget-s", str(args.budget_s), "--dtype", fmt["dtype"],
            *(["--block", fmt["block"]] if fmt["block"] else []),
            *(["--per-channel"] if fmt["per_channel"] else [])]
    subprocess.run(argv, check=True)


# The bench JSON keys a reference file carries, as `vllm bench serve` prints them.
REFERENCE_LINES = {"completed": "Successful requests", "duration": "Benchmark duration (s)",
                   "total_input_tokens": "Total input tokens",
                   "total_output_tokens": "Total generated tokens",
                   "request_throughput": "Request throughput (req/s)",
                   "output_throughput": "Output token throughput (tok/s)",
                   "max_concurrency": "Maximum request concurrency",
                   "mean_ttft_ms": "Mean TTFT (ms)", "median_ttft_ms": "Median TTFT (ms)",
                   "p99_ttft_ms": "P99 TTFT (ms)", "mean_tpot_ms": "Mean TPOT (ms)",
                   "median_tpot_ms": "Median TPOT (ms)", "p99_tpot_ms": "P99 TPOT (ms)",
                   "mean_itl_ms": "Mean ITL (ms)", "median_itl_ms": "Median ITL (ms)",
                   "p99_itl_ms": "P99 ITL (ms)"}


def reference(args: argparse.Namespace) -> None:
    """Each point of a stored run as a reference file glmkit ships (`invoke report
    ref:NAME`), its provenance in the header."""
    run = Path(args.run)
    try:
        meta = json.loads((run / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"{run} is not a stored run ({err})") from None
    prov = meta["provenance"]
    out = Path(args.out)
    for point in sorted((run / "points").glob("batch-*.json")):
        result = json.loads(point.read_text())
        c = int(point.stem.removeprefix("batch-"))
        name = f"{args.name}-c{c}"
        header = [f"# Measured by scripts/gpu_truth.py: {prov['gpu']} (driver {prov['driver']}),"
                  f" vLLM {prov['vllm']}, {prov['date']}; weights {prov['weights']}; routing "
                  f"{prov['routing']}; glmkit-tuned MoE config: {prov['tuned_moe']}; vLLM's MoE "
                  f"config: {_moe_config_used(prov.get('memory') or {})}",
                  f"# model: {meta['model']}", "# vendor: cuda",
                  f"# workload: {meta['workload']['name']}", "# mode: concurrency",
                  f"# batch: {c}", f"# hardware: {meta['hardware']['description']}"]
        body = [f"{label}: {result[key]:.2f}" for key, label in REFERENCE_LINES.items()
                if isinstance(result.get(key), int | float)]
        (out / f"{name}.txt").write_text("\n".join([*header, *body]) + "\n")
        print(out / f"{name}.txt")


def _moe_config_used(memory: dict[str, Any]) -> str:
    """Which fused-MoE config vLLM ran with: a file (shipped or tuned) or its default."""
    if memory.get("tuned_moe_config"):
        return Path(str(memory["tuned_moe_config"])).name
    return "default (none for this shape)" if memory.get("default_moe_config") else "not logged"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--model", required=True)
    p.add_argument("--mtp", action="store_true")
    p.add_argument("--gpu", default="NVIDIA H200")
    p.add_argument("--gpu-mem-mib", type=int, default=143771)
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--driver", default="580.159.03")
    p.add_argument("--hf-cache", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("extra", nargs="*", help="more `invoke render` options")
    r = sub.add_parser("run")
    r.add_argument("layout")
    r.add_argument("--results", default=str(ROOT / "results"))
    r.add_argument("--concurrency", default="1,16,64")
    r.add_argument("--port", type=int, default=8000)
    r.add_argument("--tuned-moe", default=None)
    r.add_argument("--tag", default="")
    r.add_argument("--health-timeout", type=float, default=540)
    t = sub.add_parser("tune-moe")
    t.add_argument("layout")
    t.add_argument("--out", required=True)
    t.add_argument("--budget-s", type=float, default=150)
    f = sub.add_parser("reference")
    f.add_argument("run")
    f.add_argument("--name", required=True)
    f.add_argument("--out", default=str(ROOT / "src" / "glmkit" / "reference"))
    args = parser.parse_args()
    for option in ("tag", "name"):  # each names a file: one component of its folder
        value = getattr(args, option, None)
        if value and (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value)
                      or ".." in value):
            raise SystemExit(f"--{option} {value[:40]!r} must be a plain name: letters, "
                             "digits, '.', '_' and '-', starting with a letter or digit.")
    {"prepare": prepare, "run": run, "tune-moe": tune_moe,
     "reference": reference}[args.step](args)


if __name__ == "__main__":
    main()
