"""Teach the tiny GLM-4.5V model's language part the tool-call cases, as the text model learns.

Runs inside the CPU vLLM image after make_tiny_glm_vision.py:

    python3 train_tiny_vision.py MODEL_DIR tool_cases.json

The same conversations, markup and completions as train_tiny_tools.py (whose helpers it
uses), text only: the vision tower keeps its random weights (images only have to reach
the model, not be understood). One thread, fixed seeds: the same weights every time. The
run checks its own greedy answers in bfloat16 and fails if any differs from what it was
taught, so `invoke up`'s tool-call check passes on the vision model too. No MTP layer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, Glm4vMoeForConditionalGeneration

sys.path.insert(0, str(Path(__file__).parent))
from train_tiny_tools import encode, examples


def greedy(model: Any, tokenizer: Any, prompt: str, limit: int) -> str:
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    stops = set(model.config.text_config.eos_token_id)
    with torch.no_grad():
        for _ in range(limit):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
            if nxt in stops:
                break
    return str(tokenizer.decode(ids[0], skip_special_tokens=False))[len(prompt):]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("cases", type=Path)
    # More steps than the text model: wider margins, so vLLM's CPU numerics (not only
    # the bf16 greedy check here) pick the taught answer after a tool result.
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--lr", type=float, default=4e-3)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)  # the same sums in the same order: the same weights
    torch.use_deterministic_algorithms(True)
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = Glm4vMoeForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32)
    items = examples(tokenizer, json.loads(args.cases.read_text()))
    ids, target, mask = encode(tokenizer, items)
    visual = {id(p) for p in model.model.visual.parameters()}
    trained = [p for p in model.parameters() if id(p) not in visual]
    optimizer = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(args.steps):
        optimizer.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=target).loss
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
    model.eval()
    model = model.to(torch.bfloat16)
    wrong = []
    for prompt, completion in items:
        got = greedy(model, tokenizer, prompt, len(tokenizer(completion)["input_ids"]) + 4)
        if got != completion:
            wrong.append({"want": completion, "got": got})
    if wrong:
        raise SystemExit(f"training did not take ({len(wrong)} of {len(items)}): "
                         f"{json.dumps(wrong[:2], ensure_ascii=False)}")
    model.save_pretrained(args.model, safe_serialization=True)
    weights = hashlib.sha256((args.model / "model.safetensors").read_bytes()).hexdigest()
    info_path = args.model / "glmkit-tiny.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info["tool_training"] = {"examples": len(items), "steps": args.steps,
                             "final_loss": round(loss.item(), 5),
                             "seconds": round(time.monotonic() - started, 1),
                             "weights_sha256": weights}
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    for path in args.model.iterdir():
        path.chmod(0o644)
    print(json.dumps(info["tool_training"]))


if __name__ == "__main__":
    main()
