"""The tiny models made locally, trained to call tools: the embedded default (a GLM-4 MoE)
and its vision sibling (GLM-4.5V's architecture, `glmkit/glm-tiny-vision`).

It is generated inside the CPU vLLM image (torch, transformers and tokenizers are
already there), so the host needs nothing but Docker: random weights first
(make_tiny_glm.py), then about a minute and a half of training on the tool-call
conformance cases (train_tiny_tools.py, data/tool_cases.json) so that `tool_choice:
auto` parses real GLM markup, and, for the text model, on tiny-arith's 5-shot prompts
(data/tiny_gsm8k.json) so that `invoke eval` has answers to score; the same two scripts
make the vision model, with --vision. The folder records a hash of what made it, and is
made again when the scripts, the kind, the cases or tiny-arith change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from glmkit.errors import CommandFailed, EnvironmentProblem
from glmkit.plan.model_facts import TinyModel
from glmkit.process import run

GENERATOR = "make_tiny_glm.py"
TRAINER = "train_tiny_tools.py"
CASES = Path(__file__).parents[1] / "data" / "tool_cases.json"
# tiny-arith, the GSM8K-format set `invoke eval` asks the tiny model (#34); beside CASES,
# in the folder mounted as /glmkit-data.
ARITH = CASES.parent / "tiny_gsm8k.json"
INFO = "glmkit-tiny.json"


@dataclass(frozen=True)
class TinyKind:
    generator_args: tuple[str, ...] = ()  # the trainer reads the kind from the model
    arith: bool = False  # also learns tiny-arith (ARITH) by heart


TEXT = TinyKind(arith=True)
VISION = TinyKind(("--vision",))


def kind_of(tiny: TinyModel) -> TinyKind:
    """How glmkit makes the tiny model the plan names (`ModelFacts.tiny`)."""
    return {"text": TEXT, "vision": VISION}[tiny]


def recipe_hash(scripts_dir: Path, layers: int, kind: TinyKind = TEXT) -> str:
    """What makes the model: the scripts, the kind, the cases (and tiny-arith), the
    layers."""
    digest = hashlib.sha256(json.dumps([layers, *kind.generator_args, kind.arith]).encode())
    for name in (GENERATOR, TRAINER):
        digest.update((scripts_dir / name).read_bytes())
    digest.update(CASES.read_bytes())
    if kind.arith:
        digest.update(ARITH.read_bytes())
    return digest.hexdigest()[:16]


def is_current(out_dir: Path, recipe: str) -> bool:
    try:
        return bool(json.loads((out_dir / INFO).read_text()).get("recipe") == recipe)
    except (OSError, ValueError):
        return False


def generate(image: str, out_dir: Path, scripts_dir: Path, layers: int = 2,
             force: bool = False, kind: TinyKind = TEXT) -> bool:
    """Write the model to `out_dir` unless an up-to-date one is there; True when made."""
    recipe = recipe_hash(scripts_dir, layers, kind)
    if is_current(out_dir, recipe) and not force:
        return False
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Two `up`s at once (two terminals, two test workers) must not share the staging
    # folder: the second waits for the first, then finds the model made.
    with FileLock(out_dir.with_name(out_dir.name + ".lock")):
        if is_current(out_dir, recipe) and not force:
            return False
        _make(image, out_dir, scripts_dir, layers, kind, recipe)
    return True


def _make(image: str, out_dir: Path, scripts_dir: Path, layers: int, kind: TinyKind,
          recipe: str) -> None:
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    arith = f" --arith /glmkit-data/{ARITH.name}" if kind.arith else ""
    argv = ["docker", "run", "--rm", "--network", "none",
            "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
            "-v", f"{scripts_dir.resolve()}:/glmkit-scripts:ro",
            "-v", f"{CASES.parent.resolve()}:/glmkit-data:ro",
            "-v", f"{staging.resolve()}:/out",
            "--entrypoint", "sh", image, "-c",
            f"layers=$1; shift; python3 /glmkit-scripts/{GENERATOR} /out --layers \"$layers\" "
            f"\"$@\"{arith} && python3 /glmkit-scripts/{TRAINER} /out "
            f"/glmkit-data/{CASES.name}{arith}",
            "sh", str(layers), *kind.generator_args]
    try:
        run(argv)
    except CommandFailed as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise EnvironmentProblem(f"Generating the tiny model failed: "
                                 f"{(err.stderr or err.stdout).strip()[-800:]}") from None
    info = json.loads((staging / INFO).read_text())
    info["recipe"] = recipe
    (staging / INFO).write_text(json.dumps(info, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
