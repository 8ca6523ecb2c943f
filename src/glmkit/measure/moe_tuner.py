"""Tune vLLM's fused-MoE Triton kernel for one expert shape on this host's GPU.

Run where vLLM and a GPU are: inside the serving container (`invoke tune-moe` copies this
file and knowledge/quant_format.py in and runs it with the image's Python, as `vllm bench
serve` runs there), or directly on a GPU host without Docker (scripts/gpu_truth.py). It
imports nothing else of glmkit, only torch and vLLM.

    python3 moe_tuner.py --experts 64 --intermediate 1536 --hidden 2048 --topk 4 \
        [--dtype fp8_w8a8 [--block 128,128 | --per-channel]] [--tp 1 | --ep 4] --out DIR

With --model the shape and the format come from the checkpoint's config.json (its
quantization_config, read by quant_format): GLM-4.x FP8 is timed as vLLM serves it,
channel-wise FP8 with per-token activations, GLM-5.x FP8 with 128 x 128 blocks.

It times vLLM's own `fused_experts` op (under vLLM's `override_config`, as vLLM's
`benchmarks/kernels/benchmark_moe.py --tune` does) for each batch size vLLM looks up,
with uniform random routing, replayed from a CUDA graph so launch overhead does not hide
the kernel. The baseline is what vLLM would use without glmkit: the config it ships for
the shape (`configs/` beside its fused_moe.py), else its default tiles. Contenders are
the tuned folder's earlier file and a seeded sample of tile configs; an entry replaces
the baseline only where it is MIN_GAIN faster in the search and again in a fresh timing.
The file (named as vLLM names it, `get_config_file_name`, for one rank's E and N) is
installed in --out only where some entry beat the baseline, atomically; an earlier file
that no longer beats it is removed, so the folder vLLM searches first never holds a file
slower than what vLLM ships. With --lease the tuner runs in a process group of its own,
writes the group's id there, and installs nothing once the lease is gone (the command
that started it ended): `invoke tune-moe` stops the group on a timeout or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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


def _setup(args: argparse.Namespace, experts: int, n: int, topk: int) -> dict[str, Any]:
    """One rank's expert weights on the GPU: `experts` local experts, N = `n`."""
    import torch
    from vllm.model_executor.layers.fused_moe import fused_moe as fm

    fp8 = args.dtype == "fp8_w8a8"
    block = [int(b) for b in args.block.split(",")] if args.block else None
    device = torch.device("cuda")
    weights_dtype = torch.float8_e4m3fn if fp8 else torch.bfloat16
    w1 = (torch.randn(experts, 2 * n, args.hidden, device=device) / 16).to(weights_dtype)
    w2 = (torch.randn(experts, args.hidden, n, device=device) / 16).to(weights_dtype)
    scales: dict[str, Any] = {}
    if fp8 and args.per_channel:  # one scale per output channel of each expert
        scales = {"w1_scale": torch.rand(experts, 2 * n, 1, device=device,
                                         dtype=torch.float32),
                  "w2_scale": torch.rand(experts, args.hidden, 1, device=device,
                                         dtype=torch.float32)}
    elif fp8 and not block:  # one scale per expert's matrix
        scales = {"w1_scale": torch.rand(experts, device=device, dtype=torch.float32),
                  "w2_scale": torch.rand(experts, device=device, dtype=torch.float32)}
    elif fp8 and block:
        bn, bk = block
        scales = {
            "w1_scale": torch.rand(experts, -(-2 * n // bn), -(-args.hidden // bk),
                                   device=device, dtype=torch.float32),
            "w2_scale": torch.rand(experts, -(-args.hidden // bn), -(-n // bk),
                                   device=device, dtype=torch.float32)}
    if fp8 and args.per_channel:  # activations per token, as vLLM's per_act_token_quant
        scales["per_channel_quant"] = True
    return {"torch": torch, "fm": fm, "w1": w1, "w2": w2, "n": n, "experts": experts,
            "topk": topk, "fp8": fp8, "block": block, "scales": scales}


def _routing(torch: Any, tokens: int, experts: int, topk: int) -> tuple[Any, Any]:
    """Uniform random routing: each token picks `topk` distinct experts."""
    ids = torch.rand(tokens, experts, device="cuda").topk(topk, dim=1).indices
    weights = torch.softmax(torch.rand(tokens, topk, device="cuda"), dim=1)
    return weights.to(torch.float32), ids.to(torch.int32)


def time_config(ctx: dict[str, Any], args: argparse.Namespace, tokens: int,
                config: dict[str, int], iters: int = 10) -> float:
    """Microseconds per call of vLLM's fused_experts op, replayed from a CUDA graph;
    `config` is passed to vLLM as its override, so no file vLLM finds is timed instead."""
    from vllm.model_executor.layers.fused_moe import override_config

    torch = ctx["torch"]
    x = torch.randn(tokens, args.hidden, device="cuda", dtype=torch.bfloat16)
    topk_weights, topk_ids = _routing(torch, tokens, ctx["experts"], ctx["topk"])

    def call() -> Any:
        return torch.ops.vllm.fused_experts(
            hidden_states=x, w1=ctx["w1"], w2=ctx["w2"], topk_weights=topk_weights,
            topk_ids=topk_ids, activation="silu", use_fp8_w8a8=ctx["fp8"],
            block_shape=ctx["block"], global_num_experts=ctx["experts"], **ctx["scales"])

    with override_config(config):
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
    """vLLM's heuristic tiles for this batch size (get_default_config), what it uses where
    no file names the shape."""
    fm = ctx["fm"]
    dtype = "fp8_w8a8" if ctx["fp8"] else None
    config: dict[str, int] = fm.get_default_config(tokens, ctx["experts"], ctx["n"],
                                                   args.hidden, ctx["topk"], dtype,
                                                   ctx["block"])
    return config


# --- what vLLM would use, and what may replace it ---------------------------------------

ConfigMap = dict[int, dict[str, int]]
MAX_CONFIG_FILE = 1 << 20  # vLLM's own files are a few KB
TILE_KEY = re.compile(r"[A-Za-z_]{1,40}")
# A tuned entry replaces vLLM's only where it is this much faster twice: in the search and
# again in a fresh timing of both (the 48 samples are few; noise alone picks a winner).
MIN_GAIN = 0.03


def read_config_map(path: Path) -> ConfigMap | None:
    """A fused-MoE config file as vLLM reads it (batch size -> tiles; `triton_version`
    dropped), or None where there is none. Files in the tuned folder were written by an
    earlier run and are read back as data: a malformed one is a ValueError, never used."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_FILE + 1)
    except FileNotFoundError:
        return None
    if len(raw) > MAX_CONFIG_FILE:
        raise ValueError(f"{path.name} is over {MAX_CONFIG_FILE} bytes")
    try:
        data = json.loads(raw)
    except RecursionError:  # nested past Python's limit: not a config either
        raise ValueError(f"{path.name} is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    data.pop("triton_version", None)
    configs: ConfigMap = {}
    for key, tiles in data.items():
        if not (isinstance(key, str) and key.isdigit() and len(key) <= 7 and int(key) > 0):
            raise ValueError(f"{path.name}: batch size {key[:20]!r} is not a whole number")
        if not isinstance(tiles, dict) or not tiles or not all(
                isinstance(k, str) and TILE_KEY.fullmatch(k) and type(v) is int
                and 0 <= v <= 65536 for k, v in tiles.items()):
            raise ValueError(f"{path.name}: the tiles for batch size {key} are not names "
                             "with whole numbers")
        configs[int(key)] = dict(tiles)
    if not configs:
        raise ValueError(f"{path.name} names no batch size")
    return configs


def nearest(configs: ConfigMap, tokens: int) -> dict[str, int]:
    """The entry vLLM takes for a batch of `tokens` (try_get_optimal_moe_config)."""
    return configs[min(configs, key=lambda size: abs(size - tokens))]


@dataclass
class Choice:
    """One batch size: what vLLM would use (the baseline) and what the tuner keeps."""

    baseline_us: float
    us: float
    config: dict[str, int]
    source: str  # "baseline", "earlier" (the tuned folder's file), "search"

    @property
    def kept(self) -> bool:
        return self.source != "baseline"


Timer = Callable[[int, dict[str, int]], float]


def choose(sizes: tuple[int, ...], *, baseline: Callable[[int], dict[str, int]],
           default: Callable[[int], dict[str, int]], earlier: ConfigMap | None,
           pool: list[dict[str, int]], timer: Timer, out_of_time: Callable[[], bool],
           min_gain: float = MIN_GAIN) -> tuple[dict[int, Choice], int]:
    """Per batch size, the baseline unless a contender (the earlier tuned file's entry, a
    sampled tile config over vLLM's defaults) beats it by `min_gain` in the search and
    again when both are timed afresh. Returns the choices and how many samples ran."""
    best: dict[int, Choice] = {}
    for tokens in sizes:
        us = timer(tokens, baseline(tokens))
        best[tokens] = Choice(us, us, baseline(tokens), "baseline")
        if earlier is not None:
            mine = nearest(earlier, tokens)
            try:
                mine_us = timer(tokens, mine)
            except Exception as error:  # a tile the GPU cannot run: not a contender
                print(f"skip earlier {mine}: {type(error).__name__}", file=sys.stderr)
            else:
                if mine_us < best[tokens].us:
                    best[tokens] = Choice(us, mine_us, mine, "earlier")
    tried = 0
    for config in pool:
        if out_of_time():
            break
        tried += 1
        for tokens in sizes:
            merged = {**default(tokens), **config}
            try:
                us = timer(tokens, merged)
            except Exception as error:
                print(f"skip {config}: {type(error).__name__}", file=sys.stderr)
                break
            if us < best[tokens].us:
                best[tokens] = Choice(best[tokens].baseline_us, us, merged, "search")
    for tokens, choice in best.items():
        if not choice.kept:
            continue
        base_us, us = timer(tokens, baseline(tokens)), timer(tokens, choice.config)
        if us * (1 + min_gain) <= base_us and choice.us * (1 + min_gain) <= choice.baseline_us:
            best[tokens] = Choice(base_us, us, choice.config, choice.source)
        else:
            best[tokens] = Choice(base_us, base_us, baseline(tokens), "baseline")
    return best, tried


def tuned_file(best: dict[int, Choice], shipped: ConfigMap | None) -> ConfigMap | None:
    """The file to install, or None where nothing beat the baseline. Batch sizes the
    search did not time keep what vLLM ships, so the file is its shipped config with the
    winning entries replaced."""
    if not any(choice.kept for choice in best.values()):
        return None
    return {**(shipped or {}), **{tokens: choice.config for tokens, choice in best.items()}}


def lease_held(lease: Path | None, group: int) -> bool:
    """Whether the command that started this tuner still holds it: `invoke tune-moe`
    removes the lease when it ends (done, timed out or stopped), so a tuner that outlived
    it installs nothing."""
    if lease is None:
        return True
    try:
        return lease.read_text().strip() == str(group)
    except OSError:
        return False


def install(out: Path, name: str, configs: ConfigMap | None, report: dict[str, Any],
            lease: Path | None, group: int) -> str:
    """Put the file where vLLM looks first (atomically), or take away an earlier one that
    no longer beats what vLLM would use; what was done: installed, removed or none."""
    if not lease_held(lease, group):
        raise SystemExit("The command that started the tuner has ended: nothing installed.")
    target, notes = out / name, out / (name.removesuffix(".json") + ".report.json")
    if configs is None:
        if not target.exists():
            return "none"
        target.unlink()
        notes.unlink(missing_ok=True)
        return "removed"
    out.mkdir(parents=True, exist_ok=True)
    for path, text in ((notes, json.dumps(report, indent=1)),
                       (target, json.dumps({str(t): c for t, c in sorted(configs.items())},
                                           indent=1))):
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_text(text + "\n")
        os.replace(partial, path)
    return "installed"


def rank_shape(experts: int, intermediate: int, topk: int, tp: int, ep: int
               ) -> tuple[int, int, int]:
    """(experts, N, top-k) of one rank's MoE layer as vLLM builds it (FusedMoE with
    FusedMoEParallelConfig): N split over `tp` ranks; with expert parallelism each of the
    `ep` ranks holds experts / ep whole experts (tp is then 1). The file vLLM looks for
    is named by these E and N (w2's shape)."""
    if tp < 1 or ep < 1 or (tp > 1 and ep > 1):
        raise ValueError(f"TP {tp} with EP {ep}: vLLM's MoE layer is split one way")
    if experts % ep or intermediate % tp:
        raise ValueError(f"{experts} experts x {intermediate} wide do not split over "
                         f"EP {ep} x TP {tp}")
    local = experts // ep
    return local, intermediate // tp, min(topk, local)


def shipped_folder(fm: Any) -> Path:
    """vLLM's own configs: `configs/` beside fused_moe.py (get_moe_configs)."""
    return Path(fm.__file__).parent / "configs"


def tune(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    experts, n, topk = rank_shape(args.experts, args.intermediate, args.topk, args.tp,
                                  args.ep)
    ctx = _setup(args, experts, n, topk)
    fm = ctx["fm"]
    dtype = "fp8_w8a8" if ctx["fp8"] else None
    name = fm.get_config_file_name(experts, n, dtype, ctx["block"])
    out = Path(args.out)
    shipped = read_config_map(shipped_folder(fm) / name)  # vLLM's own: a bad one raises
    try:
        earlier = read_config_map(out / name)
    except ValueError as error:  # replaced or removed below: vLLM must not read it
        print(f"earlier {name} not used: {error}", file=sys.stderr)
        earlier = None

    def baseline(tokens: int) -> dict[str, int]:
        return nearest(shipped, tokens) if shipped else default_config(ctx, args, tokens)

    deadline = started + args.budget_s
    best, tried = choose(
        BATCH_SIZES, baseline=baseline, default=lambda t: default_config(ctx, args, t),
        earlier=earlier, pool=candidates(1 if ctx["fp8"] else 2, seed=args.seed,
                                         count=args.candidates),
        timer=lambda t, config: time_config(ctx, args, t, config),
        out_of_time=lambda: time.monotonic() > deadline)
    summary: dict[str, Any] = {
        "file": name, "baseline": "shipped" if shipped else "default",
        "earlier": earlier is not None, "candidates_tried": tried,
        "batch_sizes": {str(t): {"baseline_us": round(c.baseline_us, 2),
                                 "tuned_us": round(c.us, 2),
                                 "speedup": round(c.baseline_us / c.us, 3) if c.us else 1.0,
                                 "kept": c.source if c.kept else None}
                        for t, c in best.items()},
        "experts": args.experts, "experts_per_rank": experts, "intermediate_per_rank": n,
        "tp": args.tp, "ep": args.ep, "hidden": args.hidden, "topk": args.topk,
        "dtype": dtype or "bf16", "block_shape": ctx["block"],
        "per_channel": bool(getattr(args, "per_channel", False)),
        "format": getattr(args, "format", None),
        "seconds": round(time.monotonic() - started, 1)}
    lease = Path(args.lease) if getattr(args, "lease", None) else None
    summary["installed"] = install(out, name, tuned_file(best, shipped), summary, lease,
                                   os.getpgid(0))
    return summary


def _quant_format() -> Any:
    """knowledge/quant_format.py: glmkit's own where it is installed, else the copy beside
    this file (the serving container) or in the source tree (scripts/gpu_truth.py)."""
    try:
        from glmkit.knowledge import quant_format
    except ImportError:
        here = Path(__file__).resolve().parent
        sys.path[:0] = [str(here), str(here.parent / "knowledge")]
        import quant_format  # type: ignore[no-redef]
    return quant_format


def format_args(config: Any) -> dict[str, Any]:
    """The tuner's --dtype, --block and --per-channel for a checkpoint's config.json; a
    ValueError for a format whose MoE kernel is not vLLM's Triton fused_moe (NVFP4,
    MXFP4, others) or a quantization_config that cannot be read."""
    fmt = _quant_format().format_from_config(config)
    if fmt.kind == "bf16":
        return {"dtype": "bf16", "block": "", "per_channel": False}
    if fmt.kind != "fp8":
        raise ValueError(f"{fmt.describe()}: vLLM's Triton fused-MoE configs do not apply")
    return {"dtype": "fp8_w8a8", "block": ",".join(map(str, fmt.block)) if fmt.block else "",
            "per_channel": fmt.channel and fmt.token, "format": fmt.describe()}


def shape_from_model(ref: str) -> dict[str, Any]:
    """The expert shape and format from a served model's config.json (a folder, or the HF
    cache the server downloaded it into)."""
    path = Path(ref) / "config.json"
    if not path.is_file():
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(ref, "config.json"))
    config = json.loads(path.read_text())
    text = config.get("text_config", config)
    return {"experts": text["n_routed_experts"], "intermediate": text["moe_intermediate_size"],
            "hidden": text["hidden_size"], "topk": text["num_experts_per_tok"],
            **format_args(config)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="read the shape from this model's config.json")
    parser.add_argument("--experts", type=int)
    parser.add_argument("--intermediate", type=int,
                        help="moe_intermediate_size (before tensor parallelism)")
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--topk", type=int)
    parser.add_argument("--tp", type=int, default=1,
                        help="ranks each expert's width is split over (vLLM's MoE TP: "
                        "TP x DP x PCP without expert parallelism)")
    parser.add_argument("--ep", type=int, default=1,
                        help="ranks the experts are split over (expert parallelism)")
    parser.add_argument("--lease", help="a file naming this tuner's process group; "
                        "nothing is installed once it is gone")
    parser.add_argument("--dtype", choices=("bf16", "fp8_w8a8"), default="bf16")
    parser.add_argument("--block", default="", help="block-FP8 shape, e.g. 128,128")
    parser.add_argument("--per-channel", action="store_true",
                        help="FP8 weights per output channel, activations per token "
                        "(compressed-tensors, GLM-4.x FP8)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, default=150.0)
    parser.add_argument("--candidates", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.lease:
        # First of all, a group of its own named in the lease, so whoever started it can
        # stop all of it (Triton's compiler workers included) from outside.
        # A session leader (`docker exec -t`) leads its group already: EPERM.
        with contextlib.suppress(PermissionError):
            os.setpgid(0, 0)
        Path(args.lease).write_text(f"{os.getpgid(0)}\n")
    if args.model:
        try:
            shape = shape_from_model(args.model)
        except ValueError as error:
            raise SystemExit(f"moe_tuner: {args.model[:80]}: {error}") from None
        for key, value in shape.items():
            setattr(args, key, value)
    if None in (args.experts, args.intermediate, args.hidden, args.topk):
        parser.error("give --model, or --experts, --intermediate, --hidden and --topk")
    try:
        summary = tune(args)
    except ValueError as error:  # a shape that does not split, a malformed shipped file
        raise SystemExit(f"moe_tuner: {error}") from None
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
