"""Teach a tiny GLM model to call tools the way GLM does, so tool parsing runs for real.

Runs inside the CPU vLLM image after make_tiny_glm.py (text or --vision), on the
conversations of glmkit's tool-call conformance cases (tool_cases.json):

    python3 train_tiny_tools.py MODEL_DIR tool_cases.json

For every case, with thinking on and off, the model learns to answer greedy with GLM's
own markup, in GLM-4.7's compact form (`<tool_call>name<arg_key>k</arg_key><arg_value>v
</arg_value>…</tool_call>`, `<think>…</think>` first when thinking is on,
`<|observation|>` after calls), or with plain text. That form is what vLLM's GLM tool
parser constrains the output to (a structural tag, for tool_choice auto, required and a
named function alike). One thread and fixed seeds: the same weights every time. The run
checks its own greedy answers in bfloat16 (what vLLM serves) and fails if any differs
from what it was taught. Then, for the text model, one MTP layer (GLM's next-next-token
predictor, served with `--speculative-config.method mtp`) is trained on the same answers,
so MTP drafts are mostly accepted and streamed tool calls arrive several tokens at a time.
The vision model (its config.json has a vision_config) learns the same conversations,
text only: its vision tower keeps its random weights (images only have to reach the
model, not be understood), and it has no MTP layer.

With --arith (the text model), it also learns tiny-arith (data/tiny_gsm8k.json, #34):
the answer to each test question's 5-shot completions prompt, as `invoke eval` asks it
(lm-eval's GSM8K protocol, the one the published thresholds use), followed by EOS. Both
sets train together in 300 steps instead of 400, at the time 400 took for the tool cases
alone: the few-shot block all 50 prompts share is computed once a step. Every answer is
then checked by teacher forcing in bfloat16, and the smallest lead of a taught token over
the runner-up is recorded beside the tool cases' (vLLM's CPU numerics differ a little from
torch's: a lead of a few logits keeps the served answers the same).
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
from transformers import AutoTokenizer, Glm4MoeForCausalLM, Glm4vMoeForConditionalGeneration

END_OF_CALLS = "<|observation|>"  # GLM ends a turn of tool calls by awaiting the result
END_OF_ANSWER = "<|user|>"
END_OF_TEXT = "<|endoftext|>"  # a completion's end (EOS)
# tiny-arith's prompts: lm-eval's GSM8K (5-shot, completions endpoint, its "Question: …\n
# Answer:" lines, " " before the target), the protocol of the published GSM8K thresholds
# that `invoke eval` fixes (#34).
FEW_SHOT = 5
ARITH_WEIGHT = 2.0  # of its loss beside the tool cases': it has more to learn


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
    """(prompt, completion) for every case, thinking on and off, and at each effort a
    case names."""
    out = []
    for case in data["cases"]:
        body = markup(case["calls"]) + END_OF_CALLS if "calls" in case else \
            case["answer"] + END_OF_ANSWER
        # Thinking off; on at the default effort (max); on at each effort the case names,
        # whose reasoning then says which effort reached the prompt.
        for effort, reasoning in [(None, None), ("max", case["reasoning"]),
                                  *case.get("effort_reasoning", {}).items()]:
            kwargs = {"enable_thinking": False} if effort is None else \
                {"reasoning_effort": effort}
            prompt = tokenizer.apply_chat_template(
                case["messages"], tools=data["tools"], add_generation_prompt=True,
                tokenize=False, **kwargs)
            think = f"<think>{reasoning}</think>" if reasoning else ""
            out.append((prompt, think + body))
    return out


def shot(item: dict[str, str]) -> str:
    return f"Question: {item['question']}\nAnswer: {item['answer']}"


def arith_examples(data: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """tiny-arith's prompts: the part all share (the few-shot block of its first train
    items, up to the next "Question:") and, for each test question, the rest of its prompt
    and the completion taught: " " and the worked answer, then EOS."""
    shots = "\n\n".join(shot(item) for item in data["train"][:FEW_SHOT])
    return f"{shots}\n\nQuestion:", [(f" {item['question']}\nAnswer:",
                                       f" {item['answer']}{END_OF_TEXT}")
                                      for item in data["test"]]


def arith_batch(tokenizer: Any, arith: tuple[str, list[tuple[str, str]]]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The shared part's tokens (1 x P), then every question's own: ids, labels (the
    completion only) and mask, right-padded."""
    shared, rest = arith
    block = tokenizer(shared, add_special_tokens=False)["input_ids"]
    items = []
    for prompt, completion in rest:
        whole = tokenizer(shared + prompt, add_special_tokens=False)["input_ids"]
        if whole[:len(block)] != block:  # a token across the seam: not the served prompt
            raise SystemExit(f"tiny-arith's few-shot block tokenizes apart from {prompt!r}")
        items.append((whole[len(block):],
                      tokenizer(completion, add_special_tokens=False)["input_ids"]))
    width = max(len(p) + len(c) for p, c in items)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([p + c + [pad] * (width - len(p) - len(c)) for p, c in items])
    labels = torch.tensor([[-100] * len(p) + c + [-100] * (width - len(p) - len(c))
                           for p, c in items])
    mask = torch.tensor([[1] * (len(p) + len(c)) + [0] * (width - len(p) - len(c))
                         for p, c in items])
    return torch.tensor([block]), ids, labels, mask


