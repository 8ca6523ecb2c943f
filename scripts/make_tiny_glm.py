"""Generate a tiny GLM-4 MoE model (random weights) with a GLM-style tokenizer and template.

Runs inside the CPU vLLM image, which already has torch, transformers and tokenizers:

    invoke tiny-model            # or, by hand:
    docker run --rm -v "$PWD/scripts:/s:ro" -v OUT:/out --entrypoint python3 \
        glmkit/vllm-cpu:0.32.0 /s/make_tiny_glm.py /out

The model is useless for text but exercises everything a real GLM-4.5 deployment
does: the Glm4Moe architecture (dense first layer, routed + shared experts), the
glm45 tool-call and reasoning parsers, and `enable_thinking` in the chat template.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Glm4MoeConfig, Glm4MoeForCausalLM, PreTrainedTokenizerFast

SPECIAL = ["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
           "<|observation|>"]
# Ordinary (non-special) added tokens, as in GLM-4.5: the parsers look for them in text.
MARKUP = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>",
          "<arg_value>", "</arg_value>", "<tool_response>", "</tool_response>", "/nothink"]

CORPUS = [
    "The weather in Paris is sunny today, with a light breeze from the west.",
    "Call the get_weather function with the city and the unit to get a forecast.",
    "GLM models reason step by step before they answer the question.",
    "vLLM serves large language models with paged attention and continuous batching.",
    "What is the temperature in Berlin, Tokyo, Beijing or San Francisco right now?",
    "Tool calls carry a function name and arguments as keys and values.",
    "The quick brown fox jumps over the lazy dog. 0123456789 {}[]():,.\"'",
]

# GLM-4.5's chat template, reduced to what the parsers and `enable_thinking` rely on, with
# GLM-5.3's reasoning effort: with thinking on, a system line names the effort (low, high
# or max; anything else, or none asked, is max; vLLM passes `reasoning_effort` from
# every API to the template). The
# tools are listed by name only, and earlier tool calls by name only: the tiny model
# learns its answers from these prompts (train_tiny_tools.py), so they must render the
# same whether the arguments arrive as a JSON string or a mapping.
CHAT_TEMPLATE = r"""[gMASK]<sop>
{%- set effort = reasoning_effort if reasoning_effort is defined else 'max' -%}
{%- if not (enable_thinking is defined and not enable_thinking) %}
<|system|>
Reasoning effort: {{ effort if effort in ('low', 'high', 'max') else 'max' }}
{%- endif -%}
{%- if tools -%}
<|system|>
# Tools
<tools>
{% for tool in tools %}{{ tool.function.name if tool.function is defined else tool.name }}
{% endfor %}</tools>
{%- endif -%}
{%- for m in messages -%}
{%- if m.role == 'system' -%}
<|system|>
{{ m.content }}
{%- elif m.role == 'user' -%}
<|user|>
{{ m.content }}{{ '/nothink' if (enable_thinking is defined and not enable_thinking) else '' }}
{%- elif m.role == 'assistant' -%}
<|assistant|>
{%- if m.reasoning_content %}
<think>{{ m.reasoning_content }}</think>
{%- else %}
<think></think>
{%- endif %}
{{ m.content or '' }}
{%- if m.tool_calls -%}
{%- for tc in m.tool_calls -%}
{%- set fn = tc.function if tc.function is defined else tc %}
<tool_call>{{ fn.name }}
</tool_call>
{%- endfor -%}
{%- endif -%}
{%- elif m.role == 'tool' -%}
<|observation|>
<tool_response>
{{ m.content }}
</tool_response>
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|assistant|>
{%- if enable_thinking is defined and not enable_thinking %}
<think></think>
{%- endif -%}
{%- endif -%}"""


def build_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer: PreTrainedTokenizerFast, layers: int, vocab: int) -> Glm4MoeForCausalLM:
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>",
                                                         "<|observation|>")]
    config = Glm4MoeConfig(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=256,
        moe_intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=32,  # vLLM's CPU attention needs head size >= 32
        n_routed_experts=4,
        n_shared_experts=1,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        n_group=1,
        topk_group=1,
        num_nextn_predict_layers=0,  # otherwise vLLM looks for MTP weights
        # Room for a coding agent's system prompt (Claude Code's is ~12k tokens here).
        max_position_embeddings=65536,
        partial_rotary_factor=0.5,
        eos_token_id=eos,
        pad_token_id=eos[0],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return Glm4MoeForCausalLM(config).to(torch.bfloat16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=1024)
    args = parser.parse_args()

    tokenizer = build_tokenizer(vocab_size=args.vocab // 2)
    if len(tokenizer) > args.vocab:
        raise SystemExit(f"tokenizer has {len(tokenizer)} tokens, more than --vocab {args.vocab}")
    model = build_model(tokenizer, args.layers, args.vocab)
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    model.save_pretrained(args.out, safe_serialization=True)
    info = {"layers": args.layers, "vocab": args.vocab, "tokens": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters())}
    (args.out / "glmkit-tiny.json").write_text(json.dumps(info, indent=2) + "\n")
    # Readable by the server even when its root has no CAP_DAC_OVERRIDE (cap_drop: ALL).
    for path in args.out.iterdir():
        path.chmod(0o644)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
