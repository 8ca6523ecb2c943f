"""Generate a tiny GLM model (random weights): GLM-4 MoE, or with --vision GLM-4.5V.

Runs inside the CPU vLLM image, which already has torch, transformers, tokenizers and
Pillow, offline:

    invoke tiny-model [--vision]   # or, by hand:
    docker run --rm --network none -v "$PWD/scripts:/s:ro" -v OUT:/out \
        --entrypoint python3 glmkit/vllm-cpu:0.32.0 /s/make_tiny_glm.py /out [--vision]

The model is useless for text but exercises everything a real GLM-4.5 deployment
does: the Glm4Moe architecture (dense first layer, routed + shared experts), the
glm45 tool-call and reasoning parsers, and `enable_thinking` in the chat template.
With --vision it is GLM-4.5V's architecture (`Glm4vMoeForConditionalGeneration`) at toy
size: the same tokenizer plus GLM-V's image and video tokens, the template with their
placeholders, and GLM-4.1V/4.5V's processor (the Pillow image processor: the image has
no torchvision). train_tiny_tools.py then teaches either the tool-call cases.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Glm4MoeConfig,
    Glm4MoeForCausalLM,
    Glm4vMoeConfig,
    Glm4vMoeForConditionalGeneration,
    PreTrainedTokenizerFast,
)

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


def build_tokenizer(vocab_size: int, extra: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([*CORPUS, *extra] * 4, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


# GLM-4.5V's vision special tokens (their names as in the real tokenizer).
VISION = {"image_start_token_id": "<|begin_of_image|>", "image_end_token_id": "<|end_of_image|>",
          "video_start_token_id": "<|begin_of_video|>", "video_end_token_id": "<|end_of_video|>",
          "image_token_id": "<|image|>", "video_token_id": "<|video|>"}

# Content may be a string or GLM-4.5V's list of parts; images and videos become their
# placeholders, which vLLM's processor expands to one token per merged patch. Text-only
# messages render exactly as the text model's template (tool training relies on it).
VISIBLE = r"""{%- macro visible(content) -%}
{%- if content is string -%}{{ content }}
{%- elif content is iterable -%}
{%- for item in content -%}
{%- if item.type == 'image' or item.type == 'image_url' or 'image' in item -%}
<|begin_of_image|><|image|><|end_of_image|>
{%- elif item.type == 'video' or item.type == 'video_url' or 'video' in item -%}
<|begin_of_video|><|video|><|end_of_video|>
{%- elif item.type == 'text' -%}{{ item.text }}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
"""

# Image side: 14-pixel patches, 2x2 merged into one token; a small pixel budget keeps the
# prompt short (4 to 256 tokens per image), so a few images fit the 2048-token context.
PATCH, MERGE, TEMPORAL = 14, 2, 2
MIN_PIXELS, MAX_PIXELS = (PATCH * MERGE) ** 2 * 4, (PATCH * MERGE) ** 2 * 256


def add_vision_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    tokenizer.add_special_tokens({"additional_special_tokens": list(VISION.values())})
    tokenizer.chat_template = VISIBLE + tokenizer.chat_template.replace(
        "{{ m.content }}", "{{ visible(m.content) }}")


def processor_files(out: Path) -> None:
    """GLM-4.1V/4.5V's processor configuration, written as data (the image has no
    torchvision, which transformers' video processor class needs to save itself)."""
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    image = {"image_processor_type": "Glm4vImageProcessor", "processor_class": "Glm4vProcessor",
             "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255,
             "do_normalize": True, "do_convert_rgb": True, "image_mean": mean,
             "image_std": std, "patch_size": PATCH, "merge_size": MERGE,
             "temporal_patch_size": TEMPORAL,
             "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}}
    video = {**image, "video_processor_type": "Glm4vVideoProcessor", "fps": 2,
             "max_duration": 300, "num_frames": 16, "do_sample_frames": True,
             "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS * 4}}
    del video["image_processor_type"]
    (out / "preprocessor_config.json").write_text(json.dumps(image, indent=2) + "\n")
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2) + "\n")
    (out / "processor_config.json").write_text(
        json.dumps({"processor_class": "Glm4vProcessor"}, indent=2) + "\n")


