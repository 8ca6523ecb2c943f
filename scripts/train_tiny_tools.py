"""Teach the tiny GLM model to call tools the way GLM does, so tool parsing runs for real.

Runs inside the CPU vLLM image after make_tiny_glm.py, on the conversations of
glmkit's tool-call conformance cases (tool_cases.json):

    python3 train_tiny_tools.py MODEL_DIR tool_cases.json

For every case, with thinking on and off, the model learns to answer greedy with GLM's
own markup, in GLM-4.7's compact form (`<tool_call>name<arg_key>k</arg_key><arg_value>v
</arg_value>…</tool_call>`, `<think>…</think>` first when thinking is on,
`<|observation|>` after calls), or with plain text. That form is what vLLM's GLM tool
parser constrains the output to (a structural tag, for tool_choice auto, required and a
named function alike). One thread and fixed seeds: the same weights every time. The run
checks its own greedy answers in bfloat16 (what vLLM serves) and fails if any differs
from what it was taught.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, Glm4MoeConfig, Glm4MoeForCausalLM

END_OF_CALLS = "<|observation|>"  # GLM ends a turn of tool calls by awaiting the result
END_OF_ANSWER = "<|user|>"


def arg_text(value: Any) -> str:
    return value if isinstance(value, str) else \
        json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def markup(calls: list[dict[str, Any]]) -> str:
    """GLM-4.7's tool-call markup, one block per call, nothing between them."""
    return "".join(
        f"<tool_call>{c['name']}" + "".join(
            f"<arg_key>{k}</arg_key><arg_value>{arg_text(v)}</arg_value>"
            for k, v in c["arguments"].items()) + "</tool_call>" for c in calls)


def examples(tokenizer: Any, data: dict[str, Any]) -> list[tuple[str, str]]:
    """(prompt, completion) for every case, thinking on and off."""
    out = []
    for case in data["cases"]:
        for thinking in (True, False):
            prompt = tokenizer.apply_chat_template(
                case["messages"], tools=data["tools"], add_generation_prompt=True,
                tokenize=False, enable_thinking=thinking)
            think = f"<think>{case['reasoning']}</think>" if thinking else ""
            body = markup(case["calls"]) + END_OF_CALLS if "calls" in case else \
                case["answer"] + END_OF_ANSWER
            out.append((prompt, think + body))
    return out


def encode(tokenizer: Any, items: list[tuple[str, str]]
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt and completion tokens; the loss only on the completion."""
    rows, labels = [], []
    for prompt, completion in items:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        rows.append(p + c)
        labels.append([-100] * len(p) + c)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    target = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, target, mask


def greedy(model: Any, tokenizer: Any, prompt: str, limit: int) -> str:
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    stops = set(model.config.eos_token_id)
    with torch.no_grad():
        for _ in range(limit):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
            if nxt in stops:
                break
    return str(tokenizer.decode(ids[0], skip_special_tokens=False))[len(prompt):]


def add_mtp_layer(folder: Path) -> None:
    """One MTP layer (GLM's next-token predictor, `num_nextn_predict_layers: 1`) after the
    last decoder layer, so vLLM can serve the model with MTP speculative decoding. It is
    initialised, not trained: vLLM verifies every draft, so answers stay the same and
    drafts are rarely accepted. vLLM's MTP loader reads experts one by one, where
    transformers writes them fused: they are split here."""
    config = json.loads((folder / "config.json").read_text())
    layer, hidden = config["num_hidden_layers"], config["hidden_size"]
    wider = Glm4MoeConfig(**{k: v for k, v in config.items()
                             if k not in ("architectures", "transformers_version", "dtype")})
    wider.num_hidden_layers, wider.num_nextn_predict_layers = layer + 1, 0
    torch.manual_seed(1)
    donor = Glm4MoeForCausalLM(wider).to(torch.bfloat16).state_dict()
    weights = load_file(str(folder / "model.safetensors"))
    prefix = f"model.layers.{layer}."
    for key, value in donor.items():
        if not key.startswith(prefix):
            continue
        if key.endswith("mlp.experts.gate_up_proj"):  # [experts, 2 x moe_intermediate, hidden]
            for e in range(value.shape[0]):
                gate, up = value[e].chunk(2, dim=0)
                weights[f"{prefix}mlp.experts.{e}.gate_proj.weight"] = gate.contiguous()
                weights[f"{prefix}mlp.experts.{e}.up_proj.weight"] = up.contiguous()
        elif key.endswith("mlp.experts.down_proj"):  # [experts, hidden, moe_intermediate]
            for e in range(value.shape[0]):
                weights[f"{prefix}mlp.experts.{e}.down_proj.weight"] = value[e].contiguous()
        else:
            weights[key] = value.contiguous()
    weights[f"{prefix}eh_proj.weight"] = (torch.randn(hidden, 2 * hidden) * 0.02).to(
        torch.bfloat16)
    for norm in ("enorm", "hnorm", "shared_head.norm"):
        weights[f"{prefix}{norm}.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config["num_nextn_predict_layers"] = 1
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("cases", type=Path)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=4e-3)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(1)  # the same sums in the same order: the same weights
    torch.use_deterministic_algorithms(True)
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = Glm4MoeForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    data = json.loads(args.cases.read_text())
    items = examples(tokenizer, data)
    ids, target, mask = encode(tokenizer, items)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
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
        raise SystemExit(f"training did not take: {json.dumps(wrong[:3], ensure_ascii=False)}")
    model.save_pretrained(args.model, safe_serialization=True)
    add_mtp_layer(args.model)
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
