"""Write tiny-arith, the small GSM8K-format set the tiny model learns (#34).

    python3 scripts/make_arith_set.py            # writes src/glmkit/data/tiny_gsm8k.json
    python3 scripts/make_arith_set.py --check    # fails when the committed file differs

One-step word problems over small numbers (add, take away, multiply), each answer a short
worked solution ending in GSM8K's `#### N`, in openai/gsm8k's own fields (`question`,
`answer`) and split names. The questions are short on purpose: the tiny model's tokenizer
knows few words (scripts/make_tiny_glm.py), and a 5-shot completions prompt of long
questions would cost training time for nothing. Made from a fixed seed: the same file
every time. The tiny model is trained on the test questions' 5-shot prompts
(scripts/train_tiny_tools.py), so its score there says its weights are intact, not that it
can count.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "glmkit" / "data" / "tiny_gsm8k.json"
SEED = 34
TRAIN, TEST = 8, 60
NAMES = ["Ann", "Bob", "Sam", "Eva", "Tom", "Mia", "Leo", "Zoe"]
THINGS = ["apples", "pens", "cards", "books", "cups", "eggs"]

Problem = tuple[str, str]


def add(r: random.Random) -> Problem:
    name, thing, a, b = r.choice(NAMES), r.choice(THINGS), r.randint(2, 9), r.randint(2, 9)
    return (f"{name} has {a} {thing} and gets {b} more. How many {thing} now?",
            f"{a} + {b} = {a + b}\n#### {a + b}")


def take(r: random.Random) -> Problem:
    name, thing = r.choice(NAMES), r.choice(THINGS)
    a = r.randint(5, 19)
    b = r.randint(1, a - 1)
    return (f"{name} has {a} {thing} and gives {b} away. How many {thing} are left?",
            f"{a} - {b} = {a - b}\n#### {a - b}")


def times(r: random.Random) -> Problem:
    name, thing, a, b = r.choice(NAMES), r.choice(THINGS), r.randint(2, 6), r.randint(2, 6)
    return (f"{name} buys {a} boxes of {b} {thing}. How many {thing} in all?",
            f"{a} * {b} = {a * b}\n#### {a * b}")


KINDS: list[Callable[[random.Random], Problem]] = [add, take, times]


def make(seed: int = SEED) -> dict[str, object]:
    r = random.Random(seed)
    seen: set[str] = set()
    items: list[dict[str, str]] = []
    while len(items) < TRAIN + TEST:
        question, answer = KINDS[len(items) % len(KINDS)](r)
        if question not in seen:  # every question once, train and test apart
            seen.add(question)
            items.append({"question": question, "answer": answer})
    return {"name": "tiny-arith",
            "source": f"scripts/make_arith_set.py, seed {seed}: one-step word problems "
                      f"(add, take away, multiply small numbers) in openai/gsm8k's format",
            "train": items[:TRAIN], "test": items[TRAIN:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    text = json.dumps(make(), indent=1, ensure_ascii=False) + "\n"
    if args.check:
        if args.out.read_text() != text:
            sys.exit(f"{args.out} is not what {Path(__file__).name} makes: run it again")
        return
    args.out.write_text(text)


if __name__ == "__main__":
    main()
