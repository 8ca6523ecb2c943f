"""vLLM on a GPU as vLLM itself accounts for it, calibrated on a real one.

Memory: vLLM gives the KV cache what is left of `--gpu-memory-utilization` × the memory
CUDA reports, after the weights, the activation peak of a profile run at
`--max-num-batched-tokens`, non-torch memory and its CUDA-graph estimate
(vllm/v1/worker/gpu_worker.py). Decode: a step reads the weights the batch touches and its
KV cache at the measured share of the data sheet's bandwidth, plus a per-layer floor and
a per-token cost. Every constant is in gpu_calibration.json with the measurement it comes
from (scripts/gpu_truth.py); the points there are what the unit tests hold this to.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmkit.knowledge.quant_format import QuantFormat

CALIBRATION = Path(__file__).with_name("gpu_calibration.json")
GIB = 1 << 30
DEFAULT_BATCHED_TOKENS = 8192  # vLLM 0.26's --max-num-batched-tokens for online serving


@functools.lru_cache(maxsize=1)
def calibration() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CALIBRATION.read_text())
    return data


def constant(name: str) -> float:
    return float(calibration()["constants"][name]["value"])


def provenance() -> str:
    m = calibration()["measured"]
    return (f"{m['gpu']} (driver {m['driver']}), vLLM {m['vllm']}, {m['date']}, "
            f"{m['weights']} weights, {m['routing']} routing")


@dataclass(frozen=True)
class VllmMemory:
    """One GPU's memory as vLLM splits it (GiB)."""

    requested_gib: float
    weights_gib: float
    activation_peak_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    kv_gib: float
    kv_tokens: int

    def max_concurrency(self, max_model_len: int) -> float:
        """vLLM's "Maximum concurrency for N tokens per request"."""
        return self.kv_tokens / max_model_len if max_model_len else 0.0


def activation_peak_gib(hidden: int, vocab: int, batched_tokens: int = DEFAULT_BATCHED_TOKENS,
                        mtp: bool = False) -> float:
    peak = (constant("activation_bytes_per_token_hidden") * batched_tokens * hidden * 2
            + constant("activation_bytes_per_vocab") * vocab) / GIB
    return peak * (constant("mtp_activation_factor") if mtp else 1.0)


def vllm_memory(memory_gib: float, utilization: float, weights_gib: float, hidden: int,
                vocab: int, kv_bytes_per_token: float, *,
                batched_tokens: int = DEFAULT_BATCHED_TOKENS, mtp: bool = False,
                fp8_kv: bool = False) -> VllmMemory:
    """`fp8_kv`: `--kv-cache-dtype fp8`, whose CUDA graphs vLLM estimated smaller (0.59 vs
    1.84 GiB for GLM-4.7-Flash on an H100; the caller halves the bytes per token)."""
    requested = (memory_gib - constant("cuda_reserved_gib")) * utilization
    peak = activation_peak_gib(hidden, vocab, batched_tokens, mtp)
    non_torch = constant("non_torch_gib")
    graphs = constant("cuda_graph_gib_fp8_kv" if fp8_kv else "cuda_graph_gib")
    kv = requested - weights_gib - peak - non_torch - graphs
    tokens = max(0, int(kv * GIB / kv_bytes_per_token)) if kv > 0 else 0
    return VllmMemory(requested_gib=requested, weights_gib=weights_gib,
                      activation_peak_gib=peak, non_torch_gib=non_torch, cuda_graph_gib=graphs,
                      kv_gib=max(0.0, kv), kv_tokens=tokens)


def step_ms(bytes_read: float, bandwidth_tb_s: float, layers: int, batch: int) -> float:
    """One decode step: the bytes at the measured share of the data sheet's bandwidth,
    plus the per-layer floor and per-token cost fitted on the H200."""
    seconds = bytes_read / (bandwidth_tb_s * 1e12 * constant("hbm_efficiency"))
    return seconds * 1e3 + layers * (constant("step_floor_ms_per_layer")
                                     + batch * constant("token_ms_per_layer"))


def start_period_s(weights_gib: float, block_fp8: bool) -> int:
    """A health-check grace period: start, load, compile, CUDA graphs (and block-FP8
    warm-up), with a margin, rounded up to 10 s."""
    seconds = (constant("start_overhead_s") + weights_gib / constant("load_gib_per_s")
               + constant("compile_s") + constant("cuda_graph_s")
               + (constant("block_fp8_warmup_s") if block_fp8 else 0))
    return int(math.ceil(seconds * constant("start_margin") / 10) * 10)


def block_warmup_caveat() -> str | None:
    """Why the block-FP8 warm-up figure is not yet to be trusted (gone once it is
    re-measured on a block FP8 checkpoint), or None."""
    caveat = calibration()["constants"]["block_fp8_warmup_s"].get("wrong_layout")
    return str(caveat) if caveat else None


ASSUMES = (
    "KV cache as vLLM sizes it: utilization × (memory − {reserved} GiB CUDA keeps) − weights "
    "− activation peak (23 × batched tokens × hidden × 2 B + 12.6 KB × vocab) − {non_torch} "
    "GiB non-torch − {graphs} GiB CUDA graphs",
    "TPOT: bytes read at {eff:.1%} of the data sheet's bandwidth + {floor} ms per layer "
    "+ {token} ms per layer per sequence in the batch",
)


