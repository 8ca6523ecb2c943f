"""The boundary for recipe files: bytes from disk → typed, size-limited documents.

A synced recipe is data from the internet. Before any other module sees one it is read
as a plain file (no symbolic links, at most `MAX_FILE_BYTES`), parsed by a YAML loader
that refuses alias bombs and deep nesting, walked once with a node budget, and checked
against the schema below: every key glmkit reads has the type glmkit reads it as, while
keys glmkit does not know are kept as they are (upstream adds new ones).

Whatever fails raises `RecipeRefused` with a one-line reason; the caller skips that file
with a note and the built-in data keeps serving. What passes travels on as the typed
document (RecipeDoc, StrategyDoc, HardwareProfile) to the resolver and the plan: readers
ask its fields, and `lookup` reads the keyed mappings (variants, GPUs, modes).
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)

from glmkit.files import Unreadable, read_bounded
from glmkit.policy import VLLM_VERSION, is_hub_id
from glmkit.text import one_line as one_line  # re-exported: recipe code reads it here
from glmkit.text import validation_reason

# A real recipe is 2-16 KiB; the upstream taxonomy is 16 KiB.
MAX_FILE_BYTES = 256 * 1024
# Real recipes use no aliases; a few are allowed, the node budget bounds what they expand to.
MAX_ALIASES = 8
MAX_DEPTH = 20  # real files nest 7 deep
MAX_NODES = 20_000  # values after aliases are expanded; the largest real file has 625
MAX_REASON = 240  # characters of a reason shown in a note
MAX_UNKNOWN_SHOWN = 20  # unknown key paths listed per file; the rest are counted


class RecipeRefused(ValueError):
    """A recipe file glmkit will not use; the message is one line saying why."""


# --- reading ------------------------------------------------------------------------------

def read_plain_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of `path` if it is a regular file (not a symbolic link, FIFO or device)
    of at most `max_bytes` (glmkit.files.read_bounded)."""
    try:
        return read_bounded(path, max_bytes)
    except Unreadable as err:
        raise RecipeRefused(str(err)) from None


class LimitedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses more than `MAX_ALIASES` aliases and nesting deeper than
    `MAX_DEPTH`, while composing: before an alias bomb expands or deep input recurses."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise RecipeRefused(f"more than {MAX_ALIASES} YAML aliases (*name); recipe "
                                    "files need none")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise RecipeRefused(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _check_expanded(value: Any) -> None:
    """Walk `value` as later code will (aliases expanded, cycles followed) within budget."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise RecipeRefused(f"more than {MAX_NODES} values once YAML aliases are expanded")
        if depth > MAX_DEPTH:
            raise RecipeRefused(f"nested deeper than {MAX_DEPTH} levels (or a YAML alias "
                                "that contains itself)")
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
            nodes += len(item)  # the keys
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((v, depth + 1) for v in item)


def parse_yaml(text: str) -> Any:
    """One YAML document through `LimitedLoader`, its expanded size checked. The same text
    is parsed once per process (a synced copy is mostly the built-in files again); callers
    get their own copy."""
    return copy.deepcopy(_parse_yaml(text))


@functools.lru_cache(maxsize=256)
def _parse_yaml(text: str) -> Any:
    try:  # the reader checks the characters as it is made: a NUL is refused here
        loader = LimitedLoader(text)
    except yaml.YAMLError as err:
        raise RecipeRefused(f"not valid YAML: {one_line(str(err), 120)}") from None
    try:
        value = loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        where = f" at line {err.problem_mark.line + 1}" if err.problem_mark else ""
        raise RecipeRefused(f"not valid YAML{where}: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise RecipeRefused(f"not valid YAML: {err}") from None
    except (ValueError, OverflowError, RecursionError) as err:
        if isinstance(err, RecipeRefused):
            raise
        # A scalar the safe constructors reject: a 5000-digit int, a 13th month.
        raise RecipeRefused(f"a YAML value glmkit cannot read: {err}") from None
    finally:
        loader.dispose()
    _check_expanded(value)
    return value


def read_yaml(path: Path) -> Any:
    """The YAML document in `path`, within every limit of this module."""
    try:
        text = read_plain_file(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecipeRefused(f"not UTF-8 text (byte {err.start})") from None
    return parse_yaml(text)


# --- schema -------------------------------------------------------------------------------

def _word(value: Any) -> Any:
    """An argv word or environment value: a string, or a number written as one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a number that is not finite")
        return str(value)
    return value


# A parameter count as `parse_count` reads it: digits with at most one decimal point, then
# K, M, B or T (a bare number is billions).
_COUNT = re.compile(r"\s*([0-9]{1,15}(?:\.[0-9]{0,15})?|\.[0-9]{1,15})\s*([KMBT]?)\s*",
                    re.IGNORECASE)
_SCALE = {"": 1.0, "K": 1e-6, "M": 1e-3, "B": 1.0, "T": 1e3}
MAX_PARAMS_B = 1e6  # a million billion parameters: past this a count is a typo, not a model


def parse_count(text: Any) -> float:
    """'358B' → 358.0 (billions); '300K' → 0.0003; a bare number is billions; None is 0.
    Anything else (1.2.3B, 1e400, a 311-digit number) is a ValueError: the schema refuses
    such a file, so the plan never meets one."""
    if text is None:
        return 0.0
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError("a parameter count is a string like '358B' or a number")
    if isinstance(text, (int, float)):
        # int and float compare exactly: a 311-digit int is never turned into a float here
        if not (isinstance(text, int) or math.isfinite(text)) or not 0 <= text <= MAX_PARAMS_B:
            raise ValueError(f"a parameter count is from 0 to {MAX_PARAMS_B:g} (billions)")
        return float(text)
    match = _COUNT.fullmatch(text)
    if not match or match.group(1) == ".":
        raise ValueError(f"{one_line(text, 40)!r} is not a parameter count like '358B', "
                         "'12.5B' or '300K'")
    count = float(match.group(1)) * _SCALE[match.group(2).upper()]
    if count > MAX_PARAMS_B:
        raise ValueError(f"a parameter count is at most {MAX_PARAMS_B:g} billion")
    return count


def _count(value: Any) -> Any:
    """A parameter count `parse_count` reads, kept as written."""
    parse_count(value)
    return value


def _hub_id(value: Any) -> Any:
    """A model id: org/name as the Hub accepts it. It becomes the first word of `vllm
    serve` and the served name, so `--tokenizer=x/y` must not pass."""
    if isinstance(value, str) and not is_hub_id(value):
        raise ValueError(f"{one_line(value, 80)!r} is not a Hub model id (org/name)")
    return value


def _tp(value: Any) -> Any:
    """A tensor-parallel size, or a mapping of hardware key → size."""
    def size(item: Any) -> bool:
        return isinstance(item, int) and not isinstance(item, bool) and 1 <= item <= 4096

    if size(value) or (isinstance(value, Mapping) and all(
            isinstance(k, str) and size(v) for k, v in value.items())):
        return dict(value) if isinstance(value, Mapping) else value
    raise ValueError("tp is a GPU count from 1 to 4096, or a mapping of hardware to counts")


def _image(value: Any) -> Any:
    """docker_image: an image, a mapping of brand → image, or of brand → {cuda: image}."""
    def image_map(item: Any, inner: bool) -> bool:
        # Not empty: a pin of no image is no pin, and choosing among none has no answer.
        return isinstance(item, Mapping) and bool(item) and all(
            isinstance(k, str) and (isinstance(v, str) or (inner and image_map(v, False)))
            for k, v in item.items())

    if isinstance(value, str) or image_map(value, True):
        return value
    raise ValueError("docker_image is an image name or a mapping of brand to image names")


def _dependency(value: Any) -> Any:
    if isinstance(value, str) or (isinstance(value, Mapping) and all(
            isinstance(k, str) for k in value) and isinstance(value.get("command", ""), str)):
        return value
    raise ValueError("a dependency is a command string or a mapping with a `command` string")


Text = Annotated[str, Field(strict=True)]
# A name glmkit shows and matches (a mode, a hardware key, a status): short, one word.
Name = Annotated[str, Field(strict=True, min_length=1, max_length=64,
                            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
# A vLLM release (0.28.0, v0.29.1rc1) or `nightly` (support not in a release yet).
Version = Annotated[str, Field(strict=True, max_length=40, pattern=VLLM_VERSION)]
# Site text glmkit prints (hardware notes): bounded, printed as plain text on one line.
NoteTitle = Annotated[str, Field(strict=True, min_length=1, max_length=200)]
NoteBody = Annotated[str, Field(strict=True, max_length=2000)]
Word = Annotated[str, BeforeValidator(_word), Field(strict=True)]
Words = Annotated[list[Word], Field(strict=True)]
Texts = Annotated[list[Text], Field(strict=True)]
Names = Annotated[list[Name], Field(strict=True)]
Env = dict[Text, Word]
Count = Annotated[str | float, BeforeValidator(_count)]
# GPU memory, and a model's minimum: past 100 TB it is a typo (and 1.7e308 overflows).
MAX_GB = 100_000.0
Gigabytes = Annotated[float, Field(strict=True, ge=0, le=MAX_GB, allow_inf_nan=False)]
# A model id (org/name), checked as the Hub checks it.
ModelId = Annotated[str, BeforeValidator(_hub_id), Field(strict=True)]
# The precisions glmkit sizes (glmkit.knowledge.sizing.BYTES has one entry for each; a test
# holds them equal): another would have no bytes per parameter.
PRECISIONS = ("bf16", "fp8", "nvfp4", "mxfp4")
Precision = Literal["bf16", "fp8", "nvfp4", "mxfp4"]
Tokens = Annotated[int, Field(strict=True, ge=0, le=2**40)]
TensorParallel = Annotated[int | dict[str, int], BeforeValidator(_tp)]
Image = Annotated[str | dict[str, Any], BeforeValidator(_image)]
Dependency = Annotated[str | dict[str, Any], BeforeValidator(_dependency)]


class _Open(BaseModel):
    """Known keys typed; unknown keys kept as they are (upstream adds new ones) and named by
    `unknown_keys`, so a sync says what glmkit does not read.

    Prose for the recipe site (description, label, display_name, guide) is declared as such:
    glmkit knows it and does not read it."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), frozen=True)
    description: Any = None
    label: Any = None
    display_name: Any = None

    def has(self, key: str) -> bool:
        """Whether the file wrote `key` (even as null): the recipes tell an absent block
        from an empty one in a few places."""
        return key in self.model_fields_set

    def __getitem__(self, key: str) -> Any:
        """A key the file wrote, declared or not (`recipe.model["base_args"]`); KeyError
        for one it did not."""
        if key not in self.model_fields_set:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        """The keys the file wrote: with `[]`, `{**block, "env": …}` copies a block to edit
        (and check again) as the file would have written it."""
        return sorted(self.model_fields_set)

    def __bool__(self) -> bool:
        # An empty block is falsy, as the empty mapping the file wrote.
        return bool(self.model_fields_set)

    def plain(self) -> dict[str, Any]:
        """The keys the file wrote as plain data again (`recipes diff` compares them)."""
        dumped: dict[str, Any] = self.model_dump(exclude_unset=True, by_alias=True)
        return dumped


_V = TypeVar("_V")


def lookup(mapping: Mapping[str, _V] | None, *keys: str | None) -> _V | None:
    """The value under the first of `keys` a recipe's keyed mapping (variants, hardware
    keys, modes) has, absent or null alike None; a mapping the file left out has none."""
    for key in keys:
        if mapping is not None and key is not None and key in mapping:
            value = mapping[key]
            if value is not None:
                return value
    return None


class HardwareBlock(_Open):
    """A hardware_overrides entry: flags and environment for one GPU or generation."""

    extra_args: Words | None = None
    extra_env: Env | None = None
    args: Words | None = None
    vllm_args: Words | None = None
    env: Env | None = None
    docker_image: Image | None = None


HardwareOverrides = dict[Text, HardwareBlock | None]


class ModelBlock(_Open):
    model_id: ModelId | None = None
    min_vllm_version: Version | None = None
    # The release named by min_vllm_version is not out yet: images are nightly builds.
    nightly_required: StrictBool | None = None
    context_length: Tokens | None = None
    parameter_count: Count | None = None
    active_parameters: Count | None = None
    architecture: Text | None = None
    base_args: Words | None = None
    base_env: Env | None = None
    local_dir: Text | None = None
    docker_image: Image | None = None


class Variant(_Open):
    model_id: ModelId | None = None
    precision: Precision | None = None
    vram_minimum_gb: Gigabytes | None = None
    context_length: Tokens | None = None
    parameter_count: Count | None = None
    active_parameters: Count | None = None
    extra_args: Words | None = None
    extra_env: Env | None = None
    hardware_overrides: HardwareOverrides | None = None
    tp: TensorParallel | None = None
    supported_hardware: Texts | None = None
    precision_hardware: dict[Text, Text] | None = None
    default_modes: dict[Text, Text] | None = None
    docker_image: Image | None = None
    min_vllm_version: Version | None = None  # this checkpoint's floor, over the model's


class Mode(_Open):
    args: Words | None = None
    variants: Texts | None = None
    # hardware key (exact id, generation, brand) → status; `unsupported` refuses the mode
    hardware: dict[Name, Name] | None = None
    hardware_overrides: HardwareOverrides | None = None


class Feature(_Open):
    args: Words | None = None
    modes: dict[Name, Mode] | None = None
    default_mode: Name | None = None
    hardware_overrides: HardwareOverrides | None = None
    strategies: Names | None = None

    @model_validator(mode="after")
    def _default_is_a_mode(self) -> Feature:
        if self.default_mode is not None and self.modes is not None and \
                self.default_mode not in self.modes:
            raise ValueError(f"default_mode {one_line(self.default_mode, 64)!r} names none "
                             "of the feature's modes")
        return self


class HardwareNote(_Open):
    """A hardware_notes entry: advice the recipe site shows for one GPU."""

    title: NoteTitle
    body: NoteBody = ""


class PdRole(_Open):
    """pd_cluster: one pool's (prefill or decode) own flags and environment."""

    vllm_args: Words | None = None
    env: Env | None = None


class PdRouter(_Open):
    policy: Text | None = None


class StrategyOverride(_Open):
    tp: TensorParallel | None = None
    prefill: PdRole | None = None  # pd_cluster's pools
    decode: PdRole | None = None
    extra_args: Words | None = None
    vllm_args: Words | None = None
    extra_env: Env | None = None
    env: Env | None = None
    hardware_overrides: HardwareOverrides | None = None


class Meta(_Open):
    """The site's card: only `tasks` is read (multimodal); the rest is site prose."""

    tasks: Texts | None = None
    title: Any = None
    slug: Any = None
    provider: Any = None
    date_added: Any = None
    date_updated: Any = None
    difficulty: Any = None
    performance_headline: Any = None
    related_recipes: Any = None
    hardware: Any = None  # the site's "verified on" badges


class RecipeDoc(_Open):
    """A model recipe (models/<provider>/<name>.yaml)."""

    model: ModelBlock
    variants: dict[Text, Variant] | None = None
    features: dict[Text, Feature] | None = None
    opt_in_features: Texts | None = None
    # Strategy names reach messages and match file names: one word each.
    compatible_strategies: Names | None = None
    strategy_overrides: dict[Name, StrategyOverride | None] | None = None
    hardware_overrides: HardwareOverrides | None = None
    default_strategy: Name | None = None
    meta: Meta | None = None
    dependencies: Annotated[list[Dependency], Field(strict=True)] | None = None
    guide: Any = None  # the site's prose guide
    # strategy → hardware key → status; `unsupported` refuses the strategy on that GPU
    strategy_hardware: dict[Name, dict[Name, Name] | None] | None = None
    # KV offload backend (offloading_cpu, offloading_fs) → status, shown by `invoke plan`
    kv_offload_support: dict[Name, Name] | None = None
    # hardware key → a note `invoke plan` and `up` show for that GPU
    hardware_notes: dict[Name, HardwareNote | None] | None = None


class HardwareMatch(_Open):
    """Where a strategy applies: GPU counts, one node or several, model architecture."""

    min_gpus: Annotated[int, Field(strict=True, ge=1, le=4096)] | None = None
    max_gpus: Annotated[int, Field(strict=True, ge=1, le=4096)] | None = None
    multi_node: StrictBool | None = None
    architecture: Name | None = None


class StrategyDoc(_Open):
    """A strategy (strategies/<name>.yaml)."""

    name: Name | None = None  # the key glmkit lists it under, shown in messages
    vllm_args: Words | None = None
    parallel_flag: Annotated[str, Field(strict=True, max_length=64,
                                        pattern=r"^--[a-z0-9][a-z0-9-]*$")] | None = None
    env: Env | None = None
    deploy_type: Name | None = None
    orientation: Any = None  # the site's grouping (latency, throughput): prose
    hardware_match: HardwareMatch | None = None
    remove_args: Words | None = None  # flags the strategy takes out of the command
    # A program that runs beside vLLM (a router); glmkit refuses strategies that need one.
    companion: Mapping[str, Any] | None = None
    # pd_cluster's pools and its router
    prefill: PdRole | None = None
    decode: PdRole | None = None
    router: PdRouter | None = None


class HardwareProfile(_Open):
    """One taxonomy.yaml hardware_profiles entry: a node of `gpu_count` GPUs."""

    brand: Text
    generation: Text
    gpu_count: Annotated[int, Field(strict=True, gt=0, le=4096)]
    vram_gb: Annotated[float, Field(strict=True, gt=0, le=MAX_GB, allow_inf_nan=False)]


def _unknown(value: Any, path: str, found: set[str]) -> None:
    """Add to `found` the path of every key the schema does not declare; a mapping's own
    names (variants, GPUs, modes) are written `*` so one new key is one line."""
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            found.add(f"{path}{one_line(str(key), 60)}")
        for key in value.model_fields_set - set(value.model_extra or {}):
            _unknown(getattr(value, key), f"{path}{key}.", found)
    elif isinstance(value, dict):
        for item in value.values():
            _unknown(item, f"{path}*.", found)


def unknown_keys(checked: BaseModel) -> list[str]:
    """Key paths of a checked document that glmkit does not read (`model.install`,
    `variants.*.hardware_overrides.*.install`), sorted."""
    found: set[str] = set()
    _unknown(checked, "", found)
    return sorted(found)


_Doc = TypeVar("_Doc", bound=_Open)


def _validated(model: type[_Doc], data: Any, what: str,
               unknown: list[str] | None = None) -> _Doc:
    if not isinstance(data, Mapping):
        raise RecipeRefused(f"not a {what}: the document is not a mapping")
    try:
        checked = model.model_validate(data)
    except ValidationError as err:
        raise RecipeRefused(validation_reason(err)) from None
    if unknown is not None:
        unknown.extend(unknown_keys(checked))
    # The typed document itself travels on: readers ask its fields, never a dict.
    return checked


def check_recipe(data: Any, *, synced: bool, unknown: list[str] | None = None
                 ) -> RecipeDoc:
    """A model recipe, typed; a synced one may not name a host folder. Key paths glmkit
    does not read are added to `unknown`."""
    recipe = _validated(RecipeDoc, data, "recipe", unknown)
    if synced and recipe.model.has("local_dir"):
        raise RecipeRefused("model.local_dir is not accepted from a synced recipe: host "
                            "folders to mount come only from glmkit's own recipes")
    return recipe


def check_strategy(data: Any, unknown: list[str] | None = None) -> StrategyDoc:
    return _validated(StrategyDoc, data, "strategy", unknown)


def describe_unknown(keys: list[str]) -> str:
    """`keys` as one note: the first `MAX_UNKNOWN_SHOWN`, then how many more."""
    shown = ", ".join(keys[:MAX_UNKNOWN_SHOWN])
    more = f" (and {len(keys) - MAX_UNKNOWN_SHOWN} more)" \
        if len(keys) > MAX_UNKNOWN_SHOWN else ""
    return shown + more


class TaxonomyDoc(_Open):
    """taxonomy.yaml: only hardware_profiles is read (each checked by `check_hardware`)."""

    hardware_profiles: Any = None


def taxonomy_unknown(document: Mapping[str, Any]) -> list[str]:
    """Key paths of taxonomy.yaml that glmkit does not read, top level and profiles'."""
    found = {one_line(str(key), 60) for key in document
             if str(key) not in TaxonomyDoc.model_fields}
    profiles = document.get("hardware_profiles")
    for profile in (profiles.values() if isinstance(profiles, Mapping) else ()):
        if isinstance(profile, Mapping):
            found.update(f"hardware_profiles.*.{one_line(str(key), 60)}" for key in profile
                         if str(key) not in HardwareProfile.model_fields)
    return sorted(found)


def check_hardware(profiles: Any) -> tuple[dict[str, HardwareProfile], list[str]]:
    """taxonomy.yaml's hardware_profiles: the valid ones, and why each other was dropped."""
    if profiles is None:
        return {}, []
    if not isinstance(profiles, Mapping):
        raise RecipeRefused("hardware_profiles is not a mapping")
    kept: dict[str, HardwareProfile] = {}
    dropped: list[str] = []
    for key, profile in profiles.items():
        if not isinstance(key, str):
            dropped.append(f"hardware_profiles.{one_line(str(key), 40)}: the key is not text")
            continue
        try:
            kept[key] = _validated(HardwareProfile, profile, "hardware profile")
        except RecipeRefused as err:
            dropped.append(f"hardware_profiles.{one_line(key, 40)}: {err}")
    return kept, dropped
