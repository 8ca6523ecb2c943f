"""Generate a tiny GLM-4.5V model (random weights): MoE language model + vision tower.

Runs inside the CPU vLLM image (torch, transformers, tokenizers, Pillow), offline:

    invoke tiny-model --vision     # or, by hand:
    docker run --rm --network none -v "$PWD/scripts:/s:ro" -v OUT:/out \
        --entrypoint python3 glmkit/vllm-cpu:0.32.0 /s/make_tiny_glm_vision.py /out

GLM-4.5V's architecture (`Glm4vMoeForConditionalGeneration`) at toy size: the text tiny
model's tokenizer (make_tiny_glm.py) plus GLM-V's image and video tokens, a GLM-4.5V-style
chat template with their placeholders, and GLM-4.1V/4.5V's processor (the Pillow image
processor: the image has no torchvision). train_tiny_vision.py then teaches the language
part the tool-call cases, so `invoke up`'s tool-call check passes as for the text model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import Glm4vMoeConfig, Glm4vMoeForConditionalGeneration

sys.path.insert(0, str(Path(__file__).parent))
from make_tiny_glm import build_tokenizer

# GLM-4.5V's vision special tokens (their names as in the real tokenizer).
VISION = {"image_start_token_id": "<|begin_of_image|>", "image_end_token_id": "<|end_of_image|>",
          "video_start_token_id": "<|begin_of_video|>", "video_end_token_id": "<|end_of_video|>",
          "image_token_id": "<|image|>", "video_token_id": "<|video|>"}

# Content may be a string or GLM-4.5V's list of parts; images and videos become their
# placeholders, which vLLM's processor expands to one token per merged patch. Text-only
# messages render exactly as the text tiny model's template (its tool training relies on it).
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


def chat_template(text_template: str) -> str:
    body = text_template.replace("{{ m.content }}", "{{ visible(m.content) }}")
    return VISIBLE + body


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


def build_model(ids: dict[str, int], eos: list[int], layers: int, vocab: int
                ) -> Glm4vMoeForConditionalGeneration:
    text: dict[str, Any] = {
        "vocab_size": vocab, "hidden_size": 128, "intermediate_size": 256,
        "moe_intermediate_size": 64, "num_hidden_layers": layers, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 32,  # vLLM's CPU attention: head size >= 32
        "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2,
        "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1,
        "num_nextn_predict_layers": 0, "max_position_embeddings": 2048,
        "attention_bias": True, "use_qk_norm": False, "partial_rotary_factor": 0.5,
        # 3-D rotary positions (time, height, width) over the 16 rotary dims, as GLM-4.5V's
        # [8, 12, 12] over 64.
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                            "partial_rotary_factor": 0.5, "mrope_section": [2, 3, 3]},
        "eos_token_id": eos, "pad_token_id": eos[0], "tie_word_embeddings": False}
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
    args = parser.parse_args()

    tokenizer = build_tokenizer(vocab_size=args.vocab // 2)
    tokenizer.add_special_tokens({"additional_special_tokens": list(VISION.values())})
    tokenizer.chat_template = chat_template(tokenizer.chat_template)
    if len(tokenizer) > args.vocab:
        raise SystemExit(f"tokenizer has {len(tokenizer)} tokens, more than --vocab {args.vocab}")
    ids = {key: tokenizer.convert_tokens_to_ids(tok) for key, tok in VISION.items()}
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>",
                                                         "<|observation|>")]
    model = build_model(ids, eos, args.layers, args.vocab)
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    processor_files(args.out)
    model.save_pretrained(args.out, safe_serialization=True)
    info = {"architecture": "Glm4vMoeForConditionalGeneration", "layers": args.layers,
            "vocab": args.vocab, "tokens": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters()),
            "vision_parameters": sum(p.numel() for p in model.model.visual.parameters())}
    (args.out / "glmkit-tiny.json").write_text(json.dumps(info, indent=2) + "\n")
    # Readable by the server even when its root has no CAP_DAC_OVERRIDE (cap_drop: ALL).
    for path in args.out.iterdir():
        path.chmod(0o644)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
