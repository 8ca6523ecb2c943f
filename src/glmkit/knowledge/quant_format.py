"""A checkpoint's quantization format: what vLLM reads from config.json's
`quantization_config`, or, where no config.json is at hand, a per-family default with
its source.

GLM's FP8 checkpoints come in two layouts that vLLM serves differently: GLM-4.x FP8 are
llm-compressor exports (compressed-tensors, FP8 weights per output channel, dynamic
per-token activations, no blocks), GLM-5.x FP8 are block FP8 (128 × 128). What follows
from the layout: the fused-MoE config file vLLM looks for (`block_shape` only for
blocks), the start-up warm-up, and what `invoke tune-moe` times.

This module imports nothing of glmkit (pydantic and the standard library only):
`invoke tune-moe` copies it into the serving container beside measure/moe_tuner.py, which
reads the served checkpoint's own config.json there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Kind = Literal["bf16", "fp8", "nvfp4", "mxfp4", "other"]


@dataclass(frozen=True, kw_only=True)
class QuantFormat:
    kind: Kind
    method: str = ""  # config.json's quant_method ("" for none)
    block: tuple[int, int] | None = None  # FP8 weights in blocks of (N, K)
    channel: bool = False  # FP8 weights with one scale per output channel
    # FP8 activations with one scale per token, computed at run time (vLLM's
    # per_act_token_quant; block FP8 scales activations per 1 x K group instead)
    token: bool = False
    layout_known: bool = True  # False: FP8 of a family glmkit has no layout for
    source: str = ""
    verified: bool = True  # False: a default no config.json or report has confirmed

    @property
    def moe_dtype(self) -> str | None:
        """The `dtype=` of vLLM's fused-MoE config name (FP8 weights and activations:
        fp8_w8a8), None for BF16 (vLLM's get_config_dtype_str)."""
        return "fp8_w8a8" if self.kind == "fp8" else None

    @property
    def block_fp8(self) -> bool:
        return self.kind == "fp8" and self.block is not None

    def describe(self) -> str:
        if self.kind == "bf16":
            return "BF16 (not quantized)"
        if self.kind != "fp8":
            return f"{self.kind.upper()} ({self.method or 'quant_method unknown'})"
        if not self.layout_known:
            return "FP8, layout unknown (no config.json read and no family default)"
        if self.block is not None:
            weights = f"weights in {self.block[0]} × {self.block[1]} blocks"
            acts = f"activations per 1 × {self.block[1]} group (dynamic)"
        else:
            weights = "weights per output channel" if self.channel else "weights per tensor"
            acts = "activations per token (dynamic)" if self.token else \
                "activations per tensor"
        blocks = "" if self.block is not None else ", no blocks"
        how = self.method if self.method == "compressed-tensors" else \
            f"quant_method {self.method}"
        return f"FP8 ({how}): {weights}, {acts}{blocks}"

    def labelled(self) -> str:
        """The format with where it comes from, as `invoke plan` prints it."""
        return f"{self.describe()}; from {self.source}" + \
            ("" if self.verified else " (unverified)")


BF16 = QuantFormat(kind="bf16")

# --- config.json's quantization_config, checked at the boundary -------------------------

Size = Annotated[int, Field(strict=True, ge=1, le=1 << 16)]
Word = Annotated[str, Field(max_length=64)]


class _Checked(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Args(_Checked):
    """compressed-tensors' QuantizationArgs, as far as the layout needs."""

    num_bits: Annotated[int, Field(strict=True, ge=1, le=64)]
    type: Word = "int"
    strategy: Word | None = None
    dynamic: bool | Word = False
    block_structure: Annotated[list[Size], Field(min_length=2, max_length=2)] | Word | None \
        = None


class _Group(_Checked):
    weights: _Args | None = None
    input_activations: _Args | None = None


class _Quant(_Checked):
    quant_method: Word
    weight_block_size: Annotated[list[Size], Field(min_length=2, max_length=2)] | None = None
    activation_scheme: Word | None = None
    config_groups: Annotated[dict[Word, _Group], Field(max_length=64)] | None = None
    quant_algo: Word | None = None  # modelopt's


def _block(value: list[int] | str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, str):  # older compressed-tensors wrote "128x128"
        match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", value)
        if not match:
            raise ValueError(f"block_structure {value[:20]!r} is not N x K")
        return int(match[1]), int(match[2])
    return value[0], value[1]


def _compressed(quant: _Quant) -> QuantFormat:
    """One scheme over every config group (GLM's exports have one group, `Linear`)."""
    groups = list((quant.config_groups or {}).values())
    if not groups or any(g.weights is None for g in groups):
        raise ValueError("compressed-tensors config_groups name no weights")
    schemes = set()
    for group in groups:
        w, a = group.weights, group.input_activations
        assert w is not None
        if w.num_bits != 8 or w.type != "float":
            return QuantFormat(kind="other", method=quant.quant_method)
        block = _block(w.block_structure) if w.strategy == "block" else None
        if w.strategy not in ("channel", "tensor", "block") or \
                (w.strategy == "block" and block is None):
            raise ValueError(f"FP8 weights with strategy {str(w.strategy)[:20]!r}")
        token = a is not None and a.strategy == "token" and a.dynamic is True
        schemes.add((block, w.strategy == "channel", token))
    if len(schemes) > 1:
        raise ValueError("compressed-tensors config_groups quantize in different ways")
    block, channel, token = schemes.pop()
    return QuantFormat(kind="fp8", method=quant.quant_method, block=block, channel=channel,
                       token=token)


def format_from_config(config: Any) -> QuantFormat:
    """The format a config.json declares (no quantization_config: BF16), or a ValueError
    naming what cannot be read."""
    if not isinstance(config, Mapping):
        raise ValueError("config.json is not a JSON object")
    raw = config.get("quantization_config")
    if raw is None:
        return BF16
    if not isinstance(raw, Mapping):
        raise ValueError("quantization_config is not a JSON object")
    try:
        quant = _Quant.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])[:60]
        raise ValueError(f"quantization_config.{where}: {first['msg'][:80]}") from None
    method = quant.quant_method
    if method == "fp8":
        # Activations: per 1 x K group with blocks, else per tensor (activation_scheme).
        return QuantFormat(kind="fp8", method=method, block=_block(quant.weight_block_size))
    if method == "compressed-tensors":
        return _compressed(quant)
    if method == "modelopt" and (quant.quant_algo or "").upper() == "NVFP4":
        return QuantFormat(kind="nvfp4", method=method)
    if method in ("mxfp4", "quark") or "mxfp4" in method:
        return QuantFormat(kind="mxfp4", method=method)
    return QuantFormat(kind="other", method=method)


