"""Write tiny-arith, the small GSM8K-format set the tiny model learns (#34).

    python3 scripts/make_arith_set.py            # writes src/glmkit/data/tiny_gsm8k.json
    python3 scripts/make_arith_set.py --check    # fails when the committed file differs

Word problems that add two numbers from 2 to 9, each answer a short worked solution ending
in GSM8K's `#### N`, in openai/gsm8k's own fields (`question`, `answer`) and split names,
made from a seeded generator: the same file every time.

Every question has a name and a thing of its own. The tiny model (2 layers, 128 wide)
learns the test questions' 5-shot answers by heart (scripts/train_tiny_tools.py), the way
it learns the tool cases: it cannot learn to add, and learning to copy the numbers out of
the question was a matter of luck in the few hundred steps it has (one sentence with 8
names and 6 things: 0 to 50 of 50 right depending on the tokenizer, from the same seed).
Questions that differ in their words, as the tool cases' conversations do, took in every
run with the model's own seed (all 50 right, every answer token ahead of the runner-up by
4 logits or more). The tokenizer learns the set's words (make_tiny_glm.py --arith), so a
5-shot prompt is about 190 tokens. The score says the weights are intact, not that the
model can count.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "glmkit" / "data" / "tiny_gsm8k.json"
SEED = 34
TRAIN, TEST = 8, 50
NAMES = ["Ann", "Bob", "Sam", "Eva", "Tom", "Mia", "Leo", "Zoe", "Max", "Ida", "Ben", "Amy",
         "Dan", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jay", "Kim", "Lea", "Ned", "Oli", "Pam",
         "Ray", "Sue", "Ted", "Una", "Val", "Wes", "Abe", "Bea", "Cal", "Dee", "Ed", "Flo",
         "Gil", "Hana", "Ira", "Jo", "Ken", "Liz", "Mo", "Nia", "Otto", "Pia", "Quin", "Rob",
         "Sal", "Tia", "Uma", "Vic", "Wynn", "Xia", "Yul", "Zed", "Ada", "Bo"]
THINGS = ["apples", "pens", "cards", "books", "cups", "eggs", "hats", "coins", "rocks",
          "shells", "stamps", "kites", "balls", "bells", "boats", "bowls", "boxes", "bricks",
          "buttons", "cakes", "candles", "chairs", "clips", "combs", "cookies", "dolls",
          "drums", "forks", "gloves", "grapes", "jars", "keys", "lamps", "leaves", "lemons",
          "maps", "marbles", "masks", "mugs", "nails", "nuts", "pears", "pies", "pins",
          "plates", "plums", "ropes", "rings", "seeds", "shoes", "socks", "spoons", "stars",
          "sticks", "toys", "bags", "beads", "cans"]


def make(seed: int = SEED) -> dict[str, object]:
    r = random.Random(seed)
    names, things = NAMES[:], THINGS[:]
    r.shuffle(names)
    r.shuffle(things)
    items = []
    for name, thing in zip(names[:TRAIN + TEST], things[:TRAIN + TEST], strict=True):
        a, b = r.randint(2, 9), r.randint(2, 9)
        items.append({"question": f"{name} has {a} {thing} and gets {b} more. "
                                  f"How many {thing} now?",
                      "answer": f"{a} + {b} = {a + b}\n#### {a + b}"})
    return {"name": "tiny-arith",
            "source": f"scripts/make_arith_set.py, seed {seed}: word problems adding two "
                      f"numbers from 2 to 9, in openai/gsm8k's format",
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
