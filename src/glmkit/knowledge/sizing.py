"""Will it fit, how to split it, and how fast can it decode: arithmetic before loading.

Model facts come from the model's config.json when it is in the local HF cache, else
from the table below (the published configs of the GLM releases). Every estimate
prints its assumptions; they are first-order (weights + KV cache vs memory, memory
bandwidth vs bytes read per decode step), not a simulator.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from glmkit.errors import UsageError
from glmkit.files import Unreadable, read_json
from glmkit.knowledge.catalog import ModelSpec
from glmkit.knowledge.gpu_model import GIB, step_ms, vllm_memory
from glmkit.knowledge.hf_config import MAX_CONFIG_BYTES, checked_config, checked_vision
from glmkit.knowledge.params import ParamCount, count_params
from glmkit.knowledge.quant_format import QuantFormat, family_default, format_from_config
from glmkit.vllm_args import flag_value


@dataclass(frozen=True, kw_only=True)
class Arch:
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    experts: int = 0  # routed experts per MoE layer
    experts_per_token: int = 0
    # Multi-head latent attention caches one compressed vector per layer instead of
    # per-head K and V; this is its width (kv_lora_rank + rope dim).
    mla_cache_dim: int | None = None
    vision_heads: int | None = None
    hidden: int = 0
    # DeepSeek-style sparse attention (GLM-5.x): a small indexer key per token and layer
    # picks the `sparse_topk` tokens whose latents each decode step reads.
    indexer_dim: int = 0
    sparse_topk: int | None = None
    vision_params_b: float = 0.0  # the vision tower (V models), inside the total
    # Counted from config.json where it says enough (glmkit.knowledge.params): then sizing
    # follows vLLM's own accounting (glmkit.knowledge.gpu_model), calibrated on an H200.
    params: ParamCount | None = None
    vocab: int = 0
    moe_intermediate: int = 0  # one routed expert's width (fused-MoE configs key on it)
    source: str = "the published config.json (built in)"
    # The checkpoint's quantization_config as read from its own config.json (None: not
    # read, or built-in facts of the family; checkpoint_format then says what is assumed),
    # and why a quantization_config that was there could not be read.
    quant: QuantFormat | None = None
    quant_refused: str = ""


# Published configs (config.json of each release; the V models' text backbone is Air's).
ARCH: dict[str, Arch] = {
    "GLM-4.5": Arch(layers=92, heads=96, kv_heads=8, head_dim=128, experts=160,
                    experts_per_token=8, hidden=5120),
    "GLM-4.5-Air": Arch(layers=46, heads=96, kv_heads=8, head_dim=128, experts=128,
                        experts_per_token=8, hidden=4096),
    "GLM-4.7-Flash": Arch(layers=47, heads=20, kv_heads=20, head_dim=256, experts=64,
                          experts_per_token=4, mla_cache_dim=576, hidden=2048),
    "GLM-4.5V": Arch(layers=46, heads=96, kv_heads=8, head_dim=128, experts=128,
                     experts_per_token=8, vision_heads=12, hidden=4096),
}
# GLM-5.x: MLA (kv_lora_rank 512 + rope 64) with sparse attention (index_topk 2048).
ARCH["GLM-5"] = Arch(layers=78, heads=64, kv_heads=64, head_dim=256, experts=256,
                     experts_per_token=8, mla_cache_dim=576, hidden=6144, indexer_dim=128,
                     sparse_topk=2048)
ARCH["GLM-5.1"] = ARCH["GLM-5.2"] = ARCH["GLM-5"]
ARCH["GLM-4.6"] = ARCH["GLM-4.7"] = ARCH["GLM-4.5"]
# GLM-4.5V's vision_config: 24 blocks of 1536 wide (MLP 13696), merged into 4096: ~2B.
ARCH["GLM-4.5V"] = replace(ARCH["GLM-4.5V"], vision_params_b=round((
    24 * (4 * 1536 ** 2 + 3 * 1536 * 13696) + 3 * 2 * 14 * 14 * 1536
    + 1536 * 4 * 4096 + 3 * 4096 * 13696) / 1e9, 2))
ARCH["GLM-4.6V"] = ARCH["GLM-4.5V"]
# Published config.json files shipped in knowledge/configs/: every parameter counted.
CONFIGS = Path(__file__).with_name("configs")


def _shipped(name: str) -> Arch:
    config = json.loads((CONFIGS / f"{name}.json").read_text())
    # The family's shape, served for its other checkpoints too (arch_key): not their
    # quantization, which checkpoint_format decides.
    return replace(arch_from_config(config), source=f"the published config.json of {name} "
                   "(built in)", quant=None)


ARCH["glm-tiny"] = Arch(layers=2, heads=2, kv_heads=1, head_dim=32, experts=4,
                        experts_per_token=2, hidden=64)


@dataclass(frozen=True)
class GpuSpec:
    name: str
    # What the card reports to CUDA or ROCm (nvidia-smi's MiB / 1024): what vLLM sizes from.
    memory_gib: float
    bandwidth_tb_s: float  # peak HBM bandwidth from the vendor's data sheet
    memory_source: str = "as given (--gpu-mem)"

    @property
    def memory_gb(self) -> float:
        """The card's memory in GB (10^9 bytes), the unit recipes and the flat path use."""
        return self.memory_gib * GIB / 1e9


