"""Tune vLLM's fused-MoE Triton kernel for one expert shape on this host's GPU.

Run where vLLM and a GPU are: inside the serving container (`invoke tune-moe` copies this
file in and runs it with the image's Python, as `vllm bench serve` runs there), or
directly on a GPU host without Docker (scripts/gpu_truth.py). It imports nothing of
glmkit, only torch and vLLM.

    python3 moe_tuner.py --experts 64 --intermediate 1536 --hidden 2048 --topk 4 \
        [--dtype fp8_w8a8 --block 128,128] [--tp 1] --out DIR [--budget-s 150]

It times vLLM's own `fused_experts` op (under vLLM's `override_config`, as vLLM's
`benchmarks/kernels/benchmark_moe.py --tune` does) over candidate tile configs for each
batch size vLLM looks up, with uniform random routing, replayed from a CUDA graph so
launch overhead does not hide the kernel. vLLM's default config is always a candidate,
so a batch size's choice is never slower than the default in this timing. The result is
the JSON vLLM reads from `VLLM_TUNED_CONFIG_FOLDER`, named as vLLM names it
(`get_config_file_name`), plus a report with default vs tuned time per batch size.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

# The batch sizes (tokens per step) vLLM's shipped configs key on; vLLM picks the nearest.
BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024, 2048, 4096)
SHARED_MEMORY_BYTES = 200 * 1024  # Hopper has 228 KiB per block; leave room for the rest


def candidates(dtype_bytes: int, seed: int = 0, count: int = 48) -> list[dict[str, int]]:
    """A seeded sample of tile configs whose pipelined tiles fit in shared memory."""
    space = [
        {"BLOCK_SIZE_M": m, "BLOCK_SIZE_N": n, "BLOCK_SIZE_K": k, "GROUP_SIZE_M": g,
         "num_warps": w, "num_stages": s}
        for m, n, k, g, w, s in itertools.product(
            (16, 32, 64, 128), (32, 64, 128, 256), (64, 128, 256), (1, 16, 32, 64),
            (4, 8), (2, 3, 4, 5))
        if (m * k + k * n) * dtype_bytes * s <= SHARED_MEMORY_BYTES
    ]
    return random.Random(seed).sample(space, min(count, len(space)))


def _setup(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from vllm.model_executor.layers.fused_moe import fused_moe as fm

    fp8 = args.dtype == "fp8_w8a8"
    block = [int(b) for b in args.block.split(",")] if args.block else None
    n = args.intermediate // args.tp
    device = torch.device("cuda")
    weights_dtype = torch.float8_e4m3fn if fp8 else torch.bfloat16
    w1 = (torch.randn(args.experts, 2 * n, args.hidden, device=device) / 16).to(weights_dtype)
    w2 = (torch.randn(args.experts, args.hidden, n, device=device) / 16).to(weights_dtype)
    scales: dict[str, Any] = {}
    if fp8 and block:
        bn, bk = block
        scales = {
            "w1_scale": torch.rand(args.experts, -(-2 * n // bn), -(-args.hidden // bk),
                                   device=device, dtype=torch.float32),
            "w2_scale": torch.rand(args.experts, -(-args.hidden // bn), -(-n // bk),
                                   device=device, dtype=torch.float32)}
    return {"torch": torch, "fm": fm, "w1": w1, "w2": w2, "n": n, "fp8": fp8,
            "block": block, "scales": scales}


def _routing(torch: Any, tokens: int, experts: int, topk: int) -> tuple[Any, Any]:
    """Uniform random routing: each token picks `topk` distinct experts."""
    ids = torch.rand(tokens, experts, device="cuda").topk(topk, dim=1).indices
    weights = torch.softmax(torch.rand(tokens, topk, device="cuda"), dim=1)
    return weights.to(torch.float32), ids.to(torch.int32)


def time_config(ctx: dict[str, Any], args: argparse.Namespace, tokens: int,
                config: dict[str, int] | None, iters: int = 10) -> float:
    """Microseconds per call of vLLM's fused_experts op, replayed from a CUDA graph;
    `config` None: vLLM's own choice (its default, or a config file it found)."""
    import contextlib

    from vllm.model_executor.layers.fused_moe import override_config

    torch = ctx["torch"]
    x = torch.randn(tokens, args.hidden, device="cuda", dtype=torch.bfloat16)
    topk_weights, topk_ids = _routing(torch, tokens, args.experts, args.topk)

    def call() -> Any:
        return torch.ops.vllm.fused_experts(
            hidden_states=x, w1=ctx["w1"], w2=ctx["w2"], topk_weights=topk_weights,
            topk_ids=topk_ids, activation="silu", use_fp8_w8a8=ctx["fp8"],
            block_shape=ctx["block"], global_num_experts=args.experts, **ctx["scales"])

    scope = override_config(config) if config is not None else contextlib.nullcontext()
    with scope:
        call()  # compiles this config (errors such as OutOfResources surface here)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(iters):
                call()
        torch.cuda.synchronize()
        graph.replay()  # warm
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(5):
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1000 / iters)
    return float(sorted(times)[len(times) // 2])


def default_config(ctx: dict[str, Any], args: argparse.Namespace, tokens: int) -> dict[str, int]:
    fm = ctx["fm"]
    dtype = "fp8_w8a8" if ctx["fp8"] else None
    config: dict[str, int] = fm.get_default_config(tokens, args.experts, ctx["n"], args.hidden,
                                                   args.topk, dtype, ctx["block"])
    return config


def tune(args: argparse.Namespace) -> dict[str, Any]:
    ctx = _setup(args)
    fm = ctx["fm"]
    deadline = time.monotonic() + args.budget_s
    pool = candidates(1 if ctx["fp8"] else 2, seed=args.seed, count=args.candidates)
    best: dict[int, tuple[float, dict[str, int]]] = {}
    report: dict[str, Any] = {}
    for tokens in BATCH_SIZES:
        base = default_config(ctx, args, tokens)
        base_us = time_config(ctx, args, tokens, base)
        best[tokens] = (base_us, base)
        report[str(tokens)] = {"default_us": round(base_us, 2)}
    tried = 0
    for config in pool:
        if time.monotonic() > deadline:
            break
        tried += 1
        for tokens in BATCH_SIZES:
            merged = {**default_config(ctx, args, tokens), **config}
            try:
                us = time_config(ctx, args, tokens, merged)
            except Exception as error:
                print(f"skip {config}: {type(error).__name__}", file=sys.stderr)
                break
            if us < best[tokens][0]:
                best[tokens] = (us, merged)
    for tokens, (us, _config) in best.items():
        entry = report[str(tokens)]
        entry["tuned_us"] = round(us, 2)
        entry["speedup"] = round(entry["default_us"] / us, 3)
    dtype = "fp8_w8a8" if ctx["fp8"] else None
    name = fm.get_config_file_name(args.experts, ctx["n"], dtype, ctx["block"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps({str(t): c for t, (_, c) in best.items()}, indent=1)
                            + "\n")
    summary = {"file": name, "candidates_tried": tried, "batch_sizes": report,
               "experts": args.experts, "intermediate_per_gpu": ctx["n"],
               "hidden": args.hidden, "topk": args.topk, "dtype": dtype or "bf16",
               "block_shape": ctx["block"], "seconds": round(args.budget_s - max(
                   0.0, deadline - time.monotonic()), 1)}
    (out / (name.removesuffix(".json") + ".report.json")).write_text(
        json.dumps(summary, indent=1) + "\n")
    return summary


def shape_from_model(ref: str) -> dict[str, Any]:
    """The expert shape from a served model's config.json (a folder, or the HF cache the
    server downloaded it into)."""
    path = Path(ref) / "config.json"
    if not path.is_file():
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(ref, "config.json"))
    config = json.loads(path.read_text())
    text = config.get("text_config", config)
    quant = config.get("quantization_config") or {}
    block = quant.get("weight_block_size") if quant.get("quant_method") == "fp8" else None
    return {"experts": text["n_routed_experts"], "intermediate": text["moe_intermediate_size"],
            "hidden": text["hidden_size"], "topk": text["num_experts_per_tok"],
            **({"dtype": "fp8_w8a8", "block": ",".join(map(str, block))} if block else {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="read the shape from this model's config.json")
    parser.add_argument("--experts", type=int)
    parser.add_argument("--intermediate", type=int,
                        help="moe_intermediate_size (before tensor parallelism)")
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--topk", type=int)
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--dtype", choices=("bf16", "fp8_w8a8"), default="bf16")
    parser.add_argument("--block", default="", help="block-FP8 shape, e.g. 128,128")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=150.0)
    parser.add_argument("--candidates", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.model:
        for key, value in shape_from_model(args.model).items():
            setattr(args, key, value)
    if None in (args.experts, args.intermediate, args.hidden, args.topk):
        parser.error("give --model, or --experts, --intermediate, --hidden and --topk")
    summary = tune(args)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
