"""A model's config.json, checked at the boundary: the architecture numbers sizing reads,
each within the range a real model has.

config.json comes from the Hub or the HF cache: data someone else wrote. A value of the
wrong type, out of range (0 or -46 layers, as many experts per token as experts) or
inconsistent is a ValueError naming the key, and the caller falls back to the built-in
facts with a note, never an arithmetic error later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from glmkit.text import validation_reason

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # real config.json files are 1-10 KB

# Widths and counts: real GLM configs are at most a few thousand (hidden 6144, 256
# experts, 92 layers); the bounds leave room and keep every product a finite float.
Layers = Annotated[int, Field(strict=True, ge=1, le=4096)]
Heads = Annotated[int, Field(strict=True, ge=1, le=16384)]
Width = Annotated[int, Field(strict=True, ge=1, le=1 << 20)]
Experts = Annotated[int, Field(strict=True, ge=0, le=1 << 16)]
Tokens = Annotated[int, Field(strict=True, ge=1, le=1 << 24)]


class _Checked(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TextConfig(_Checked):
    """The language model's numbers (`text_config`, or the top level)."""

    num_hidden_layers: Layers
    num_attention_heads: Heads
    num_key_value_heads: Heads | None = None
    head_dim: Width | None = None
    hidden_size: Width | None = None
    n_routed_experts: Experts | None = None
    num_experts_per_tok: Experts | None = None
    kv_lora_rank: Width | None = None
    qk_rope_head_dim: Annotated[int, Field(strict=True, ge=0, le=1 << 20)] | None = None
    index_head_dim: Annotated[int, Field(strict=True, ge=0, le=1 << 20)] | None = None
    index_topk: Tokens | None = None
    # What counting the parameters needs (glmkit.knowledge.params); optional, as in
    # configs of other families.
    vocab_size: Tokens | None = None
    intermediate_size: Width | None = None
    moe_intermediate_size: Width | None = None
    n_shared_experts: Experts | None = None
    first_k_dense_replace: Annotated[int, Field(strict=True, ge=0, le=4096)] | None = None
    q_lora_rank: Width | None = None
    qk_nope_head_dim: Width | None = None
    v_head_dim: Width | None = None
    num_nextn_predict_layers: Annotated[int, Field(strict=True, ge=0, le=64)] | None = None
    tie_word_embeddings: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TextConfig:
        if self.head_dim is None and self.hidden_size is None:
            raise ValueError("neither head_dim nor hidden_size is given")
        if (self.num_key_value_heads or 0) > self.num_attention_heads:
            raise ValueError("more KV heads than attention heads")
        experts, chosen = self.n_routed_experts or 0, self.num_experts_per_tok or 0
        if experts and not 0 < chosen < experts:
            raise ValueError("num_experts_per_tok is not between 1 and n_routed_experts - 1")
        return self


class VisionConfig(_Checked):
    """The vision tower's numbers (`vision_config` of a GLM-V model)."""

    hidden_size: Annotated[int, Field(strict=True, ge=0, le=1 << 16)] = 0
    intermediate_size: Annotated[int, Field(strict=True, ge=0, le=1 << 18)] = 0
    depth: Annotated[int, Field(strict=True, ge=0, le=1024)] = 0
    out_hidden_size: Annotated[int, Field(strict=True, ge=0, le=1 << 18)] = 0
    patch_size: Annotated[int, Field(strict=True, ge=1, le=4096)] = 14
    temporal_patch_size: Annotated[int, Field(strict=True, ge=1, le=64)] = 2
    spatial_merge_size: Annotated[int, Field(strict=True, ge=1, le=64)] = 2
    num_heads: Heads | None = None


def _checked(model: type[_Checked], data: Any, where: str = "") -> Any:
    try:
        return model.model_validate(data if isinstance(data, Mapping) else {})
    except ValidationError as err:
        raise ValueError(where + validation_reason(err)) from None


def checked_vision(config: Any) -> VisionConfig | None:
    """The vision tower's numbers of a config.json (None: it has none), or a ValueError."""
    vision = config.get("vision_config") if isinstance(config, Mapping) else None
    return _checked(VisionConfig, vision, "vision_config.") if vision else None


def checked_config(config: Any) -> tuple[TextConfig, VisionConfig | None]:
    """The text and vision numbers of a config.json, or a ValueError saying which key."""
    if not isinstance(config, Mapping):
        raise ValueError("config.json is not a JSON object")
    return _checked(TextConfig, config.get("text_config", config)), checked_vision(config)
