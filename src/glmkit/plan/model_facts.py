"""What the served model is, decided once when the plan is made: whether it takes images,
whether it is one of the tiny models glmkit makes here, and whether its answers to the
tool-call cases are known word for word. `up`, `check` and `bench` read these from the
plan (and a running server from its labels), never from the model's name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from glmkit.knowledge.catalog import TINY_MODEL_ID, TINY_VISION_ID, ModelSpec
from glmkit.policy import Source

TinyModel = Literal["text", "vision"]
TINY_MODELS: tuple[TinyModel, ...] = get_args(TinyModel)
# The tiny models by their built-in recipe's id; only the text one is trained until it
# answers data/tool_cases.json exactly (the vision one learns the image cases).
_TINY: dict[str, TinyModel] = {TINY_MODEL_ID: "text", TINY_VISION_ID: "vision"}
_EXACT: frozenset[TinyModel] = frozenset({"text"})
# Flags that only mean something to a vision model's server.
VISION_FLAGS = ("--mm-encoder-tp-mode", "--mm-processor-cache-type",
                "--allowed-local-media-path")


@dataclass(frozen=True)
class ModelFacts:
    vision: bool = False  # takes images and video (its recipe says so, or its flags do)
    tiny: TinyModel | None = None  # made here by `invoke tiny-model`, from this recipe
    exact_answers: bool = False  # trained on the tool cases: every answer must match


def decide_facts(model: ModelSpec, serve_args: Sequence[str]) -> ModelFacts:
    """The facts of `model` served with `serve_args`. A tiny model is glmkit's built-in
    recipe with its local folder: a synced recipe or a Hub repo of the same name is some
    other model, whose answers nobody trained."""
    tiny = _TINY.get(model.id) if (
        model.in_catalog and model.local_dir is not None and model.recipe is not None
        and model.recipe_input is Source.BUILTIN_RECIPE) else None
    vision = model.vision or any(word.split("=", 1)[0] in VISION_FLAGS
                                 for word in serve_args)
    return ModelFacts(vision=vision, tiny=tiny, exact_answers=tiny in _EXACT)