def arith_loss(model: Any, block: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
    """The loss on every question's completion after the shared block, which is computed
    once (its keys and values shared by all rows) instead of once per question: the 5-shot
    prompts train at little more than the cost of their questions."""
    rows, width = ids.shape
    cache = model(input_ids=block, use_cache=True).past_key_values
    for layer in cache.layers:
        layer.keys = layer.keys.expand(rows, -1, -1, -1)
        layer.values = layer.values.expand(rows, -1, -1, -1)
    seen = block.shape[1]
    return model(input_ids=ids, labels=labels, past_key_values=cache,
                 attention_mask=torch.cat([torch.ones(rows, seen, dtype=mask.dtype), mask], 1),
                 position_ids=(seen + torch.arange(width)).expand(rows, -1)).loss


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
    stops = set(getattr(model.config, "text_config", model.config).eos_token_id)
    with torch.no_grad():
        for _ in range(limit):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
            if nxt in stops:
                break
    return str(tokenizer.decode(ids[0], skip_special_tokens=False))[len(prompt):]


def forced(model: Any, tokenizer: Any, items: list[tuple[str, str]]
           ) -> tuple[list[tuple[str, str]], float]:
    """Greedy answers by teacher forcing: the completions whose every token is the argmax
    after the prompt and the taught tokens before it (exactly those greedy decoding
    reproduces), as (want, got up to the first wrong token), and the smallest margin of a
    taught token's logit over the best other one."""
    wrong, margin = [], float("inf")
    for start in range(0, len(items), 16):
        batch = items[start:start + 16]
        ids, target, mask = encode(tokenizer, batch)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        want = target[:, 1:]
        for row, (_, completion) in enumerate(batch):
            at = (want[row] != -100).nonzero().flatten()
            taught = logits[row, at].gather(1, want[row, at].unsqueeze(1)).squeeze(1)
            other = logits[row, at].scatter(1, want[row, at].unsqueeze(1), float("-inf"))
            gaps = taught - other.max(1).values
            margin = min(margin, float(gaps.min()))
            if (gaps <= 0).any():
                first = int((gaps <= 0).nonzero()[0])
                got = [*want[row, at][:first].tolist(), int(logits[row, at[first]].argmax())]
                wrong.append((completion, str(tokenizer.decode(got))))
    return wrong, margin


class MtpLayer(torch.nn.Module):
    """GLM's MTP layer as vLLM runs it (glm4_moe_mtp.py): at position t, the embedding of
    token t+1 and the model's final hidden state at t go through one decoder layer to
    predict token t+2, with the model's own embedding and output head."""

    def __init__(self, config: Any) -> None:
        from transformers.models.glm4_moe.modeling_glm4_moe import (
            Glm4MoeDecoderLayer,
            Glm4MoeRMSNorm,
        )

        super().__init__()
        hidden = config.hidden_size
        self.enorm = Glm4MoeRMSNorm(hidden, eps=config.rms_norm_eps)
        self.hnorm = Glm4MoeRMSNorm(hidden, eps=config.rms_norm_eps)
        self.eh_proj = torch.nn.Linear(2 * hidden, hidden, bias=False)
        self.block = Glm4MoeDecoderLayer(config, layer_idx=config.num_hidden_layers)
        self.head_norm = Glm4MoeRMSNorm(hidden, eps=config.rms_norm_eps)

    def forward(self, model: Any, ids: torch.Tensor) -> torch.Tensor:
        """Logits for token t+2 at every position t < T-1."""
        with torch.no_grad():
            hidden = model.model(input_ids=ids).last_hidden_state[:, :-1]
            embeds = model.model.embed_tokens(ids[:, 1:]).clone()
        embeds[:, 0] = 0  # vLLM masks the embedding at position 0
        x = self.eh_proj(torch.cat([self.enorm(embeds), self.hnorm(hidden)], dim=-1))
        positions = torch.arange(x.shape[1]).unsqueeze(0).expand(x.shape[0], -1)
        rotary = model.model.rotary_emb(x, positions)
        out = self.block(x, attention_mask=None, position_ids=positions,
                         position_embeddings=rotary)
        out = out[0] if isinstance(out, tuple) else out
        return model.lm_head(self.head_norm(out))


def train_mtp(model: Any, ids: torch.Tensor, target: torch.Tensor, steps: int
              ) -> tuple[MtpLayer, float]:
    """The MTP layer trained on the same completions, the main model frozen; returns it
    and how often it predicts the token after next on them."""
    torch.manual_seed(1)
    mtp = MtpLayer(model.config)
    for module in mtp.modules():  # fused expert weights start empty outside from_pretrained
        model._init_weights(module)
    optimizer = torch.optim.AdamW(mtp.parameters(), lr=4e-3, weight_decay=0.0)
    labels = target[:, 2:]  # the token after next, where the completion is trained
    for _ in range(steps):
        optimizer.zero_grad()
        logits = mtp(model, ids)[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 labels.reshape(-1), ignore_index=-100)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    with torch.no_grad():
        guess = mtp(model, ids)[:, :-1].argmax(-1)
    scored = labels != -100
    return mtp, float((guess[scored] == labels[scored]).float().mean())


def save_mtp_layer(folder: Path, mtp: MtpLayer) -> None:
    """Append the MTP layer under vLLM's names (`model.layers.<N>.…`) and set
    `num_nextn_predict_layers: 1`. vLLM's MTP loader reads experts one by one, where
    transformers keeps them fused: they are split here."""
    config = json.loads((folder / "config.json").read_text())
    prefix = f"model.layers.{config['num_hidden_layers']}."
    weights = load_file(str(folder / "model.safetensors"))
    parts = {f"{prefix}{k}": v for k, v in mtp.block.state_dict().items()}
    parts.update({f"{prefix}enorm.weight": mtp.enorm.weight,
                  f"{prefix}hnorm.weight": mtp.hnorm.weight,
                  f"{prefix}eh_proj.weight": mtp.eh_proj.weight,
                  f"{prefix}shared_head.norm.weight": mtp.head_norm.weight})
    for key, value in parts.items():
        value = value.detach().to(torch.bfloat16)
        if key.endswith("mlp.experts.gate_up_proj"):  # [experts, 2 x moe_intermediate, hidden]
            for e in range(value.shape[0]):
                gate, up = value[e].chunk(2, dim=0)
                weights[key.replace("gate_up_proj", f"{e}.gate_proj.weight")] = gate.contiguous()
                weights[key.replace("gate_up_proj", f"{e}.up_proj.weight")] = up.contiguous()
        elif key.endswith("mlp.experts.down_proj"):  # [experts, hidden, moe_intermediate]
            for e in range(value.shape[0]):
                weights[key.replace("down_proj", f"{e}.down_proj.weight")] = \
                    value[e].contiguous()
        else:
            weights[key] = value.contiguous()
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config["num_nextn_predict_layers"] = 1
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("cases", type=Path)
    # The vision model takes more steps: wider margins, so vLLM's CPU numerics (not only
    # the bf16 greedy check here) pick the taught answer after a tool result.
    parser.add_argument("--steps", type=int,
                        help="400 (text), 300 (text with --arith), 800 (vision)")
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--arith", type=Path,
                        help="tiny-arith (data/tiny_gsm8k.json): also learn its 5-shot answers")
    args = parser.parse_args()
    vision = "vision_config" in json.loads((args.model / "config.json").read_text())
    # With tiny-arith, 300 steps: both sets have converged by then (every taught token
    # ahead of the runner-up by 4.75 logits in the tool cases, 5.1 in tiny-arith; 5.9 in
    # the tool cases after 400 steps alone), and a step costs about 4/3 of theirs alone.
    steps = args.steps if args.steps is not None else 800 if vision else \
        400 if args.arith is None else 300

    torch.manual_seed(0)
    torch.set_num_threads(1)  # the same sums in the same order: the same weights
    torch.use_deterministic_algorithms(True)
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    kind = Glm4vMoeForConditionalGeneration if vision else Glm4MoeForCausalLM
    model = kind.from_pretrained(args.model, dtype=torch.float32)
    data = json.loads(args.cases.read_text())
    items = examples(tokenizer, data)
    ids, target, mask = encode(tokenizer, items)
    arith = None if args.arith is None else arith_examples(json.loads(args.arith.read_text()))
    arith_inputs = None if arith is None else arith_batch(tokenizer, arith)
    frozen = {id(p) for p in model.model.visual.parameters()} if vision else set()
    trained = [p for p in model.parameters() if id(p) not in frozen]
    optimizer = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=target).loss
        if arith_inputs is not None:
            loss = loss + ARITH_WEIGHT * arith_loss(model, *arith_inputs)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
    model.eval()
    mtp, mtp_accuracy = (None, 0.0) if vision else train_mtp(model, ids, target, 150)
    model = model.to(torch.bfloat16)
    wrong = []
    for prompt, completion in items:
        got = greedy(model, tokenizer, prompt, len(tokenizer(completion)["input_ids"]) + 4)
        if got != completion:
            wrong.append({"want": completion, "got": got})
    if wrong:
        raise SystemExit(f"training did not take ({len(wrong)} of {len(items)}): "
                         f"{json.dumps(wrong[:3], ensure_ascii=False)}")
    tool_margin = forced(model, tokenizer, items)[1]
    margin = None
    if arith is not None:
        shots, rest = arith
        missed, margin = forced(model, tokenizer, [(shots + p, c) for p, c in rest])
        if missed:
            raise SystemExit(f"tiny-arith did not take ({len(missed)} of {len(rest)}): "
                             f"{json.dumps(missed[:3], ensure_ascii=False)}")
    model.save_pretrained(args.model, safe_serialization=True)
    if mtp is not None:
        save_mtp_layer(args.model, mtp)
    weights = hashlib.sha256((args.model / "model.safetensors").read_bytes()).hexdigest()
    info_path = args.model / "glmkit-tiny.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info["tool_training"] = {"examples": len(items), "steps": steps,
                             "final_loss": round(loss.item(), 5),
                             **({} if mtp is None else
                                {"mtp_next_next_token_accuracy": round(mtp_accuracy, 4)}),
                             "tool_min_logit_margin": round(tool_margin, 3),
                             **({} if arith is None else
                                {"arith_questions": len(arith[1]),
                                 "arith_min_logit_margin": round(margin or 0.0, 3)}),
                             "seconds": round(time.monotonic() - started, 1),
                             "weights_sha256": weights}
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    for path in args.model.iterdir():
        path.chmod(0o644)
    print(json.dumps(info["tool_training"]))


if __name__ == "__main__":
    main()