def assumes() -> list[str]:
    fmt = {"reserved": constant("cuda_reserved_gib"), "non_torch": constant("non_torch_gib"),
           "graphs": constant("cuda_graph_gib"), "eff": constant("hbm_efficiency"),
           "floor": constant("step_floor_ms_per_layer"),
           "token": constant("token_ms_per_layer")}
    return [line.format(**fmt) + f" (calibrated on {provenance()})" for line in ASSUMES]


# --- fused-MoE kernel configs -------------------------------------------------------------

SHIPPED_MOE_CONFIGS = Path(__file__).with_name("vllm_moe_configs.txt")
# vLLM's device_name in a config file name (torch's device name, spaces as '_').
MOE_DEVICE_NAMES = {"H100": "NVIDIA_H100_80GB_HBM3", "H200": "NVIDIA_H200",
                    "B200": "NVIDIA_B200", "B300": "NVIDIA_B300_SXM6_AC", "GB200": "NVIDIA_GB200",
                    "A100": "NVIDIA_A100-SXM4-80GB", "MI300X": "AMD_Instinct_MI300X",
                    "MI325X": "AMD_Instinct_MI325X", "MI355X": "AMD_Instinct_MI355_OAM"}


def moe_config_name(experts: int, intermediate_per_gpu: int, gpu: str,
                    fmt: QuantFormat) -> str | None:
    """The file vLLM looks for (fused_moe.get_config_file_name): `dtype=fp8_w8a8` for FP8,
    `block_shape` only for block FP8 (GLM-5.x), none for channel-wise FP8 (GLM-4.x's
    compressed-tensors); None for a GPU, format or FP8 layout it has no name for here."""
    device = MOE_DEVICE_NAMES.get(gpu)
    if device is None or fmt.kind not in ("bf16", "fp8") or not fmt.layout_known:
        return None
    dtype = f",dtype={fmt.moe_dtype}" if fmt.moe_dtype else ""
    block = f",block_shape=[{fmt.block[0]},{fmt.block[1]}]" if fmt.block_fp8 and fmt.block \
        else ""
    return f"E={experts},N={intermediate_per_gpu},device_name={device}{dtype}{block}.json"


def vllm_ships_moe_config(name: str) -> bool:
    return name in {line.strip() for line in SHIPPED_MOE_CONFIGS.read_text().splitlines()
                    if line.strip() and not line.startswith("#")}


# --- how vLLM splits a MoE layer over ranks -------------------------------------------------

MAX_RANKS = 1024
# vLLM's names for the sizes that decide the split (its own short forms beside them).
_SIZES = {"tp": ("--tensor-parallel-size", "-tp"), "dp": ("--data-parallel-size", "-dp"),
          "pcp": ("--prefill-context-parallel-size", "-pcp")}


@dataclass(frozen=True)
class MoeSplit:
    """How vLLM splits one server's MoE layers over its ranks (FusedMoEParallelConfig.make
    in vllm/model_executor/layers/fused_moe/config.py): without expert parallelism every
    rank holds every expert with its width N split over TP × DP × PCP ranks; with it
    (`--enable-expert-parallel`) the experts are split whole over those ranks and N is
    not. The fused-MoE config file is named by one rank's E and N (w2's shape), which
    measure/moe_tuner.py's rank_shape computes from these in the serving container."""

    tp: int = 1  # ranks each expert's width is split over
    ep: int = 1  # ranks the experts are split over

    def describe(self) -> str:
        if self.ep > 1:
            return f"EP {self.ep} (the experts split over {self.ep} ranks)"
        return f"TP {self.tp} (each expert's width split {self.tp} ways)" if self.tp > 1 \
            else "one rank"


def _last(args: Sequence[str], names: Sequence[str]) -> str | None:
    """The value the last of `names` gives (`--flag v`, `--flag=v`): vLLM's parser keeps
    the last, and a short form sets the same option."""
    value = None
    for i, arg in enumerate(args):
        name, eq, inline = arg.partition("=")
        if name in names:
            value = inline if eq else (args[i + 1] if i + 1 < len(args) else None)
    return value


def _switch(args: Sequence[str], on: Sequence[str], off: str) -> bool:
    state = False
    for arg in args:
        if arg in on:
            state = True
        elif arg == off:
            state = False
    return state


def moe_split(args: Sequence[str]) -> MoeSplit:
    """The split a `vllm serve` argv gives, or a ValueError naming what cannot be read as
    vLLM reads it: a size that is not a whole number, or expert load balancing (EPLB adds
    redundant experts, so a rank holds more than E / EP)."""
    sizes = {}
    for key, names in _SIZES.items():
        raw = _last(args, names)
        if raw is None:
            sizes[key] = 1
            continue
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_RANKS):
            raise ValueError(f"{names[0]} {raw[:20]!r} is not a whole number from 1 to "
                             f"{MAX_RANKS}")
        sizes[key] = int(raw)
    if _switch(args, ("--enable-eplb",), "--no-enable-eplb"):
        raise ValueError("--enable-eplb gives ranks redundant experts beyond E / EP")
    ranks = sizes["tp"] * sizes["dp"] * sizes["pcp"]
    if ranks > 1 and _switch(args, ("--enable-expert-parallel", "-ep"),
                             "--no-enable-expert-parallel"):
        return MoeSplit(tp=1, ep=ranks)
    return MoeSplit(tp=ranks, ep=1)
