"""Score a running server on tiny-arith the way the published GSM8K gates ask (#34).

    python scripts/score_arith_set.py http://127.0.0.1:8000 [--model NAME] [--runs 2]

lm-eval's and vLLM CI's GSM8K protocol: the first five train items as "Question: …\\n
Answer: …" blocks joined by blank lines, then "Question: {q}\\nAnswer:"; /v1/completions,
temperature 0, 256 tokens, stop at "Question:"; every test question of
src/glmkit/data/tiny_gsm8k.json. Prints the strict score (lm-eval's `#### N`), the
flexible one (the last number) and, with --runs above 1, whether every run answered alike
(greedy answers must not move between runs). A check of the tiny model and of a copy of
it (scripts/perturb_experts.py), independent of `invoke eval`; standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SET = Path(__file__).resolve().parents[1] / "src" / "glmkit" / "data" / "tiny_gsm8k.json"
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def number(text: str) -> str:
    return text.replace(",", "").replace("$", "").rstrip(".")


def strict(reply: str) -> str | None:
    found = STRICT.search(reply)
    return number(found.group(1)) if found else None


def flexible(reply: str) -> str | None:
    found = FLEXIBLE.findall(reply)
    return number(next(g for g in found[-1] if g)) if found else None


def complete(base: str, model: str, prompt: str) -> str:
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": 256,
                       "temperature": 0, "stop": ["Question:", "</s>", "<|im_end|>"]})
    request = urllib.request.Request(f"{base}/v1/completions", body.encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as reply:
        return str(json.load(reply)["choices"][0]["text"])


def served_model(base: str) -> str:
    with urllib.request.urlopen(f"{base}/v1/models", timeout=30) as reply:
        return str(json.load(reply)["data"][0]["id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the server's URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", help="default: the first model the server lists")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--show", type=int, default=3, help="wrong answers to print")
    args = parser.parse_args()
    data = json.loads(SET.read_text())
    shots = "\n\n".join(f"Question: {i['question']}\nAnswer: {i['answer']}"
                        for i in data["train"][:5])
    prompts = [f"{shots}\n\nQuestion: {i['question']}\nAnswer:" for i in data["test"]]
    targets = [number(i["answer"].split("#### ")[-1]) for i in data["test"]]
    model = args.model or served_model(args.base)
    runs = []
    for _ in range(args.runs):
        with ThreadPoolExecutor(8) as pool:
            runs.append(list(pool.map(lambda p: complete(args.base, model, p), prompts)))
    replies = runs[0]
    n = len(targets)
    right_strict = [strict(r) == t for r, t in zip(replies, targets, strict=True)]
    right_flexible = [flexible(r) == t for r, t in zip(replies, targets, strict=True)]
    exact = sum(r == f" {i['answer']}" for r, i in zip(replies, data["test"], strict=True))
    print(f"{model}: strict {sum(right_strict)}/{n} = {sum(right_strict) / n:.3f}, "
          f"flexible {sum(right_flexible)}/{n} = {sum(right_flexible) / n:.3f}, "
          f"word for word {exact}/{n}"
          + (f", {args.runs} runs {'alike' if all(r == replies for r in runs) else 'DIFFER'}"
             if args.runs > 1 else ""))
    wrong = [(i["answer"], r) for i, r, ok in zip(data["test"], replies, right_strict,
                                                   strict=True) if not ok]
    for want, got in wrong[:args.show]:
        print(f"  want {want!r}, got {got!r}")


if __name__ == "__main__":
    main()