# --- what glmkit assumes where no config.json is read ----------------------------------

GLM4_FP8_EVIDENCE = (
    "llm-compressor exports (HabanaAI/vllm-hpu-extension#350; vLLM's fused-MoE configs from "
    "them name no block_shape, vllm#29182, #23695, #32958; ROCm/aiter#2923 tunes GLM-4.7-FP8 "
    "per token; knowledge/configs/PROVENANCE.md)")
_CHANNEL = QuantFormat(kind="fp8", method="compressed-tensors", channel=True, token=True)
_BLOCK = QuantFormat(kind="fp8", method="fp8", block=(128, 128))
# (checkpoint name pattern, format, source, verified): the first match serves.
FAMILY_DEFAULTS: tuple[tuple[str, QuantFormat, str, bool], ...] = (
    (r"GLM-4\.[5-7](-Air)?-FP8", _CHANNEL,
     f"glmkit's default for GLM-4.x FP8 checkpoints, inferred: {GLM4_FP8_EVIDENCE}", True),
    (r"GLM-4\.[5-6]V-FP8", _CHANNEL,
     "glmkit's default for GLM-4.x FP8 checkpoints, assumed for the V models: the "
     "evidence for GLM-4.x covers none of them", False),
    (r"GLM-5(\.\d+)?-FP8", _BLOCK,
     "glmkit's default for GLM-5.x FP8 checkpoints: block FP8, 128 × 128 "
     "(sgl-project/sglang-jax#1111, ROCm/aiter#4038)", True),
)
_PRECISIONS: dict[str, Kind] = {"bf16": "bf16", "fp8": "fp8", "nvfp4": "nvfp4",
                                "mxfp4": "mxfp4"}


def family_default(short_name: str, precision: str) -> QuantFormat:
    """The format glmkit assumes for a checkpoint whose config.json was not read: a
    family's FP8 layout from FAMILY_DEFAULTS, else what the catalog's precision says."""
    if precision == "fp8":
        for pattern, fmt, source, verified in FAMILY_DEFAULTS:
            if re.fullmatch(pattern, short_name, flags=re.IGNORECASE):
                return replace(fmt, source=source, verified=verified)
        return QuantFormat(kind="fp8", layout_known=False, verified=False,
                           source="the catalog's precision (fp8); no family default for "
                           f"{short_name[:60]} (`invoke download` it to read its config.json)")
    kind = _PRECISIONS.get(precision, "other")
    return QuantFormat(kind=kind, source=f"the catalog's precision ({precision[:20]})")
