"""Recipe × variant × strategy × hardware × features → vLLM flags, environment and image.

The merge order is the recipes' own; every layer appends flags and a later flag wins:

    1 base_args · 2 variant extra_args, then its exact-GPU hardware override ·
    3 strategy vllm_args with the parallel size · 4 strategy_overrides ·
    5 hardware_overrides (a strategy's generation block replaces the recipe's and the
      variant's; an exact-GPU strategy block adds) · 6 features, modes resolved per
      variant and GPU

Environment follows the same layers. What glmkit adds on top (port, served name, context
length, media path, devices) lives in `plan`, not here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from glmkit.errors import UsageError
from glmkit.knowledge import recipe_schema as schema
from glmkit.knowledge.recipe_schema import (
    Feature,
    HardwareBlock,
    HardwareMatch,
    HardwareNote,
    HardwareOverrides,
    Mode,
    StrategyDoc,
    StrategyOverride,
    Variant,
    lookup,
    one_line,
)
from glmkit.knowledge.recipes import (
    MULTI_NODE_STRATEGIES,
    SINGLE_NODE_STRATEGIES,
    Recipe,
    RecipeBook,
)
from glmkit.vllm_args import dedupe_flags, drop_flags


@dataclass(frozen=True)
class HardwareTarget:
    """The machine a command is resolved for: a taxonomy profile or one made from a GPU."""

    id: str | None  # taxonomy id (h200, mi355x); None for a GPU the taxonomy lacks, or CPU
    brand: str  # NVIDIA, AMD or CPU
    generation: str  # hopper, blackwell, ampere, amd, cpu
    gpu_count: int
    gpu_memory_gb: float
    # False where gpu_memory_gb is the hardware list's label, not detected or given: sizing
    # then takes what a card of the type reports (sizing.target_card). True: it is GiB
    # (nvidia-smi's MiB / 1024, or --gpu-mem).
    memory_given: bool = True

    @property
    def gpu_gb(self) -> float:
        """GB (10^9 bytes) per GPU, what the recipes' vram_minimum_gb counts: a detected or
        given figure is GiB, 7 % more GB (an H100's 79.6 GiB is 85.5 GB, its label 80)."""
        return self.gpu_memory_gb * 2**30 / 1e9 if self.memory_given else self.gpu_memory_gb

    @property
    def vram_gb(self) -> float:
        return self.gpu_count * self.gpu_gb

    def describe(self) -> str:
        if self.brand == "CPU":
            return "CPU"
        unit = "GiB" if self.memory_given else "GB"
        return f"{self.gpu_count} × {(self.id or self.generation).upper()} " \
               f"({self.gpu_memory_gb:g} {unit})"


CPU_TARGET = HardwareTarget(None, "CPU", "cpu", 1, 0.0)


@dataclass(frozen=True)
class HardwareProfile:
    """One taxonomy hardware profile, typed: a node of `gpu_count` GPUs with `vram_gb`
    between them. The book keeps the profiles as schema-checked data
    (recipe_schema.HardwareProfile), so every value here is already the right type."""

    id: str
    brand: str  # NVIDIA, AMD
    generation: str
    gpu_count: int
    vram_gb: float

    @property
    def gpu_memory_gb(self) -> float:
        return self.vram_gb / self.gpu_count

    @classmethod
    def from_taxonomy(cls, tid: str, data: schema.HardwareProfile) -> HardwareProfile:
        return cls(tid, data.brand, data.generation, data.gpu_count, data.vram_gb)


def hardware_profile(book: RecipeBook, tid: str | None) -> HardwareProfile | None:
    """The book's profile of a taxonomy id, or None."""
    data = lookup(book.hardware, tid)
    return HardwareProfile.from_taxonomy(tid, data) if tid and data else None


class VendorFacts(Protocol):
    """What model knowledge asks of a vendor (`host.vendors.VendorProfile` is one; the
    knowledge layer sits below the host's, so it names the facts, not the class)."""

    @property
    def name(self) -> str: ...
    @property
    def brand(self) -> str: ...  # the taxonomy's: NVIDIA, AMD, CPU
    @property
    def has_gpus(self) -> bool: ...
    @property
    def recipe_image_key(self) -> str | None: ...
    @property
    def takes_plain_image_pin(self) -> bool: ...
    @property
    def image_repository(self) -> str | None: ...
    @property
    def cuda12_suffix(self) -> str | None: ...


# Names detected GPUs report (nvidia-smi, amd-smi/sysfs) → taxonomy ids.
_NAME_TO_ID = (("GB300", "gb300"), ("GB200", "gb200"), ("B300", "b300"), ("B200", "b200"),
               ("H200", "h200"), ("H100", "h100"), ("H800", "h100"), ("MI355", "mi355x"),
               ("MI325", "mi325x"), ("MI300", "mi300x"))


def taxonomy_id(gpu_name: str) -> str | None:
    """The taxonomy id a GPU name starts a word with ("NVIDIA H100 80GB HBM3" → h100,
    "AMD Instinct MI300X" → mi300x): a key inside a word is another GPU ("GH200" is a
    Grace Hopper, not an H200)."""
    words = re.findall(r"[A-Z0-9]+", gpu_name.upper())
    return next((tid for key, tid in _NAME_TO_ID if any(w.startswith(key) for w in words)),
                None)


def _generation_from_name(name: str, brand: str) -> str:
    if brand == "AMD":
        return "amd"
    upper = name.upper()
    if any(k in upper for k in ("B200", "B300", "GB", "RTX PRO", "5090", "B100")):
        return "blackwell"
    if any(k in upper for k in ("H100", "H200", "H800", "H20", "GH200")):
        return "hopper"
    if any(k in upper for k in ("L40", "4090", "L4", "ADA")):
        return "ada"
    return "ampere"


# Names only AMD's GPUs carry, to tell a GPU the taxonomy lacks when no vendor says.
_AMD_NAME_HINTS = ("AMD", "MI", "RADEON")


def target_for(book: RecipeBook, gpu: str, count: int | None,
               memory_gb: float | None = None, vendor: VendorFacts | None = None
               ) -> HardwareTarget:
    """A target from a GPU type (`--gpu H200` or a detected name) and a GPU count."""
    tid: str | None = gpu.lower() if gpu.lower() in book.hardware else taxonomy_id(gpu)
    profile = hardware_profile(book, tid)
    if profile:
        return HardwareTarget(profile.id, profile.brand, profile.generation,
                              count or profile.gpu_count, memory_gb or profile.gpu_memory_gb,
                              memory_given=bool(memory_gb))
    if memory_gb is None:
        known = ", ".join(sorted(book.hardware))
        raise UsageError(f"Unknown GPU {gpu[:40]!r}: name one of {known}, or give its memory "
                         "with --gpu-mem GiB.")
    if vendor is not None and vendor.has_gpus:
        brand = vendor.brand
    else:
        brand = "AMD" if any(k in gpu.upper() for k in _AMD_NAME_HINTS) else "NVIDIA"
    return HardwareTarget(None, brand, _generation_from_name(gpu, brand), count or 1, memory_gb)


def _keyed(mapping: Any, hw: HardwareTarget) -> Any:
    """A hardware-keyed value: exact GPU id > generation > brand > default."""
    if not isinstance(mapping, Mapping):
        return None
    for key in (hw.id, hw.generation, hw.brand.lower(), "default"):
        if key is not None and key in mapping:
            return mapping[key]
    return None


def _generation_block(overrides: HardwareOverrides | None, hw: HardwareTarget
                      ) -> HardwareBlock | None:
    """The recipes' generation lookup, with `nvidia:` as every NVIDIA GPU's fallback."""
    return lookup(overrides, hw.generation, "nvidia" if hw.brand == "NVIDIA" else None)


# The blocks that carry flags and environment, under the names each kind gives them.
Block = HardwareBlock | Variant | StrategyOverride | StrategyDoc | Mode | Feature | None


def _args(block: Block, key: str = "extra_args") -> list[str]:
    return [str(a) for a in getattr(block, key, None) or ()]


def _env(block: Block, key: str = "extra_env") -> dict[str, str]:
    return {str(k): str(v) for k, v in (getattr(block, key, None) or {}).items()}


# What a precision needs where the variant does not say (precision_hardware).
_PRECISION_HARDWARE = {"nvfp4": {"brand": "NVIDIA", "generation": "blackwell"},
                       "fp4": {"brand": "NVIDIA", "generation": "blackwell"}}


def precision_supported(variant: Variant, hw: HardwareTarget, key: str) -> str | None:
    """None when the checkpoint runs on `hw`, else why not."""
    allowed = variant.supported_hardware
    if allowed and hw.id not in allowed:
        return f"runs only on {', '.join(allowed)}"
    constraint = variant.precision_hardware or \
        lookup(_PRECISION_HARDWARE, str(variant.precision)) or {}
    brand, generation = lookup(constraint, "brand"), lookup(constraint, "generation")
    if constraint and ((hw.brand if brand is None else brand) != hw.brand
                       or (hw.generation if generation is None else generation)
                       != hw.generation):
        return f"{variant.precision} needs {brand or ''} " \
               f"{generation or ''} GPUs".replace("  ", " ")
    return None


def single_node_tp(recipe: Recipe, variant: Variant, hw: HardwareTarget) -> int:
    """TP for single_node_tp: the variant's or recipe's declared TP, else 1 when the weights
    fit one GPU and the whole node when they do not (the recipes skip half-node sizes)."""
    recipe_override = lookup(recipe.data.strategy_overrides, "single_node_tp")
    for declared in (variant.tp, recipe_override.tp if recipe_override else None):
        value = declared if isinstance(declared, int) else _keyed(declared, hw)
        if isinstance(value, int) and value > 0:
            return value if hw.brand == "CPU" else min(value, hw.gpu_count)
    need = float(variant.vram_minimum_gb or 0)
    if need and hw.gpu_gb and need <= hw.gpu_gb:
        return 1
    return hw.gpu_count


def mode_for(feature: Feature, name: str, variant: Variant, variant_key: str,
             hw: HardwareTarget, chosen: str | None) -> str | None:
    """The active mode of a feature with `modes`: the user's pick, the variant's default,
    the feature's default, else the first mode allowed on this variant and GPU."""
    modes = feature.modes
    if modes is None:
        return None
    why_not = {key: reason for key, mode in modes.items()
               if (reason := mode_refusal(mode, variant_key, hw))}
    allowed = [key for key in modes if key not in why_not]
    # A mode the user named is served or refused with the reason, never swapped for another.
    if chosen and chosen not in allowed:
        why = why_not[chosen] if chosen in why_not else \
            f"the recipe has no such mode (it has {', '.join(modes)})"
        raise UsageError(f"Mode {chosen!r} of {name}: {why}; choose from "
                         f"{', '.join(allowed) or 'none'} on {hw.describe()}.")
    for candidate in (chosen, lookup(variant.default_modes, name), feature.default_mode):
        if candidate in allowed:
            return str(candidate)
    return allowed[0] if allowed else None


def mode_refusal(mode: Mode, variant_key: str, hw: HardwareTarget) -> str | None:
    """None when a feature mode runs for this checkpoint on `hw`, else why not: its
    `variants` list leaves the checkpoint out, or its `hardware` says unsupported there."""
    only = mode.variants
    if only and variant_key not in only:
        return f"only for the {', '.join(str(v) for v in only)} checkpoint(s)"
    gate = mode.hardware or {}
    if _keyed(gate, hw) == "unsupported":
        return f"the recipe marks it unsupported on {_hw_name(hw, gate)}"
    return None


def spec_modes(recipe: Recipe, variant_key: str, hw: HardwareTarget) -> str | None:
    """The speculative decoding modes for `invoke plan`: each, the default, why not here."""
    feature = lookup(recipe.features, "spec_decoding")
    modes = feature.modes if feature is not None else None
    if feature is None or not modes:
        return None
    default = mode_for(feature, "spec_decoding", recipe.variants[variant_key], variant_key,
                       hw, None)
    return ", ".join(
        f"{key}" + (" (default)" if key == default else "") +
        (f" ({why})" if (why := mode_refusal(mode, variant_key, hw)) else "")
        for key, mode in modes.items())


def _hw_name(hw: HardwareTarget, mapping: Mapping[str, Any]) -> str:
    """The key of a hardware-keyed mapping that matched `hw` (for messages)."""
    return next((k for k in (hw.id, hw.generation, hw.brand.lower(), "default")
                 if k is not None and k in mapping), hw.id or hw.generation)


def strategy_gate(recipe: Recipe, strategy: str, hw: HardwareTarget | None) -> str | None:
    """The recipe's strategy_hardware status of `strategy` on `hw` (None: not said)."""
    gates = lookup(recipe.data.strategy_hardware, strategy)
    value = _keyed(gates, hw) if hw is not None else None
    return str(value) if value is not None else None


def offered_strategies(recipe: Recipe, hw: HardwareTarget | None = None) -> tuple[str, ...]:
    """compatible_strategies, less those strategy_hardware marks unsupported on `hw`, plus
    those it opts in there (`supported`)."""
    names = list(recipe.compatible_strategies)
    names += [n for n in recipe.data.strategy_hardware or {} if n not in names]
    return tuple(n for n in names if (gate := strategy_gate(recipe, n, hw)) != "unsupported"
                 and (n in recipe.compatible_strategies or gate == "supported"))


# Strategies glmkit starts itself; others in the book are offered when their parts exist.
KIT_STRATEGIES = SINGLE_NODE_STRATEGIES + MULTI_NODE_STRATEGIES


def strategy_refusal(book: RecipeBook, recipe: Recipe, strategy: str,
                     hw: HardwareTarget | None) -> str | None:
    """None when `recipe` can be served with `strategy` on `hw`, else why not (one line)."""
    if strategy_gate(recipe, strategy, hw) == "unsupported" and hw is not None:
        gates = lookup(recipe.data.strategy_hardware, strategy) or {}
        return (f"the {recipe.key} recipe marks {strategy} unsupported on "
                f"{_hw_name(hw, gates)} ({hw.describe()}); it offers "
                f"{', '.join(offered_strategies(recipe, hw)) or 'nothing'} there")
    if strategy not in offered_strategies(recipe, hw):
        return (f"{recipe.key}'s recipe does not offer {strategy}; it offers "
                f"{', '.join(offered_strategies(recipe, hw))}")
    if strategy in KIT_STRATEGIES or strategy == "pd_cluster":  # glmkit.plan.pd runs it
        return None
    doc = lookup(book.strategies, strategy)
    if doc is None:
        return f"no strategies/{strategy}.yaml in the recipe book (`invoke recipes sync`)"
    if doc.companion:
        label = lookup(doc.companion, "label") or "a companion program"
        return (f"{strategy} needs {one_line(str(label), 60)} running beside vLLM, which "
                "glmkit does not start")
    if doc.deploy_type not in (None, "single_node"):
        return f"{strategy} is a {str(doc.deploy_type)[:40]} layout glmkit does not run"
    match = doc.hardware_match or HardwareMatch()
    if match.multi_node:
        return f"{strategy} spans several nodes; glmkit runs newer strategies on one node"
    if match.architecture == "moe" and not recipe.is_moe:
        return f"{strategy} is for MoE models"
    if hw is not None and hw.brand != "CPU":
        if hw.gpu_count < int(match.min_gpus or 1):
            return f"{strategy} needs at least {match.min_gpus} GPUs; {hw.describe()}"
        if match.max_gpus and hw.gpu_count > match.max_gpus:
            return f"{strategy} takes at most {match.max_gpus} GPUs; {hw.describe()}"
    return None


def node_strategy(strategy: str) -> str:
    """The single-node layout each node of a multi-node strategy resolves; others as is."""
    if strategy not in MULTI_NODE_STRATEGIES:
        return strategy
    return strategy.replace("multi_node", "single_node").replace("_tp_pp", "_tp")


def check_strategy(book: RecipeBook, recipe: Recipe | None, strategy: str,
                   hw: HardwareTarget | None, nodes: int | None) -> str:
    """--strategy as `invoke plan` and `up` both check it: the strategy to resolve (for a
    multi-node one, what each node runs), or a UsageError with the reason."""
    known = KIT_STRATEGIES + tuple(n for n in book.strategies if n not in KIT_STRATEGIES)
    if strategy not in known:
        raise UsageError(f"Unknown --strategy {one_line(strategy, 64)!r}; the recipes' names "
                         f"are {', '.join(known)}.")
    if strategy in MULTI_NODE_STRATEGIES and not nodes:
        raise UsageError(f"--strategy {strategy} spans machines: add --nodes (or choose "
                         f"one of {', '.join(SINGLE_NODE_STRATEGIES)}).")
    if recipe is None:  # a generic model: no recipe layouts to check
        return node_strategy(strategy)
    offered = offered_strategies(recipe, hw)
    # A multi-node name the recipe does not list is checked as the layout each node runs.
    checked = node_strategy(strategy) if strategy not in offered and \
        node_strategy(strategy) in offered else strategy
    if why := strategy_refusal(book, recipe, checked, hw):
        raise UsageError(f"--strategy {strategy}: {why}.")
    return node_strategy(strategy)


def hardware_note(recipe: Recipe, hw: HardwareTarget) -> str | None:
    """The recipe's hardware_notes entry for `hw` (exact GPU > generation > brand), as one
    line of plain text."""
    note = _keyed(recipe.data.hardware_notes, hw)
    if not isinstance(note, HardwareNote):
        return None
    body = f": {note.body}" if note.body else ""
    # Synced text on a terminal: one line, control characters (ESC) shown as '?'.
    return one_line(f"{note.title}{body}", 2400)


def kv_offload_support(recipe: Recipe) -> str | None:
    """The recipe's kv_offload_support (`offloading_cpu: verified, …`), or None."""
    support = recipe.data.kv_offload_support or {}
    return ", ".join(f"{k}: {v}" for k, v in support.items()) or None


@dataclass(frozen=True)
class Resolved:
    model_id: str
    args: tuple[str, ...]  # flags after the model id, deduplicated
    env: dict[str, str]
    strategy: str
    parallel_flag: str
    parallel_size: int
    features: tuple[str, ...]


def default_features(recipe: Recipe) -> list[str]:
    """Features on unless asked: everything not listed as opt-in."""
    return [name for name in recipe.features if name not in recipe.opt_in_features]


def resolve(book: RecipeBook, recipe: Recipe, variant_key: str, strategy_name: str,
            hw: HardwareTarget, features: Iterable[str],
            modes: Mapping[str, str] | None = None) -> Resolved:
    """The single-node command of the recipe for one choice of every axis."""
    variant = recipe.variants[variant_key]
    strategy = lookup(book.strategies, strategy_name) or StrategyDoc()
    overrides = lookup(recipe.data.strategy_overrides, strategy_name) or StrategyOverride()
    exact_variant = lookup(variant.hardware_overrides, hw.id)

    args: list[str] = [str(a) for a in recipe.model.base_args or ()]
    args += _args(variant) + _args(exact_variant)
    args += [str(a) for a in strategy.vllm_args or ()]
    flag = str(strategy.parallel_flag or "--tensor-parallel-size")
    size = single_node_tp(recipe, variant, hw) if strategy_name == "single_node_tp" \
        else hw.gpu_count
    args += [flag, str(size)]
    args += _args(overrides) + _args(overrides, "vllm_args")
    strategy_generation = _generation_block(overrides.hardware_overrides, hw)
    if strategy_generation is not None:
        generation_layers: list[HardwareBlock | None] = [strategy_generation]
    else:
        generation_layers = [_generation_block(recipe.data.hardware_overrides, hw),
                             _generation_block(variant.hardware_overrides, hw)]
    exact_strategy = lookup(overrides.hardware_overrides, hw.id)
    for block in (*generation_layers, exact_strategy):
        args += _args(block)

    enabled = [name for name in recipe.features if name in set(features)]
    for name in enabled:
        feature = recipe.features[name]
        allow = feature.strategies
        if allow and strategy_name not in allow:
            continue
        if feature.modes is not None:
            key = mode_for(feature, name, variant, variant_key, hw, lookup(modes, name))
            if key is None:
                continue
            mode = feature.modes[key]
            mode_override = _keyed(mode.hardware_overrides, hw)
            args += _args(mode_override, "args") if mode_override is not None \
                else _args(mode, "args")
            continue
        block = _generation_block(feature.hardware_overrides, hw)
        args += _args(block, "args") if block is not None and block.has("args") \
            else _args(feature, "args")

    env: dict[str, str] = {str(k): str(v) for k, v in (recipe.model.base_env or {}).items()}
    env |= _env(variant) | _env(exact_variant) | _env(strategy, "env")
    env |= _env(overrides, "env") | _env(overrides)
    for block in (*generation_layers, exact_strategy):
        env |= _env(block)
    for removed in strategy.remove_args or ():  # a strategy takes these out
        args = drop_flags(args, str(removed))
    return Resolved(model_id=recipe.variant_model_id(variant_key), args=tuple(dedupe_flags(args)),
                    env=env, strategy=strategy_name, parallel_flag=flag, parallel_size=size,
                    features=tuple(enabled))


def spec_dropped(book: RecipeBook, recipe: Recipe, strategy: str) -> str | None:
    """Why `strategy` serves the recipe without speculative decoding, or None."""
    feature = lookup(recipe.features, "spec_decoding")
    allow = feature.strategies if feature is not None else None
    if allow and strategy not in allow:
        return f"the {recipe.key} recipe offers speculative decoding only with " \
               f"{', '.join(str(n) for n in allow)}"
    doc = lookup(book.strategies, strategy)
    removed = (doc.remove_args if doc is not None else None) or ()
    if any(str(flag).startswith("--speculative-config") for flag in removed):
        return f"strategy {strategy} removes --speculative-config"
    return None


def recommend_strategy(recipe: Recipe, goal: str = "latency",
                       hw: HardwareTarget | None = None) -> tuple[str, str]:
    """(strategy, why) for one node: TP for latency, DEP (else TEP) for throughput; only
    single-node strategies the recipe offers on `hw`, else a UsageError saying why."""
    offered = offered_strategies(recipe, hw)
    compatible = [n for n in offered if n in SINGLE_NODE_STRATEGIES]
    if not compatible:
        # Never a multi-node layout on one node: say what strategy_hardware left out.
        gated = [n for n in recipe.compatible_strategies if n in SINGLE_NODE_STRATEGIES
                 and strategy_gate(recipe, n, hw) == "unsupported"]
        where = f" on {hw.describe()}" if hw is not None else ""
        why = f"its strategy_hardware marks {', '.join(gated)} unsupported{where}" if gated \
            else "it names none"
        raise UsageError(f"The {recipe.key} recipe offers no single-node strategy{where}: "
                         f"{why}; it offers {', '.join(offered) or 'nothing'}. Choose "
                         "another GPU, or a multi-node --strategy with --nodes.")
    if goal == "throughput" and recipe.is_moe:
        for name, why in (("single_node_dep", "data parallel attention with the experts shared "
                           "over every GPU (DEP) serves the most concurrent requests"),
                          ("single_node_tep", "the recipe offers no DEP; tensor + expert "
                           "parallel keeps every GPU busy on the experts")):
            if name in compatible:
                return name, why
    explicit = recipe.data.default_strategy
    if explicit in compatible and str(explicit).startswith("single_node_"):
        return str(explicit), "the recipe's own default"
    if "single_node_tp" in compatible:
        return "single_node_tp", "tensor parallel gives the lowest time per token at low " \
                                 "concurrency; MTP lowers it further"
    return compatible[0], "the recipe's first single-node strategy"
