"""Write a small local dataset in lmarena-ai/VisionArena-Chat's own format (parquet).

Runs inside the CPU vLLM image (datasets, pyarrow and Pillow are there), offline:

    invoke bench-data --out DIR        # or, by hand:
    docker run --rm --network none -v "$PWD/scripts:/s:ro" -v DIR:/out \
        --entrypoint python3 glmkit/vllm-cpu:0.32.0 /s/make_visionarena_sample.py /out

The columns and types are VisionArena-Chat's (images as a list of images, conversation as
turns of {role, content} messages, ...), written by `datasets` so the parquet carries the
Hugging Face features and `vllm bench serve --dataset-name hf --hf-name
lmarena-ai/VisionArena-Chat --dataset-path DIR` reads it the way it reads the real one
(`conversation[0][0].content` and `images[0]`). Rows are made from a fixed seed: the
same files every time. The layout is the Hub repo's (data/train-*.parquet).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
from pathlib import Path

from datasets import Dataset, Features, Image, List, Value
from PIL import Image as PILImage
from PIL import ImageDraw

QUESTIONS = [
    "What is shown in this image?", "Describe the picture in one sentence.",
    "How many shapes are there, and what colours are they?", "Read any text in the image.",
    "Which object is the largest?", "Write a short caption for this photo.",
    "Is there anything unusual here?", "What would you title this diagram?",
]
CATEGORIES = ["captioning", "code", "creative_writing", "diagram", "entity_recognition",
              "homework", "humor", "is_code", "ocr", "refusal"]

FEATURES = Features({
    "images": List(Image()),
    "conversation_id": Value("string"),
    "model": Value("string"),
    "num_turns": Value("int64"),
    "conversation": List(List({"role": Value("string"), "content": Value("string")})),
    "language": Value("string"),
    "user_id": Value("int64"),
    "tstamp": Value("float64"),
    "is_preset": Value("bool"),
    "preset_dataset": Value("string"),
    "categories": {name: Value("bool") for name in CATEGORIES},
})


def picture(rng: random.Random) -> bytes:
    """A JPEG of a few coloured shapes, between 96 and 448 pixels a side."""
    size = (rng.randrange(96, 449, 16), rng.randrange(96, 449, 16))
    image = PILImage.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randrange(1, 6)):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x, y, min(size[0], x + rng.randrange(8, 96)), min(size[1], y + rng.randrange(8, 96)))
        draw.rectangle(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def rows(count: int, seed: int) -> dict[str, list[object]]:
    rng = random.Random(seed)
    table: dict[str, list[object]] = {name: [] for name in FEATURES}
    for i in range(count):
        question = rng.choice(QUESTIONS)
        table["images"].append([{"bytes": picture(rng), "path": None}])
        table["conversation_id"].append(hashlib.sha256(f"{seed}-{i}".encode()).hexdigest()[:32])
        table["model"].append("glmkit-sample")
        table["num_turns"].append(1)
        table["conversation"].append([[{"role": "user", "content": question},
                                       {"role": "assistant", "content": "A sample answer."}]])
        table["language"].append("English")
        table["user_id"].append(rng.randrange(10**9))
        table["tstamp"].append(1735689600.0 + i)
        table["is_preset"].append(False)
        table["preset_dataset"].append("")
        table["categories"].append({name: name == "captioning" for name in CATEGORIES})
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = args.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    path = data / "train-00000-of-00001.parquet"
    Dataset.from_dict(rows(args.rows, args.seed), features=FEATURES).to_parquet(str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    info = {"dataset": "lmarena-ai/VisionArena-Chat", "kind": "glmkit sample",
            "rows": args.rows, "seed": args.seed, "revision": f"sample-{digest[:12]}",
            "sha256": digest}
    (args.out / "glmkit-dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    for item in (args.out, data, path, args.out / "glmkit-dataset.json"):
        item.chmod(0o755 if item.is_dir() else 0o644)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
