"""Model facts: every GLM model in the vLLM recipes, and the flags each one needs.

The catalog says what is true of a model wherever it runs (parsers, context limit, MTP
layers, vision). Where it runs and how many GPUs it gets is decided later, in `plan`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from glmkit.errors import UsageError

Precision = Literal["bf16", "fp8"]

K = 1024
DEFAULT_MAX_MODEL_LEN = 65536  # the recipes: "usually good for most scenarios"

# The recipes' vision flags. The media path is narrowed to a mounted folder in `plan`:
# the seed's `--allowed-local-media-path /` would expose the whole container.
VISION_ARGS = (
    "--enable-expert-parallel",
    "--mm-encoder-tp-mode", "data",
    "--mm-processor-cache-type", "shm",
)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    id: str
    family: str
    precision: Precision
    total_params_b: float
    active_params_b: float
    max_context: int
    default_tp: int
    tool_parser: str | None = "glm45"
    reasoning_parser: str | None = "glm45"
    has_mtp: bool = False
    vision: bool = False
    # A local model generated on this machine (the tiny CPU model), not a Hub repo.
    local_dir: str | None = None
    # Per-vendor image override, e.g. a build that carries a newer transformers.
    images: dict[str, str] = field(default_factory=dict)
    in_catalog: bool = True
    notes: str = ""

    @property
    def short_name(self) -> str:
        return self.id.rsplit("/", 1)[-1]

    def catalog_args(self) -> list[str]:
        """Flags the model needs whatever the hardware: parsers and vision options."""
        args: list[str] = []
        if self.tool_parser:
            args += ["--tool-call-parser", self.tool_parser, "--enable-auto-tool-choice"]
        if self.reasoning_parser:
            args += ["--reasoning-parser", self.reasoning_parser]
        if self.vision:
            args += list(VISION_ARGS)
        return args


def _pair(base: str, *, family: str, total: float, active: float, context: int,
          tp_bf16: int, tp_fp8: int, tool_parser: str = "glm45", mtp: bool = True,
          vision: bool = False, images: dict[str, str] | None = None) -> list[ModelSpec]:
    """A model and its -FP8 sibling share everything but precision and default TP."""
    common = dict(family=family, total_params_b=total, active_params_b=active,
                  max_context=context, tool_parser=tool_parser, has_mtp=mtp,
                  vision=vision, images=images or {})
    return [
        ModelSpec(id=f"zai-org/{base}", precision="bf16", default_tp=tp_bf16, **common),  # type: ignore[arg-type]
        ModelSpec(id=f"zai-org/{base}-FP8", precision="fp8", default_tp=tp_fp8, **common),  # type: ignore[arg-type]
    ]


TINY_MODEL_ID = "glmkit/glm-tiny"

# Sizes are the published parameter counts; default TP is the GPU count of an 80 GB
# card class the weights fit on with room for KV cache (the recipes use 8 for the
# 355B models, 4 for the V models). `invoke up --tp N` overrides it.
_MODELS: list[ModelSpec] = [
    *_pair("GLM-4.5", family="GLM-4.5", total=355, active=32, context=128 * K,
           tp_bf16=8, tp_fp8=8),
    *_pair("GLM-4.5-Air", family="GLM-4.5", total=106, active=12, context=128 * K,
           tp_bf16=4, tp_fp8=2),
    *_pair("GLM-4.6", family="GLM-4.6", total=355, active=32, context=128 * K,
           tp_bf16=8, tp_fp8=8),
    # GLM-4.7's recipe asks for a newer transformers than the pinned images ship;
    # the kit's own image (docker/cuda, docker/rocm) adds it.
    *_pair("GLM-4.7", family="GLM-4.7", total=358, active=32, context=128 * K,
           tp_bf16=8, tp_fp8=4, tool_parser="glm47",
           images={"cuda": "glmkit/vllm-cuda:v0.15.1-glm47",
                   "rocm": "glmkit/vllm-rocm:v0.15.1-glm47"}),
    *_pair("GLM-4.7-Flash", family="GLM-4.7", total=31, active=3, context=128 * K,
           tp_bf16=1, tp_fp8=1, tool_parser="glm47",
           images={"cuda": "glmkit/vllm-cuda:v0.15.1-glm47",
                   "rocm": "glmkit/vllm-rocm:v0.15.1-glm47"}),
    *_pair("GLM-4.5V", family="GLM-4.5V", total=108, active=12, context=64 * K,
           tp_bf16=4, tp_fp8=4, mtp=False, vision=True),
    *_pair("GLM-4.6V", family="GLM-4.6V", total=106, active=12, context=128 * K,
           tp_bf16=4, tp_fp8=4, mtp=False, vision=True),
    ModelSpec(
        id=TINY_MODEL_ID, family="tiny", precision="bf16", total_params_b=0.0003,
        active_params_b=0.0002, max_context=2048, default_tp=1,
        local_dir="models/glm-tiny",
        notes="random weights, GLM-4 MoE architecture; made by `invoke tiny-model`",
    ),
]

CATALOG: dict[str, ModelSpec] = {m.id: m for m in _MODELS}

_BY_LOWER = {m.id.lower(): m for m in _MODELS} | {m.short_name.lower(): m for m in _MODELS}


def resolve_model(name: str) -> ModelSpec:
    """Find a model by catalog id, short name, local path or Hugging Face repo id.

    A near miss of a catalog id is an error with a suggestion, not a silent download
    of some other repository.
    """
    name = name.strip()
    if not name:
        raise UsageError("No model given. Pass --model, e.g. --model zai-org/GLM-4.6 "
                         "(see `invoke models`).")
    if found := _BY_LOWER.get(name.lower()):
        return found
    path = Path(name).expanduser()
    if name.startswith((".", "/", "~")) or path.exists():
        if not (path / "config.json").is_file():
            raise UsageError(f"Model path {name!r} is not a model folder (no config.json). "
                             "Pass a folder with config.json and weights, or a catalog id.")
        return generic_model(str(path.resolve()), local=True)
    close = difflib.get_close_matches(name.lower(), list(_BY_LOWER), n=1, cutoff=0.8)
    if close:
        suggestion = _BY_LOWER[close[0]].id
        raise UsageError(f"Unknown model {name!r}. Did you mean {suggestion!r}? "
                         "(`invoke models` lists the catalog)")
    if name.count("/") == 1 and all(name.split("/")):
        return generic_model(name, local=False)
    raise UsageError(f"Unknown model {name!r}: not a catalog id, a Hugging Face repo id "
                     "(org/name) or a model folder. `invoke models` lists the catalog.")


def generic_model(model_id: str, *, local: bool) -> ModelSpec:
    """A model outside the catalog: no GLM parsers assumed, the user adds flags after `--`."""
    return ModelSpec(
        id=model_id, family="other", precision="bf16", total_params_b=0, active_params_b=0,
        max_context=DEFAULT_MAX_MODEL_LEN, default_tp=1, tool_parser=None,
        reasoning_parser=None, local_dir=model_id if local else None, in_catalog=False,
        notes="not in the glmkit catalog: generic vLLM flags",
    )
