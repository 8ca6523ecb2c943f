"""Parameters counted from a GLM config.json: what the weights weigh and what a decode
step reads, instead of the recipe's rounded "31B total, 3B active".

Covers the GLM MoE families: GQA attention (GLM-4.5/4.6/4.7, Air) and multi-head latent
attention (GLM-4.7-Flash, GLM-5.x); a dense first layer (`first_k_dense_replace`),
routed and shared experts, untied embedding and lm_head. Norms, biases, router gates and
FP8 block scales are left out: together under 0.5 % of the weights (GLM-4.7-Flash counts
55.76 GiB here; vLLM 0.26.0 loaded 55.87 GiB on an H200).
"""

from __future__ import annotations

from dataclasses import dataclass

from glmkit.knowledge.hf_config import TextConfig


@dataclass(frozen=True)
class ParamCount:
    """Billions of parameters by role."""

    total_b: float  # every weight served (the MTP layer not included)
    embedding_b: float  # the input embedding: one row read per token, never a matrix
    lm_head_b: float
    always_read_b: float  # read every decode step whatever the routing: attention, dense
    #                       and shared layers, lm_head (embedding excluded)
    expert_b: float  # one routed expert, over all MoE layers
    experts: int
    experts_per_token: int
    mtp_layer_b: float  # one more decoder layer vLLM loads with --speculative-config mtp

    @property
    def active_b(self) -> float:
        """Parameters one token computes with (its embedding row is looked up, not read
        as a matrix): GLM-4.7-Flash 3.57B, where its recipe says 3B."""
        return self.always_read_b + self.experts_per_token * self.expert_b

    @property
    def linear_b(self) -> float:
        """The matrices a block-FP8 checkpoint stores in one byte (embedding and lm_head
        stay BF16)."""
        return self.total_b - self.embedding_b - self.lm_head_b

    def weight_bytes(self, precision: str, bytes_per_param: float) -> float:
        """Bytes of weights in `precision` (FP8 keeps embedding and lm_head in BF16)."""
        if precision == "bf16":
            return self.total_b * 1e9 * 2
        return (self.linear_b * bytes_per_param + (self.embedding_b + self.lm_head_b) * 2) * 1e9

    def read_bytes(self, experts_touched: float, precision: str,
                   bytes_per_param: float) -> float:
        """Weight bytes one decode step reads when the batch touches `experts_touched`
        routed experts per layer."""
        matrices = (self.always_read_b - self.lm_head_b + experts_touched * self.expert_b)
        lm_head = self.lm_head_b * 2 * 1e9
        factor = 2.0 if precision == "bf16" else bytes_per_param
        return matrices * 1e9 * factor + lm_head


def count_params(text: TextConfig) -> ParamCount | None:
    """The count, or None where the config lacks what it needs (another family)."""
    h, layers, heads = text.hidden_size, text.num_hidden_layers, text.num_attention_heads
    if not (h and text.vocab_size and text.moe_intermediate_size and text.n_routed_experts
            and text.num_experts_per_tok):
        return None
    if text.kv_lora_rank is not None:  # multi-head latent attention
        nope, rope = text.qk_nope_head_dim or 0, text.qk_rope_head_dim or 0
        v = text.v_head_dim or nope
        q_out = heads * (nope + rope)
        q = h * text.q_lora_rank + text.q_lora_rank * q_out if text.q_lora_rank else h * q_out
        attention = (q + h * (text.kv_lora_rank + rope)
                     + text.kv_lora_rank * heads * (nope + v) + heads * v * h)
    else:
        head_dim = text.head_dim or h // heads
        kv = text.num_key_value_heads or heads
        attention = 2 * h * heads * head_dim + 2 * h * kv * head_dim
    expert = 3 * h * text.moe_intermediate_size
    dense_layers = min(text.first_k_dense_replace or 0, layers)
    moe_layers = layers - dense_layers
    dense_mlp = 3 * h * (text.intermediate_size or 0)
    shared = (text.n_shared_experts or 0) * expert
    embedding = text.vocab_size * h
    lm_head = 0 if text.tie_word_embeddings else embedding
    routed = moe_layers * text.n_routed_experts * expert
    always = layers * attention + dense_layers * dense_mlp + moe_layers * shared + lm_head
    mtp = attention + text.n_routed_experts * expert + shared + 2 * h * h \
        if text.num_nextn_predict_layers else 0
    return ParamCount(
        total_b=(always + routed + embedding) / 1e9, embedding_b=embedding / 1e9,
        lm_head_b=lm_head / 1e9, always_read_b=always / 1e9,
        expert_b=moe_layers * expert / 1e9, experts=text.n_routed_experts,
        experts_per_token=text.num_experts_per_tok, mtp_layer_b=mtp / 1e9)
