"""Benchmark workloads from the recipes, by name.

The GLM-4.X recipe benches three shapes with the random dataset and `--ignore-eos`
(prompt-heavy 8000/1000, decode-heavy 1000/8000, balanced 1000/1000) over batch sizes
1…512 set with `--num-prompts`; the V recipe benches VisionArena through the chat
endpoint, at a request rate and at a fixed concurrency.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Literal

from glmkit.errors import UsageError

Dataset = Literal["random", "visionarena", "random-mm"]
SweepMode = Literal["prompts", "concurrency"]

RECIPE_BATCHES = (1, 16, 32, 64, 128, 256, 512)
# A run's points and a point's batch: past these it is a typo, and a report of the run
# stays within its bounds (results.MAX_POINTS_READ).
MAX_POINTS = 1000
MAX_BATCH = 1 << 20
VISIONARENA = "lmarena-ai/VisionArena-Chat"


@dataclass(frozen=True, kw_only=True)
class Workload:
    name: str
    description: str
    input_len: int = 1000
    output_len: int = 1000
    dataset: Dataset = "random"
    ignore_eos: bool = True
    vision: bool = False
    # Where `vllm bench serve` reads a data set inside the container, and which revision
    # (the Hub snapshot's commit, or a local folder's content hash): recorded in meta.json.
    dataset_path: str | None = None
    dataset_revision: str | None = None


WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    Workload(name="prompt-heavy", description="8000 in / 1000 out (the recipes' default)",
             input_len=8000, output_len=1000),
    Workload(name="decode-heavy", description="1000 in / 8000 out", input_len=1000,
             output_len=8000),
    Workload(name="balanced", description="1000 in / 1000 out", input_len=1000,
             output_len=1000),
    Workload(name="vision", description="VisionArena chat through /v1/chat/completions "
             "(random multimodal when the data set cannot be fetched)",
             dataset="visionarena", ignore_eos=False, vision=True),
    Workload(name="visionarena", description="VisionArena-Chat through /v1/chat/completions, "
             "read offline: the HF cache after `invoke download --dataset "
             f"{VISIONARENA}`, or --dataset-path DIR", output_len=128,
             dataset="visionarena", ignore_eos=False, vision=True),
    Workload(name="random-mm", description="vLLM's synthetic images (random-mm) with 512 text "
             "tokens in / 128 out, through /v1/chat/completions", input_len=512,
             output_len=128, dataset="random-mm", vision=True),
]}


def resolve_workload(name: str, input_len: int | None = None,
                     output_len: int | None = None) -> Workload:
    """A named workload; `custom` (or any lengths given) overrides its lengths."""
    if name == "custom":
        if input_len is None or output_len is None:
            raise UsageError("--workload custom needs --input-len and --output-len.")
        return Workload(name="custom", description=f"{input_len} in / {output_len} out",
                        input_len=input_len, output_len=output_len)
    workload = WORKLOADS.get(name)
    if workload is None:
        raise UsageError(f"Unknown workload {name[:40]!r}. Choose one of: "
                         f"{', '.join([*WORKLOADS, 'custom'])}.")
    if input_len is None and output_len is None:
        return workload
    return replace(workload, description=workload.description + " (lengths set)",
                   input_len=input_len or workload.input_len,
                   output_len=output_len or workload.output_len)


# What `vllm bench serve --goodput` and `--request-rate` are given, from whichever source
# (the command line, a run's meta.json, a tune state): these shapes only, so no word of
# data is ever read as an option of the command.
_NUMBER = r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?"
GOODPUT = re.compile(rf"(ttft|tpot|e2el):{_NUMBER}")
REQUEST_RATE = re.compile(rf"{_NUMBER}|inf")


def check_goodput(item: str) -> str:
    """One `--goodput` bound, `ttft|tpot|e2el:MS` with MS above 0, or a ValueError."""
    if not (isinstance(item, str) and len(item) <= 40 and GOODPUT.fullmatch(item)
            and 0 < float(item.partition(":")[2]) < math.inf):
        raise ValueError(f"goodput bound {str(item)[:40]!r} is not ttft, tpot or e2el:MS "
                         "(milliseconds above 0)")
    return item


def check_request_rate(text: str) -> str:
    """A `--request-rate`: requests per second above 0, or inf; else a ValueError."""
    if not (isinstance(text, str) and len(text) <= 40 and REQUEST_RATE.fullmatch(text)
            and float(text) > 0 and (text == "inf" or math.isfinite(float(text)))):
        raise ValueError(f"request rate {str(text)[:40]!r} is not requests per second above "
                         "0, or inf")
    return text


@dataclass(frozen=True, kw_only=True)
class Point:
    """One `vllm bench serve` call: a batch size in a sweep. Its rate and bounds have
    their shapes whatever made it (a ValueError otherwise)."""

    batch: int
    num_prompts: int
    max_concurrency: int | None
    request_rate: str
    goodput: tuple[str, ...] = ()  # SLOs as `vllm bench serve --goodput` takes them

    def __post_init__(self) -> None:
        check_request_rate(self.request_rate)
        for item in self.goodput:
            check_goodput(item)


def sweep_points(batches: tuple[int, ...] | list[int], mode: SweepMode,
                 num_prompts: int | None = None, request_rate: str = "inf",
                 goodput: tuple[str, ...] = ()) -> list[Point]:
    """Recipe style: batch = --num-prompts, all sent at once. Concurrency style (the V
    recipe's `--max-concurrency`): batch = requests in flight, over more prompts."""
    points = []
    for batch in batches:
        if mode == "prompts":
            points.append(Point(batch=batch, num_prompts=batch, max_concurrency=None,
                                request_rate=request_rate, goodput=goodput))
        else:
            points.append(Point(batch=batch, num_prompts=num_prompts or max(16, 4 * batch),
                                max_concurrency=batch, request_rate=request_rate,
                                goodput=goodput))
    return points


SLO_KEYS = {"ttft": "ttft", "tpot": "tpot", "e2el": "e2el"}


def parse_slo(text: str | None) -> tuple[str, ...]:
    """'ttft-p99=2000,tpot-p99=50' → ('ttft:2000', 'tpot:50') for `--goodput`: a request
    counts towards goodput when it meets every bound (milliseconds)."""
    if not text:
        return ()
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        name = SLO_KEYS.get(key.strip().lower().removesuffix("-p99"))
        try:
            bound = float(value)
        except ValueError:
            bound = -1
        if not sep or name is None or not 0 < bound < math.inf:
            raise UsageError(f"--slo {part[:40]!r}: give ttft, tpot or e2el bounds in ms, e.g. "
                             "ttft-p99=2000,tpot-p99=50.")
        out.append(f"{name}:{bound:g}")
    return tuple(out)


def parse_batches(text: str) -> tuple[int, ...]:
    """'1,16,64' → (1, 16, 64); 'recipe' → the recipes' 1…512. At most MAX_POINTS sizes,
    each a count of ASCII digits up to MAX_BATCH."""
    if text.strip() == "recipe":
        return RECIPE_BATCHES
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isascii() and part.isdigit() and len(part) <= 8 for part in parts):
        raise UsageError(f"--batch {text[:40]!r}: give sizes separated by commas, e.g. "
                         "1,16,64, or 'recipe' for 1,16,32,64,128,256,512.")
    batches = tuple(int(part) for part in parts)
    if not batches or min(batches) < 1 or max(batches) > MAX_BATCH:
        raise UsageError(f"--batch {text[:40]!r}: sizes must be from 1 to {MAX_BATCH:,}.")
    if len(batches) > MAX_POINTS:
        raise UsageError(f"--batch: {len(batches)} sizes; a run has at most {MAX_POINTS:,}.")
    if len(set(batches)) != len(batches):
        raise UsageError(f"--batch {text[:40]!r} repeats a size.")
    return batches