def text_config(eos: list[int], layers: int, vocab: int) -> dict[str, Any]:
    """The MoE language model, the same in both kinds."""
    return {
        "vocab_size": vocab, "hidden_size": 128, "intermediate_size": 256,
        "moe_intermediate_size": 64, "num_hidden_layers": layers, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 32,  # vLLM's CPU attention: head size >= 32
        "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2,
        "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1,
        "num_nextn_predict_layers": 0,  # otherwise vLLM looks for MTP weights
        "partial_rotary_factor": 0.5, "eos_token_id": eos, "pad_token_id": eos[0],
        "tie_word_embeddings": False}


def build_model(eos: list[int], layers: int, vocab: int) -> Glm4MoeForCausalLM:
    # Room for a coding agent's system prompt (Claude Code's is ~12k tokens here).
    config = Glm4MoeConfig(**text_config(eos, layers, vocab), max_position_embeddings=65536)
    torch.manual_seed(0)
    return Glm4MoeForCausalLM(config).to(torch.bfloat16)


def build_vision_model(ids: dict[str, int], eos: list[int], layers: int, vocab: int
                       ) -> Glm4vMoeForConditionalGeneration:
    text = {**text_config(eos, layers, vocab), "max_position_embeddings": 2048,
            "attention_bias": True, "use_qk_norm": False,
            # 3-D rotary positions (time, height, width) over the 16 rotary dims, as
            # GLM-4.5V's [8, 12, 12] over 64.
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "partial_rotary_factor": 0.5, "mrope_section": [2, 3, 3]}}
    vision = {"depth": 2, "hidden_size": 64, "num_heads": 2, "intermediate_size": 128,
              "out_hidden_size": 128, "patch_size": PATCH, "spatial_merge_size": MERGE,
              "temporal_patch_size": TEMPORAL, "image_size": 336, "in_channels": 3}
    config = Glm4vMoeConfig(text_config=text, vision_config=vision, **ids,
                            tie_word_embeddings=False)
    config.eos_token_id = eos
    config.pad_token_id = eos[0]
    torch.manual_seed(0)
    return Glm4vMoeForConditionalGeneration(config).to(torch.bfloat16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--vision", action="store_true", help="GLM-4.5V: MoE + vision tower")
    parser.add_argument("--arith", type=Path,
                        help="tiny-arith (data/tiny_gsm8k.json): its words become tokens")
    args = parser.parse_args()

    # With tiny-arith, the tokenizer also learns its questions and answers, in a larger
    # vocabulary: its names, things and numbers are whole tokens, so a 5-shot prompt is a
    # third as long (and so is training on it).
    extra = [] if args.arith is None else [
        f"Question: {item['question']}\nAnswer: {item['answer']}"
        for split in ("train", "test") for item in json.loads(args.arith.read_text())[split]]
    tokenizer = build_tokenizer(args.vocab // 2 if args.arith is None else args.vocab * 3 // 4,
                                extra)
    if args.vision:
        add_vision_tokens(tokenizer)
    if len(tokenizer) > args.vocab:
        raise SystemExit(f"tokenizer has {len(tokenizer)} tokens, more than --vocab {args.vocab}")
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>",
                                                         "<|observation|>")]
    model: Glm4MoeForCausalLM | Glm4vMoeForConditionalGeneration
    if args.vision:
        ids = {key: tokenizer.convert_tokens_to_ids(tok) for key, tok in VISION.items()}
        model = build_vision_model(ids, eos, args.layers, args.vocab)
    else:
        model = build_model(eos, args.layers, args.vocab)
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    if args.vision:
        processor_files(args.out)
    model.save_pretrained(args.out, safe_serialization=True)
    info = {"architecture": type(model).__name__, "layers": args.layers,
            "vocab": args.vocab, "tokens": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters())}
    if args.vision:
        info["vision_parameters"] = sum(p.numel() for p in model.model.visual.parameters())
    (args.out / "glmkit-tiny.json").write_text(json.dumps(info, indent=2) + "\n")
    # Readable by the server even when its root has no CAP_DAC_OVERRIDE (cap_drop: ALL).
    for path in args.out.iterdir():
        path.chmod(0o644)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