def _reported(name: str, mib: int, bandwidth: float, where: str) -> GpuSpec:
    return GpuSpec(name, round(mib / 1024, 1), bandwidth, f"{mib:,} MiB reported by {where}")


# Memory as the cards report it, not their labels: the labels are no single unit. An
# "80 GB" H100 reports 79.6 GiB and a "192 GB" MI300X 191.7 GiB (binary), a "288 GB" B300
# 268.6 GiB (288.4 decimal GB), a "141 GB" H200 140.4 GiB; reading 141 as GiB gave 0.8 %
# more KV cache than vLLM found, reading it as 10^9 bytes would give 131.3 GiB, 9 too few.
_LOGS = "nvidia-smi in public run logs"
GPUS: dict[str, GpuSpec] = {g.name: g for g in [
    _reported("H100", 81559, 3.35, "nvidia-smi on an H100 80GB HBM3 (driver 580.159.04, "
              "2026-12-05)"),
    _reported("H200", 143771, 4.8, "nvidia-smi on the H200 of gpu_calibration.json"),
    _reported("A100", 81920, 2.0, f"A100-SXM4-80GB, {_LOGS}"),
    _reported("B200", 183359, 8.0, _LOGS),
    _reported("B300", 275040, 8.0, f"B300 SXM6 AC, {_LOGS}"),
    _reported("GB200", 189471, 8.0, _LOGS),
    _reported("GB300", 284208, 8.0, _LOGS),
    _reported("MI300X", 196288, 5.3, "rocm-smi in public run logs (205,822,885,888 B)"),
    GpuSpec("MI325X", 256, 6.0, "the data sheet's 256 GB read as GiB, as its siblings "
            "MI300X and MI355X report theirs (not measured)"),
    _reported("MI355X", 294896, 8.0, "rocm-smi in public run logs (309,220,868,096 B)"),
]}


def gpu_spec(name: str, memory_gib: float | None = None) -> GpuSpec:
    """A known GPU by (part of) its name; unknown ones need --gpu-mem and get H100 bandwidth."""
    if (spec := _known_card(name)) is not None:
        return spec if memory_gib is None else \
            replace(spec, memory_gib=memory_gib, memory_source="as given (--gpu-mem)")
    if memory_gib is None:
        raise UsageError(f"Unknown GPU {name[:40]!r}: pass --gpu-mem (GiB). Known: "
                         f"{', '.join(GPUS)}.")
    return GpuSpec(name, memory_gib, GPUS["H100"].bandwidth_tb_s)


def target_card(name: str, memory_gib: float, *, given: bool) -> GpuSpec:
    """The card a plan sizes: memory as detected or given (--gpu-mem), else what a card of
    that type reports (GPUS), else the hardware list's figure for it."""
    if not given and (known := _known_card(name)) is not None:
        return known
    return gpu_spec(name, memory_gib)


def _known_card(name: str) -> GpuSpec | None:
    """The GPUS entry whose key the name contains, the longest key first (GB200 before
    B200)."""
    return next((spec for key, spec in sorted(GPUS.items(), key=lambda i: -len(i[0]))
                 if key.lower() in name.lower()), None)


