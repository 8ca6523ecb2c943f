"""Model facts, one entry per served checkpoint, read from the recipe book.

Each checkpoint (a recipe's variant: zai-org/GLM-4.6-FP8, nvidia/GLM-5.2-NVFP4, …) is a
`ModelSpec` that points back at its recipe. What is true of a model wherever it runs
(parsers, context limit, MTP, vision, size) is read from the recipe; how it is served on
given hardware is decided by `resolver` and `plan`.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from glmkit import DEFAULT_MODEL
from glmkit.errors import UsageError
from glmkit.knowledge.recipe_schema import parse_count
from glmkit.knowledge.recipes import Recipe, RecipeBook, load_book
from glmkit.policy import Source, is_hub_id

DEFAULT_MAX_MODEL_LEN = 65536  # the recipes' advice for most workloads
TINY_MODEL_ID = DEFAULT_MODEL
TINY_VISION_ID = "glmkit/glm-tiny-vision"  # GLM-4.5V's architecture, made like the text one
MAX_MODEL_ARG = 4096  # a local path longer than PATH_MAX is not a folder either


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    id: str
    family: str
    precision: str  # bf16, fp8, nvfp4, mxfp4
    total_params_b: float
    active_params_b: float
    max_context: int
    tool_parser: str | None = None
    reasoning_parser: str | None = None
    has_mtp: bool = False
    vision: bool = False
    local_dir: str | None = None  # a model made on this machine, not a Hub repo
    in_catalog: bool = True
    notes: str = ""
    recipe: Recipe | None = None
    variant: str | None = None
    vram_minimum_gb: float = 0.0
    min_vllm: str = "0"

    @property
    def short_name(self) -> str:
        return self.id.rsplit("/", 1)[-1]

    @property
    def recipe_input(self) -> Source:
        """Where its recipe came from, as the input policy ranks sources."""
        synced = self.recipe is not None and self.recipe.source.kind == "synced"
        return Source.SYNCED_RECIPE if synced else Source.BUILTIN_RECIPE

    @property
    def source(self) -> str:
        return self.recipe.source.describe() if self.recipe else "-"


def spec_from_recipe(recipe: Recipe, variant_key: str) -> ModelSpec:
    variant = recipe.variants[variant_key]
    model = recipe.model
    return ModelSpec(
        id=recipe.variant_model_id(variant_key),
        family=recipe.key.rsplit("/", 1)[-1],
        precision=str(variant.precision or "bf16"),
        total_params_b=parse_count(variant.parameter_count or model.parameter_count),
        active_params_b=parse_count(variant.active_parameters or model.active_parameters),
        max_context=int(variant.context_length or recipe.context_length
                        or DEFAULT_MAX_MODEL_LEN),
        tool_parser=recipe.parser("tool_calling", "--tool-call-parser"),
        reasoning_parser=recipe.parser("reasoning", "--reasoning-parser"),
        has_mtp="spec_decoding" in recipe.features,
        vision=recipe.vision,
        local_dir=str(model.local_dir) if model.local_dir else None,
        recipe=recipe, variant=variant_key,
        vram_minimum_gb=float(variant.vram_minimum_gb or 0),
        # A checkpoint may need a newer vLLM than its family (a new quantization).
        min_vllm=str(variant.min_vllm_version or recipe.min_vllm),
        notes={TINY_MODEL_ID: "random weights, GLM-4 MoE architecture; made by "
               "`invoke tiny-model`",
               TINY_VISION_ID: "random weights, GLM-4.5V architecture (MoE + vision tower); "
               "made by `invoke tiny-model --vision`"}.get(recipe.key, ""),
    )


def catalog_of(book: RecipeBook) -> dict[str, ModelSpec]:
    return {model_id: spec_from_recipe(recipe, key)
            for model_id, recipe, key in book.checkpoints()}


@functools.lru_cache(maxsize=1)
def builtin_catalog() -> dict[str, ModelSpec]:
    return catalog_of(load_book({}, synced=False))


# The built-in models, for code that needs no synced recipes (reports, tests).
CATALOG: dict[str, ModelSpec] = builtin_catalog()


def catalog(env: Mapping[str, str] | None) -> dict[str, ModelSpec]:
    """Built-in and synced models (`invoke recipes sync`), for this environment."""
    return CATALOG if env is None else catalog_of(load_book(env))


def resolve_model(name: str, env: Mapping[str, str] | None = None) -> ModelSpec:
    """Find a model by checkpoint id, short name, local path or Hugging Face repo id.

    A near miss of a catalog id is an error with a suggestion, not a silent download
    of some other repository.
    """
    name = name.strip()
    if not name:
        raise UsageError("No model given. Pass --model, e.g. --model zai-org/GLM-4.6 "
                         "(see `invoke models`).")
    shown = repr(name if len(name) <= 120 else name[:120] + "…")
    if len(name) > MAX_MODEL_ARG or any(ord(ch) < 32 for ch in name):
        raise UsageError(f"Model {shown} is not a model id or folder (too long, or a "
                         "control character). `invoke models` lists the catalog.")
    models = catalog(env)
    by_lower = {m.id.lower(): m for m in models.values()} | {
        m.short_name.lower(): m for m in models.values()}
    if found := by_lower.get(name.lower()):
        return found
    if spec := _local_model(name, shown):
        return spec
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.8)
    if close:
        suggestion = by_lower[close[0]].id
        raise UsageError(f"Unknown model {shown}. Did you mean {suggestion!r}? "
                         "(`invoke models` lists the catalog)")
    if is_hub_id(name):
        return generic_model(name, local=False)
    if name.count("/") == 1:
        raise UsageError(f"Model {shown} is not a Hugging Face repo id: org/name, each at "
                         "most 96 letters, digits, '.', '_' or '-', not starting or ending "
                         "with '.' or '-', without '..' or '--'.")
    raise UsageError(f"Unknown model {shown}: not a catalog id, a Hugging Face repo id "
                     "(org/name) or a model folder. `invoke models` lists the catalog.")


def _local_model(name: str, shown: str) -> ModelSpec | None:
    """A model folder named by a path; None when `name` names no path here."""
    try:
        path = Path(name).expanduser()
        if not (name.startswith((".", "/", "~")) or path.exists()):
            return None
        is_model = (path / "config.json").is_file()
    except (OSError, RuntimeError) as err:  # name too long; ~user without a home
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise UsageError(f"Model path {shown} cannot be read ({reason}).") from None
    if not is_model:
        raise UsageError(f"Model path {shown} is not a model folder (no config.json). "
                         "Pass a folder with config.json and weights, or a catalog id.")
    return generic_model(str(path.resolve()), local=True)


def generic_model(model_id: str, *, local: bool) -> ModelSpec:
    """A model outside the catalog: no GLM parsers assumed, the user adds flags after `--`."""
    return ModelSpec(
        id=model_id, family="other", precision="bf16", total_params_b=0, active_params_b=0,
        max_context=DEFAULT_MAX_MODEL_LEN, local_dir=model_id if local else None,
        in_catalog=False, notes="not in the glmkit catalog: generic vLLM flags",
    )