def arch_from_config(config: Mapping[str, Any]) -> Arch:
    """The facts of a config.json, range-checked first (a ValueError names the key)."""
    text, vision = checked_config(config)
    mla = None
    if text.kv_lora_rank is not None:
        mla = text.kv_lora_rank + (64 if text.qk_rope_head_dim is None
                                   else text.qk_rope_head_dim)
    heads = text.num_attention_heads
    try:
        quant, refused = format_from_config(config), ""
    except ValueError as err:
        quant, refused = None, str(err)[:160]
    return Arch(
        layers=text.num_hidden_layers, heads=heads, kv_heads=text.num_key_value_heads or heads,
        head_dim=text.head_dim or max(1, (text.hidden_size or 0) // heads),
        experts=text.n_routed_experts or 0, experts_per_token=text.num_experts_per_tok or 0,
        mla_cache_dim=mla, vision_heads=vision.num_heads if vision else None,
        hidden=text.hidden_size or 0,
        indexer_dim=(text.index_head_dim or 0) if text.index_topk is not None else 0,
        sparse_topk=text.index_topk,
        vision_params_b=vision_tower_params_b(config), params=count_params(text),
        vocab=text.vocab_size or 0, moe_intermediate=text.moe_intermediate_size or 0,
        source="config.json", quant=quant, quant_refused=refused)


def checkpoint_format(model: ModelSpec, arch: Arch | None) -> QuantFormat:
    """The checkpoint's quantization format: its own config.json's quantization_config
    where one was read (a local folder, the HF cache, the Hub), else the family default
    in knowledge/quant_format.py, with where it comes from."""
    if arch is not None and arch.quant is not None:
        return replace(arch.quant, source=f"the checkpoint's {arch.source} "
                       "(quantization_config)")
    fmt = family_default(model.short_name, model.precision)
    if arch is not None and arch.quant_refused:
        return replace(fmt, source=f"{fmt.source}; config.json's quantization_config not "
                       f"used: {arch.quant_refused}")
    return fmt



def read_config(path: Path, root: Path) -> Any:
    """A config.json under `root` (the HF cache, a model folder) through the bounded reader:
    links may lead only inside `root` (snapshots link to the cache's blobs)."""
    return read_json(path, MAX_CONFIG_BYTES, links_within=root)


def cached_config(hf_cache: Path, model_id: str, refused: list[str] | None = None
                  ) -> dict[str, Any] | None:
    """config.json from the HF cache (hub/models--org--name/snapshots/*/config.json); why
    a file there was not read is added to `refused`."""
    folder = hf_cache / "hub" / f"models--{model_id.replace('/', '--')}" / "snapshots"
    for config in sorted(folder.glob("*/config.json")):
        try:
            data = read_config(config, hf_cache)
        except Unreadable as err:
            (refused if refused is not None else []).append(f"{config.name}: {err}")
            continue
        if isinstance(data, dict):
            return data
    return None


def arch_key(model: ModelSpec) -> str:
    """The ARCH entry of a checkpoint: its name without the quantization suffix."""
    return re.sub(r"-(FP8|NVFP4|MXFP4)$", "", model.short_name, flags=re.IGNORECASE)


def model_arch(model: ModelSpec, hf_cache: Path | None = None,
               fetch: Callable[[], dict[str, Any] | None] | None = None) -> Arch:
    """From the model's config.json (a local folder, the HF cache, else `fetch` from the
    Hub), falling back to the published configs in ARCH when offline."""
    arch = known_arch(model, hf_cache, fetch)
    if arch is None:
        raise UsageError(f"No architecture facts for {model.id}: download it first "
                         "(`invoke download`) so its config.json can be read.")
    return arch


def known_arch(model: ModelSpec, hf_cache: Path | None = None,
               fetch: Callable[[], dict[str, Any] | None] | None = None) -> Arch | None:
    """`model_arch`, or None where no config.json can be read and none is built in (a
    family newer than glmkit): then `estimate_from_recipe` plans from the recipe. A
    config.json that cannot be read or is out of range is passed over, and the facts
    that serve instead say so."""
    refused: list[str] = []
    # Only a folder given as an absolute path (a model made on this host, resolved by the
    # host facts): a relative one would be read from whatever the working directory is.
    local = Path(model.local_dir) / "config.json" \
        if model.local_dir and Path(model.local_dir).is_absolute() else None
    if local is not None and local.is_file():
        try:
            config: Any = read_config(local, local.parent)
        except Unreadable as err:
            refused.append(f"{local}: {err}")
        else:
            if arch := _readable_arch(config, refused):
                return arch
    if hf_cache is not None and (config := cached_config(hf_cache, model.id, refused)) and \
            (arch := _readable_arch(config, refused)):
        return arch
    if fetch is not None and (config := fetch()) and (arch := _readable_arch(config, refused)):
        return replace(arch, source="config.json from the Hub")
    fallback = ARCH.get(arch_key(model))
    if fallback is not None and refused:
        return replace(fallback, source=f"{fallback.source}; config.json not used: "
                                        f"{refused[0][:160]}")
    return fallback


def _readable_arch(config: Any, refused: list[str]) -> Arch | None:
    """The facts of a downloaded config.json, or None where it lacks them or has values
    out of range (a cache is data from the Hub): the built-in facts or the recipe's
    numbers serve, and `refused` says why."""
    try:
        return arch_from_config(config)
    except ValueError as err:
        refused.append(str(err))
        return None


@dataclass(frozen=True)
class RecipeEstimate:
    """A plan from the recipe's numbers alone (parameters, active parameters,
    vram_minimum_gb, context), for a model whose config.json cannot be read."""

    tp: int
    need_gb: float  # the recipe's vram_minimum_gb, else the weights
    weights_per_gpu_gb: float
    fits: bool
    max_model_len: int
    tpot_ms: float  # batch-1 bound: the active parameters read once per step
    weights_read_gb: float
    why: str  # what it rests on, said wherever it is used


def estimate_from_recipe(model: ModelSpec, gpu: GpuSpec, gpu_count: int,
                         tp: int | None = None) -> RecipeEstimate:
    """The smallest TP (a power of two up to the node) whose GPUs hold the recipe's
    vram_minimum_gb; the context glmkit serves by default (the KV cache per token is
    unknown without config.json); a decode bound from the active parameters."""
    from glmkit.knowledge.catalog import DEFAULT_MAX_MODEL_LEN

    weights = model.total_params_b * BYTES.get(model.precision, 2.0)
    need = model.vram_minimum_gb or weights
    sizes = [tp] if tp else [t for t in (1, 2, 4, 8, 16, 32, 64) if t <= gpu_count] or [1]
    card_gb = gpu.memory_gb
    chosen = next((t for t in sizes if need <= t * card_gb), sizes[-1])
    read = model.active_params_b * BYTES.get(model.precision, 2.0) / chosen
    what = "vram_minimum_gb" if model.vram_minimum_gb else "weights"
    return RecipeEstimate(
        tp=chosen, need_gb=need, weights_per_gpu_gb=weights / chosen,
        fits=need <= chosen * card_gb,
        max_model_len=min(DEFAULT_MAX_MODEL_LEN, model.max_context) if model.max_context
        else DEFAULT_MAX_MODEL_LEN,
        tpot_ms=read / (gpu.bandwidth_tb_s * 1e3) * 1e3, weights_read_gb=read,
        why=f"from the recipe's numbers: no config.json for {model.id} could be read "
            f"(`invoke download` it for layers and KV cache size); {what} {need:g} GB, "
            f"{model.total_params_b:g}B parameters ({model.active_params_b:g}B active), "
            f"context {model.max_context}")


# Bytes per parameter. The 4-bit checkpoints keep attention and shared layers in FP8/BF16:
# 0.6 is their weight size over parameters (GLM-5.2-NVFP4: ~465 GB for 743B).
BYTES = {"bf16": 2.0, "fp8": 1.0, "nvfp4": 0.6, "mxfp4": 0.6}
KV_BYTES = 2  # bf16 KV cache, vLLM's default
PCIE_GB_S = 50.0  # PCIe 5.0 x16, one direction, as measured in practice (64 on paper)
# Per GPU, for models without a parameter count: activations, CUDA graphs, NCCL buffers,
# the runtime. A round guess from before any GPU run (b7d1ad2), not a measurement. On the
# H200 at 0.9 utilization vLLM kept 5.5 GB (GLM-4.7-Flash) and 5.6 GB (GLM-4.5-Air-FP8)
# beside weights and KV, but 8.1 GB for Flash with MTP, whose activation peak doubles
# (gpu_calibration.json): a little generous without MTP, short by 2 GB with it.
OVERHEAD_GB = 6.0
MIN_KV_TOKENS = 8192  # below this a server is not useful; the fit test asks for it


def kv_cache_bytes(serve_args: Sequence[str]) -> float:
    """Bytes per KV element the command asks for: 1 with `--kv-cache-dtype fp8*`, else 2."""
    dtype = flag_value(serve_args, "--kv-cache-dtype") or ""
    return 1.0 if dtype.startswith("fp8") else float(KV_BYTES)


def kv_bytes_per_token(arch: Arch, tp: int, kv_bytes: float = KV_BYTES) -> float:
    """KV cache bytes one token costs on one GPU at tensor-parallel size `tp`
    (`kv_bytes` 1 with `--kv-cache-dtype fp8`, which halves it)."""
    if arch.mla_cache_dim is not None:  # MLA: one latent per layer, replicated on every rank
        return arch.layers * (arch.mla_cache_dim + arch.indexer_dim) * kv_bytes
    kv_heads_per_gpu = max(1, arch.kv_heads // tp)  # beyond kv_heads, heads are replicated
    return arch.layers * 2 * kv_heads_per_gpu * arch.head_dim * kv_bytes


def valid_tp(arch: Arch, tp: int) -> str | None:
    """None when `tp` works for the model, else the reason it does not."""
    if arch.heads % tp:
        return f"{arch.heads} attention heads are not divisible by TP {tp}"
    if arch.kv_heads % tp and tp % arch.kv_heads:
        return f"{arch.kv_heads} KV heads neither divide nor are divided by TP {tp}"
    return None


@dataclass(frozen=True)
class Fit:
    tp: int
    replicas: int
    weights_per_gpu_gb: float
    kv_budget_per_gpu_gb: float
    max_model_len: int
    cpu_offload_gb: int
    fits: bool
    kv_tokens: int = 0  # tokens the KV cache of one replica holds at once
    unit: str = "GB"  # of the two *_gb figures: GiB where vLLM's accounting sized them
    # False where offloading every weight still leaves less than MIN_KV_TOKENS of KV cache
    # (cpu_offload_gb is then more than the weights: no offload makes it fit).
    offload_suffices: bool = True


def with_mtp(arch: Arch) -> Arch:
    """The model vLLM serves with `--speculative-config.method mtp`: one more layer of
    weights and of KV cache (GLM-4.7-Flash on an H200: +1.20 GiB, 48 layers of KV)."""
    if arch.params is None:
        return replace(arch, layers=arch.layers + 1)
    params = replace(arch.params, total_b=arch.params.total_b + arch.params.mtp_layer_b)
    return replace(arch, layers=arch.layers + 1, params=params)


def weights_per_gpu_gib(arch: Arch, precision: str, tp: int) -> float | None:
    """Counted weights on one GPU (GiB), or None without a count."""
    if arch.params is None:
        return None
    return arch.params.weight_bytes(precision, BYTES[precision]) / tp / GIB


@dataclass(frozen=True)
class _Shard:
    """One GPU at one TP size: room for weights and KV cache, in `unit`s."""

    weights: float
    room: float
    kv_tokens: int
    unit: str
    unit_bytes: float


def _vllm_shard(arch: Arch, params_gib: float, gpu: GpuSpec, utilization: float,
                per_token: float, mtp: bool, fp8_kv: bool = False) -> _Shard:
    """Counted parameters: vLLM's own accounting (gpu_model.vllm_memory, calibrated on an
    H200), in GiB as vLLM reports it."""
    memory = vllm_memory(gpu.memory_gib, utilization, params_gib, arch.hidden, arch.vocab,
                         per_token, mtp=mtp, fp8_kv=fp8_kv)
    room = memory.requested_gib - memory.activation_peak_gib - memory.non_torch_gib \
        - memory.cuda_graph_gib
    return _Shard(params_gib, room, memory.kv_tokens, "GiB", GIB)


def _flat_shard(model: ModelSpec, gpu: GpuSpec, precision: str, tp: int, utilization: float,
                per_token: float) -> _Shard:
    """No count: the recipe's total parameters × BYTES and OVERHEAD_GB flat, in GB."""
    weights = model.total_params_b * BYTES[precision] / tp
    room = gpu.memory_gb * utilization - OVERHEAD_GB
    tokens = max(0, int((room - weights) * 1e9 / per_token)) if room > weights else 0
    return _Shard(weights, room, tokens, "GB", 1e9)


def fit(model: ModelSpec, arch: Arch, gpu: GpuSpec, gpu_count: int, precision: str,
        utilization: float = 0.9, tp: int | None = None, kv_bytes: float = KV_BYTES,
        mtp: bool = False) -> Fit:
    """The smallest TP (a power of two the heads allow) whose shard leaves room for KV:
    with counted parameters as vLLM sizes it, else from the recipe's parameters and a flat
    overhead. What does not fit says how much --cpu-offload-gb (GiB) would make it."""
    if mtp:
        arch = with_mtp(arch)
    candidates = [tp] if tp else [t for t in (1, 2, 4, 8, 16) if t <= gpu_count]
    chosen: Fit | None = None
    for t in candidates:
        if reason := valid_tp(arch, t):
            if tp:
                raise UsageError(f"TP {t} is impossible for {model.id}: {reason}.")
            continue
        per_token = kv_bytes_per_token(arch, t, kv_bytes)
        counted = weights_per_gpu_gib(arch, precision, t)
        shard = _vllm_shard(arch, counted, gpu, utilization, per_token, mtp,
                            kv_bytes < KV_BYTES) \
            if counted is not None else _flat_shard(model, gpu, precision, t, utilization,
                                                    per_token)
        # Offloaded weights free GPU memory for the least KV cache worth serving.
        short = shard.weights + MIN_KV_TOKENS * per_token / shard.unit_bytes - shard.room
        offload = 0 if shard.kv_tokens >= MIN_KV_TOKENS else \
            math.ceil(short * shard.unit_bytes / GIB)
        chosen = Fit(tp=t, replicas=gpu_count // t, weights_per_gpu_gb=shard.weights,
                     kv_budget_per_gpu_gb=max(0.0, shard.room - shard.weights),
                     max_model_len=min(model.max_context, shard.kv_tokens),
                     cpu_offload_gb=offload, fits=offload == 0, kv_tokens=shard.kv_tokens,
                     unit=shard.unit,
                     offload_suffices=offload * GIB <= shard.weights * shard.unit_bytes)
        if chosen.fits:
            return chosen
    if chosen is None:
        raise UsageError(f"No tensor-parallel size up to {gpu_count} works for {model.id}.")
    return chosen


@dataclass(frozen=True)
class DecodeEstimate:
    tpot_ms: float
    weights_read_gb: float  # per GPU per step
    kv_read_gb: float  # per GPU per step
    distinct_experts: float
    bound_ms: float = 0.0  # the bytes at the data sheet's peak bandwidth alone
    calibrated: bool = False  # tpot_ms from the H200 calibration, not the bound


def decode_tpot(model: ModelSpec, arch: Arch, gpu: GpuSpec, tp: int, precision: str,
                batch: int, context: int, kv_bytes: float = KV_BYTES,
                offload_gb: float = 0.0, pcie_gb_s: float = PCIE_GB_S) -> DecodeEstimate:
    """Memory-bandwidth bound of one decode step: every byte read once per step.

    Weights read = the dense part + the routed experts the batch touches (with `batch`
    tokens each picking k of E experts at random, E·(1-(1-k/E)^batch) are touched);
    KV read = batch × context tokens of cache. Both split over `tp` GPUs.
    """
    bytes_per_param = BYTES[precision]
    if arch.params is not None and arch.experts and not offload_gb:
        return _calibrated_tpot(arch, arch.params, gpu, tp, precision, batch, context,
                                kv_bytes)
    if arch.experts:
        k, e = arch.experts_per_token, arch.experts
        per_expert = (model.total_params_b - model.active_params_b) / (e - k)
        dense = model.active_params_b - k * per_expert
        touched = e * (1 - (1 - k / e) ** batch)
        params = dense + touched * per_expert
    else:
        touched, params = 0.0, model.total_params_b
    weights_gb = params * bytes_per_param / tp
    kv_gb = _kv_read_gb(arch, tp, batch, context, kv_bytes)
    # Offloaded weights cross PCIe every step (vLLM streams them back for each forward).
    seconds = (weights_gb + kv_gb) / (gpu.bandwidth_tb_s * 1e3) + offload_gb / pcie_gb_s
    return DecodeEstimate(tpot_ms=seconds * 1e3, weights_read_gb=weights_gb, kv_read_gb=kv_gb,
                          distinct_experts=touched, bound_ms=seconds * 1e3)


def _kv_read_gb(arch: Arch, tp: int, batch: int, context: int, kv_bytes: float) -> float:
    if arch.sparse_topk and arch.mla_cache_dim:
        # Sparse attention reads every token's indexer key but only the top-k latents.
        per_seq = arch.layers * kv_bytes * (min(context, arch.sparse_topk) * arch.mla_cache_dim
                                            + context * arch.indexer_dim)
        return batch * per_seq / 1e9
    return batch * context * kv_bytes_per_token(arch, tp, kv_bytes) / 1e9


def _calibrated_tpot(arch: Arch, params: ParamCount, gpu: GpuSpec, tp: int, precision: str,
                     batch: int, context: int, kv_bytes: float) -> DecodeEstimate:
    """Counted bytes (the experts a batch touches with uniform routing) at the measured
    share of the bandwidth, plus the fitted per-layer floor and per-token cost."""
    k, e = params.experts_per_token, params.experts
    touched = e * (1 - (1 - k / e) ** batch)
    weights_gb = params.read_bytes(touched, precision, BYTES[precision]) / tp / 1e9
    kv_gb = _kv_read_gb(arch, tp, batch, context, kv_bytes)
    bound = (weights_gb + kv_gb) / (gpu.bandwidth_tb_s * 1e3) * 1e3
    return DecodeEstimate(
        tpot_ms=step_ms((weights_gb + kv_gb) * 1e9, gpu.bandwidth_tb_s, arch.layers, batch),
        weights_read_gb=weights_gb, kv_read_gb=kv_gb, distinct_experts=touched,
        bound_ms=bound, calibrated=True)


ASSUMPTIONS = (
    f"weights: total parameters × 2 bytes (BF16), 1 (FP8) or 0.6 (NVFP4/MXFP4 with FP8 "
    f"attention); KV cache in BF16, or FP8 where the recipe sets --kv-cache-dtype fp8; "
    f"{OVERHEAD_GB:.0f} GB per GPU kept for activations, CUDA graphs and the runtime (a "
    "round guess, not measured; vLLM kept 5.5-5.6 GB on an H200, 8.1 GB with MTP)",
    f"fits: the weight shard leaves room for at least {MIN_KV_TOKENS} tokens of KV cache",
    "TPOT bound: the data sheet's peak HBM bandwidth (an H100 measured 3.03 of 3.35 TB/s, "
    "~90 %, with a device-to-device copy: expect at least ~10 % above the bound), every "
    "weight byte of the dense part and of each "
    "routed expert the batch touches, plus the batch's KV cache, read once per step; "
    "no compute, communication or scheduling time: real TPOT is higher",
)


@dataclass(frozen=True)
class PlanReport:
    model: ModelSpec
    arch: Arch
    gpu: GpuSpec
    gpu_count: int
    fits: dict[str, Fit | None]  # by precision: bf16 and fp8
    chosen: Fit
    impossible_tp: dict[int, str]
    expert_parallel: bool
    decode: DecodeEstimate
    batch: int
    context: int
    # Why the bound is for a smaller batch or context than asked (None: as asked).
    capped: str | None = None


def resident_batch(fit: Fit, batch: int, context: int) -> tuple[int, int, str | None]:
    """The largest batch × context whose KV cache is resident at once, and why it is
    smaller than asked: a bound for sequences that cannot all be in memory bounds nothing
    (vLLM preempts them), nor one for sequences longer than the model serves."""
    tokens = fit.kv_tokens
    longest = ""
    if 0 < fit.max_model_len < min(context, tokens):
        # The model's own limit, not the cache's: vLLM refuses a longer --max-model-len.
        longest = (f"--context {context:,} capped at {fit.max_model_len:,}, the largest "
                   f"--max-model-len the model serves")
        context = fit.max_model_len
    if tokens <= 0 or batch * context <= tokens:
        return batch, context, longest or None
    longest = f"{longest}; " if longest else ""
    if context > tokens:
        return 1, tokens, (f"{longest}capped from batch {batch} × {context}: the KV cache "
                           f"holds {tokens:,} tokens, less than one sequence")
    fitting = max(1, tokens // context)
    return fitting, context, (f"{longest}capped from batch {batch}: the KV cache holds "
                              f"{tokens:,} tokens, {fitting} sequences of {context:,}")


def plan_report(model: ModelSpec, arch: Arch, gpu: GpuSpec, gpu_count: int, *,
                batch: int = 16, context: int = 9000, utilization: float = 0.9,
                tp: int | None = None, kv_bytes: float = KV_BYTES,
                mtp: bool = False) -> PlanReport:
    """Both precisions' fit, the chosen layout for this model's own precision, TP sizes
    the config rules out, and the decode-time bound at `batch` × `context`."""
    fits: dict[str, Fit | None] = {}
    for precision in ("bf16", "fp8"):
        try:
            fits[precision] = fit(model, arch, gpu, gpu_count, precision, utilization, tp,
                                  kv_bytes)
        except UsageError:
            fits[precision] = None
    chosen = fit(model, arch, gpu, gpu_count, model.precision, utilization, tp, kv_bytes, mtp)
    impossible = {t: reason for t in range(1, gpu_count + 1)
                  if (reason := valid_tp(arch, t)) is not None}
    batch, context, capped = resident_batch(chosen, batch, context)
    decode = decode_tpot(model, arch, gpu, chosen.tp, model.precision, batch, context,
                         kv_bytes, offload_gb=chosen.cpu_offload_gb)
    return PlanReport(model=model, arch=arch, gpu=gpu, gpu_count=gpu_count, fits=fits,
                      chosen=chosen, impossible_tp=impossible,
                      expert_parallel=arch.experts > 0 and chosen.tp > 1, decode=decode,
                      batch=batch, context=context, capped=capped)


def gpu_from_hardware(name: str, memory_mib: int) -> GpuSpec:
    return replace(gpu_spec(name, round(memory_mib / 1024, 1)),
                   memory_source=f"{memory_mib:,} MiB reported by the card")


@dataclass(frozen=True)
class MultiNode:
    nodes: int
    tp: int
    pp: int
    weights_per_gpu_gb: float
    fits: bool
    pp_bytes_per_token: float  # activations crossing each node boundary, per token
    tp_bytes_per_token: float  # what TP across nodes would move instead, per token


def multinode(model: ModelSpec, arch: Arch, gpu: GpuSpec, gpus_per_node: int, nodes: int,
              precision: str, utilization: float = 0.9) -> MultiNode:
    """TP inside each node, PP across nodes: the slow link carries one activation per
    token per boundary (hidden × 2 bytes) instead of TP's two all-reduces per layer."""
    weights = model.total_params_b * BYTES[precision] / (gpus_per_node * nodes)
    budget = gpu.memory_gb * utilization - OVERHEAD_GB
    per_token_kv = kv_bytes_per_token(arch, gpus_per_node) / nodes  # layers split by PP
    fits = weights + MIN_KV_TOKENS * per_token_kv / 1e9 <= budget
    activation = arch.hidden * KV_BYTES
    tp_all = gpus_per_node * nodes
    allreduce = 2 * arch.layers * activation * 2 * (tp_all - 1) / tp_all
    return MultiNode(nodes=nodes, tp=gpus_per_node, pp=nodes, weights_per_gpu_gb=weights,
                     fits=fits, pp_bytes_per_token=activation * (nodes - 1),
                     tp_bytes_per_token=allreduce)


# --- vision models ------------------------------------------------------------------------

MM_PROCESSOR_CACHE_GB = 4.0  # vLLM's --mm-processor-cache-gb default
MAX_PROCESSOR_CACHE_GB = 1024  # /dev/shm beyond a large host's memory is a typo or an attack


def processor_cache_shm_gb(args: Sequence[str]) -> float:
    """Shared memory the multimodal processor cache takes: with `--mm-processor-cache-type
    shm` the cache (--mm-processor-cache-gb, default 4) is a ring buffer in /dev/shm that
    the API server and the engine share; 0 otherwise (or with the cache off)."""
    if flag_value(args, "--mm-processor-cache-type") != "shm":
        return 0.0
    try:
        size = float(flag_value(args, "--mm-processor-cache-gb") or MM_PROCESSOR_CACHE_GB)
    except ValueError:
        size = MM_PROCESSOR_CACHE_GB
    if size > MAX_PROCESSOR_CACHE_GB:
        raise UsageError(f"--mm-processor-cache-gb {size:g}: more than "
                         f"{MAX_PROCESSOR_CACHE_GB} GB of shared memory is no cache size; "
                         "give a few GB (vLLM's default is 4).")
    return size if size > 0 and math.isfinite(size) else 0.0


def shm_size(base: str | None, args: Sequence[str]) -> str | None:
    """A private /dev/shm big enough for the vendor's own use (`base`, e.g. "2gb") plus the
    shm processor cache; None keeps Docker's default (no base and no cache)."""
    extra = processor_cache_shm_gb(args)
    if not extra:
        return base
    base_gb = float(base.lower().removesuffix("gb")) if base else 0.0
    return f"{math.ceil(base_gb + extra)}gb"


def vision_tower_params_b(config: Mapping[str, Any]) -> float:
    """The vision tower's size from a GLM-V config.json's vision_config (billions): per
    block the attention (4 h²) and gated MLP (3 h·i), the patch embedding and the merger
    into the language model's width."""
    vision = checked_vision(config)
    if vision is None:
        return 0.0
    h, inner, out = vision.hidden_size, vision.intermediate_size, vision.out_hidden_size
    patch, merge = vision.patch_size, vision.spatial_merge_size
    blocks = vision.depth * (4 * h * h + 3 * h * inner)
    embed = 3 * vision.temporal_patch_size * patch * patch * h
    merger = h * merge * merge * out + 3 * out * (inner or out)
    return (blocks + embed + merger) / 1e9


def encoder_cache_gb(tokens: int, hidden: int, dtype_bytes: int = 2) -> float:
    """vLLM's encoder cache: the vision tower's outputs for `tokens` placeholder tokens
    (its budget is the larger of --max-num-batched-tokens and one item's tokens), each a
    vector of the language model's width."""
    return tokens * hidden * dtype_bytes / 1e9


# The published configs shipped in full replace the hand-written facts (every parameter
# counted); the functions they need are defined above.
ARCH["GLM-4.7-Flash"] = _shipped("GLM-4.7-Flash")
ARCH["GLM-4.5-Air"] = _shipped("GLM-4.5-Air")
