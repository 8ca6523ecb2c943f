"""The recipe book: model recipes, strategies and hardware in vllm-project/recipes' schema.

glmkit ships its own data in that schema (`glmkit/recipedata`, facts only). `invoke recipes
sync` copies the newest upstream recipes into the user's cache; recipes found there
override the built-in ones by key, and a model that only the synced copy has (a new GLM
release) is served like any other. A synced file that does not parse is skipped with a
note: the built-in data keeps serving.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from glmkit.errors import EnvironmentProblem, UsageError
from glmkit.paths import kit_home

BUILTIN_ROOT = Path(__file__).with_name("recipedata")
UPSTREAM_GIT = "https://github.com/vllm-project/recipes.git"
UPSTREAM_TARBALL = "https://codeload.github.com/vllm-project/recipes/tar.gz/refs/heads/main"
# Recipes glmkit serves: the chat models of these providers (see `is_chat_recipe`).
PROVIDERS = ("zai-org",)
SINGLE_NODE_STRATEGIES = ("single_node_tp", "single_node_tep", "single_node_dep")
MULTI_NODE_STRATEGIES = ("multi_node_tp", "multi_node_tp_pp", "multi_node_tep",
                         "multi_node_dep")
# Keys that hold prose for the recipe site; `recipes diff` compares facts only.
PROSE_KEYS = frozenset({"description", "guide", "performance_headline", "display_name",
                        "label", "note", "tooltip", "title"})


@dataclass(frozen=True)
class RecipeSource:
    kind: Literal["built-in", "synced"]
    root: Path
    commit: str | None = None
    origin: str = ""

    def describe(self) -> str:
        if self.kind == "built-in":
            return "built-in"
        return f"synced @ {self.commit[:12]}" if self.commit else f"synced from {self.origin}"


def parse_count(text: Any) -> float:
    """'358B' → 358.0 (billions); '300K' → 0.0003; a bare number is billions."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMBT]?)\s*", str(text or "0"), re.IGNORECASE)
    if not match:
        return 0.0
    scale = {"": 1.0, "K": 1e-6, "M": 1e-3, "B": 1.0, "T": 1e3}[match.group(2).upper()]
    return float(match.group(1)) * scale


@dataclass(frozen=True)
class Recipe:
    """One model family's recipe; `data` is the YAML as loaded, read through properties."""

    key: str  # provider/name, e.g. zai-org/GLM-4.6
    data: Mapping[str, Any]
    source: RecipeSource

    @property
    def model(self) -> Mapping[str, Any]:
        return self.data.get("model") or {}

    @property
    def model_id(self) -> str:
        return str(self.model.get("model_id") or self.key)

    @property
    def min_vllm(self) -> str:
        return str(self.model.get("min_vllm_version") or "0")

    @property
    def context_length(self) -> int:
        return int(self.model.get("context_length") or 0)

    @property
    def variants(self) -> Mapping[str, Mapping[str, Any]]:
        return self.data.get("variants") or {"default": {}}

    @property
    def features(self) -> Mapping[str, Mapping[str, Any]]:
        return self.data.get("features") or {}

    @property
    def opt_in_features(self) -> tuple[str, ...]:
        return tuple(self.data.get("opt_in_features") or ())

    @property
    def compatible_strategies(self) -> tuple[str, ...]:
        return tuple(self.data.get("compatible_strategies") or ("single_node_tp",))

    @property
    def is_moe(self) -> bool:
        return self.model.get("architecture") == "moe"

    @property
    def vision(self) -> bool:
        return "multimodal" in (self.data.get("meta") or {}).get("tasks", ())

    def variant_model_id(self, key: str) -> str:
        return str(self.variants[key].get("model_id") or self.model_id)

    def feature_args(self, name: str) -> list[str]:
        """A plain feature's flags (the first mode's for a feature with modes)."""
        feature = self.features.get(name) or {}
        if isinstance(feature.get("modes"), Mapping) and feature["modes"]:
            modes = feature["modes"]
            feature = modes.get(feature.get("default_mode")) or next(iter(modes.values()))
        return [str(a) for a in feature.get("args") or ()]

    def parser(self, feature: str, flag: str) -> str | None:
        from glmkit.resolver import flag_value  # resolver builds on this module

        return flag_value(self.feature_args(feature), flag)


def is_chat_recipe(data: Mapping[str, Any]) -> bool:
    """A chat model glmkit serves: its recipe declares a tool-call parser."""
    features = data.get("features") or {}
    return isinstance(features, Mapping) and "tool_calling" in features


@dataclass(frozen=True)
class RecipeBook:
    recipes: dict[str, Recipe]
    strategies: dict[str, Mapping[str, Any]]
    hardware: dict[str, Mapping[str, Any]]
    sources: tuple[RecipeSource, ...]
    notes: tuple[str, ...] = field(default=())

    def recipe(self, key: str) -> Recipe:
        return self.recipes[key]

    def checkpoints(self) -> Iterator[tuple[str, Recipe, str]]:
        """(served model id, recipe, variant key) for every variant of every recipe."""
        for recipe in self.recipes.values():
            for key in recipe.variants:
                yield recipe.variant_model_id(key), recipe, key


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _read_root(root: Path, source: RecipeSource, notes: list[str],
               providers: tuple[str, ...]) -> tuple[dict[str, Recipe],
                                                     dict[str, Mapping[str, Any]],
                                                     dict[str, Mapping[str, Any]]]:
    recipes: dict[str, Recipe] = {}
    for provider in providers:
        for path in sorted((root / "models" / provider).glob("*.yaml")):
            try:
                data = _load_yaml(path)
                if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
                    raise ValueError("no `model:` mapping")
                if not is_chat_recipe(data):
                    continue
                for key, variant in (data.get("variants") or {}).items():
                    if not isinstance(variant, dict):
                        raise ValueError(f"variant {key!r} is not a mapping")
            except (OSError, yaml.YAMLError, ValueError) as err:
                notes.append(f"skipped {path} ({source.describe()}): {err}")
                continue
            recipes[f"{provider}/{path.stem}"] = Recipe(f"{provider}/{path.stem}", data, source)
    strategies: dict[str, Mapping[str, Any]] = {}
    for path in sorted((root / "strategies").glob("*.yaml")):
        try:
            data = _load_yaml(path)
        except (OSError, yaml.YAMLError) as err:
            notes.append(f"skipped {path}: {err}")
            continue
        if isinstance(data, dict):
            strategies[str(data.get("name") or path.stem)] = data
    hardware: dict[str, Mapping[str, Any]] = {}
    taxonomy = root / "taxonomy.yaml"
    if taxonomy.is_file():
        try:
            hardware = dict((_load_yaml(taxonomy) or {}).get("hardware_profiles") or {})
        except (OSError, yaml.YAMLError, AttributeError) as err:
            notes.append(f"skipped {taxonomy}: {err}")
    return recipes, strategies, hardware


def synced_root(env: Mapping[str, str]) -> Path:
    return kit_home(env) / "recipes"


def _synced_source(root: Path) -> RecipeSource:
    try:
        info = json.loads((root / "SYNCED.json").read_text())
    except (OSError, json.JSONDecodeError):
        info = {}
    return RecipeSource("synced", root, info.get("commit"), str(info.get("origin", root)))


def load_book(env: Mapping[str, str], *, synced: bool = True) -> RecipeBook:
    """Built-in data, then the synced copy's recipes, strategies and hardware on top."""
    stamp = synced_root(env) / "SYNCED.json"
    try:
        version = stamp.stat().st_mtime_ns if synced else 0
    except OSError:
        version = 0
    return _load_book(str(synced_root(env)), version)


@functools.lru_cache(maxsize=8)
def _load_book(synced_dir: str, version: int) -> RecipeBook:
    """One parse per synced copy (`version` changes with each sync)."""
    notes: list[str] = []
    builtin = RecipeSource("built-in", BUILTIN_ROOT)
    recipes, strategies, hardware = _read_root(BUILTIN_ROOT, builtin, notes,
                                               (*PROVIDERS, "glmkit"))
    sources = [builtin]
    root = Path(synced_dir)
    if version and (root / "SYNCED.json").is_file():
        source = _synced_source(root)
        more, more_strategies, more_hardware = _read_root(root, source, notes, PROVIDERS)
        for key, recipe in more.items():
            recipes[key] = _keep_builtin_variants(recipes.get(key), recipe)
        strategies.update(more_strategies)
        hardware.update(more_hardware)
        sources.append(source)
    return RecipeBook(recipes, strategies, hardware, tuple(sources), tuple(notes))


def _keep_builtin_variants(builtin: Recipe | None, synced: Recipe) -> Recipe:
    """Checkpoints glmkit adds to a family (GLM-4.5-Air, GLM-4.7-Flash) survive a sync
    whose recipe does not list them."""
    if builtin is None:
        return synced
    served = {synced.variant_model_id(k) for k in synced.variants}
    extra = {k: v for k, v in builtin.variants.items()
             if k not in synced.variants and builtin.variant_model_id(k) not in served}
    if not extra:
        return synced
    data = {**synced.data, "variants": {**synced.variants, **extra}}
    return Recipe(synced.key, data, synced.source)


# --- sync ---------------------------------------------------------------------------------

def _git_commit(folder: Path) -> str | None:
    if shutil.which("git") is None:
        return None
    done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def _snapshot_commit(folder: Path) -> str | None:
    """A snapshot without .git names its commit in its README ("at commit <sha>")."""
    readme = folder / "README.md"
    if readme.is_file():
        match = re.search(r"\bcommit ([0-9a-f]{40})\b", readme.read_text(errors="replace"))
        if match:
            return match.group(1)
    return None


def _find_root(folder: Path) -> Path:
    """The folder holding models/ (a tarball unpacks into one top folder)."""
    if (folder / "models").is_dir():
        return folder
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (child / "models").is_dir():
            return child
    raise UsageError(f"{folder} is not a vllm-project/recipes checkout: no models/ folder.")


def _fetch(origin: str, into: Path) -> tuple[Path, str | None]:
    """A git URL is cloned (depth 1); an http(s) URL ending in .tar.gz/.tgz is unpacked."""
    if re.search(r"\.(tar\.gz|tgz)$|/tar\.gz/", origin):
        import requests

        try:
            response = requests.get(origin, timeout=60)
            response.raise_for_status()
        except requests.RequestException as err:
            raise EnvironmentProblem(f"Could not download recipes from {origin}: {err}. "
                                     "The built-in recipes still serve; sync again when "
                                     "online, or pass --from a local checkout.") from None
        archive = into / "recipes.tar.gz"
        archive.write_bytes(response.content)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(into / "unpacked", filter="data")
        except (tarfile.TarError, OSError) as err:
            raise UsageError(f"{origin} is not a readable .tar.gz: {err}") from None
        return _find_root(into / "unpacked"), None
    if shutil.which("git") is None:
        raise EnvironmentProblem("git is not installed: pass --from a tarball URL or a "
                                 "local checkout.")
    done = subprocess.run(["git", "clone", "--quiet", "--depth", "1", origin,
                           str(into / "clone")], capture_output=True, text=True, check=False,
                          timeout=300)
    if done.returncode != 0:
        raise EnvironmentProblem(f"Could not clone {origin}: {done.stderr.strip()[-300:]}. "
                                 "The built-in recipes still serve; sync again when online, "
                                 "or pass --from a local checkout.")
    return into / "clone", _git_commit(into / "clone")


@dataclass(frozen=True)
class SyncResult:
    root: Path
    commit: str | None
    origin: str
    recipes: tuple[str, ...]
    notes: tuple[str, ...]

    def describe(self) -> str:
        at = f" @ {self.commit[:12]}" if self.commit else ""
        return f"synced {len(self.recipes)} GLM recipes from {self.origin}{at} into {self.root}"


def sync(origin: str | None, env: Mapping[str, str]) -> SyncResult:
    """Copy the recipes at `origin` (folder, git URL or tarball URL; default upstream) into
    the user's cache, replacing an earlier sync only once the new copy has parsed."""
    origin = origin or UPSTREAM_GIT
    target = synced_root(env)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".recipes-") as tmp:
        work = Path(tmp)
        local = Path(origin).expanduser()
        if local.is_dir():
            root = _find_root(local)
            commit = _git_commit(root) or _snapshot_commit(root)
        elif "://" in origin or origin.startswith("git@"):
            root, commit = _fetch(origin, work)
            commit = commit or _snapshot_commit(root)
        else:
            raise UsageError(f"--from {origin!r} is neither a folder nor a URL.")
        staged = work / "staged"
        for part in ("strategies",):
            if (root / part).is_dir():
                shutil.copytree(root / part, staged / part)
        for provider in PROVIDERS:
            if (root / "models" / provider).is_dir():
                shutil.copytree(root / "models" / provider, staged / "models" / provider)
        if (root / "taxonomy.yaml").is_file():
            shutil.copy2(root / "taxonomy.yaml", staged / "taxonomy.yaml")
        notes: list[str] = []
        source = RecipeSource("synced", staged, commit, origin)
        recipes, _, _ = _read_root(staged, source, notes, PROVIDERS)
        if not recipes:
            raise UsageError(f"No GLM chat recipe could be read from {origin} "
                             f"({'; '.join(notes) or 'models/zai-org is empty'}); the "
                             "built-in recipes still serve.")
        (staged / "SYNCED.json").write_text(json.dumps({
            "origin": origin, "commit": commit,
            "synced_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}, indent=2))
        old = work / "old"
        if target.exists():
            target.replace(old)
        staged.replace(target)
    return SyncResult(target, commit, origin, tuple(sorted(recipes)), tuple(notes))


# --- diff ---------------------------------------------------------------------------------

def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in PROSE_KEYS or key == "meta":
                continue
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and any(isinstance(item, Mapping) for item in value):
        out = {}
        for index, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


@dataclass(frozen=True)
class RecipeChange:
    recipe: str
    kind: Literal["added", "removed", "changed"]
    path: str = ""
    builtin: Any = None
    synced: Any = None


def diff(env: Mapping[str, str]) -> list[RecipeChange]:
    """What the synced recipes change against the built-in data (facts, not prose)."""
    if not (synced_root(env) / "SYNCED.json").is_file():
        raise UsageError("No synced recipes: run `invoke recipes sync` first.")
    notes: list[str] = []
    builtin, _, _ = _read_root(BUILTIN_ROOT, RecipeSource("built-in", BUILTIN_ROOT), notes,
                               PROVIDERS)
    root = synced_root(env)
    synced, _, _ = _read_root(root, _synced_source(root), notes, PROVIDERS)
    changes: list[RecipeChange] = []
    for key in sorted(set(builtin) | set(synced)):
        if key not in synced:
            changes.append(RecipeChange(key, "removed"))
            continue
        if key not in builtin:
            changes.append(RecipeChange(key, "added"))
            continue
        old, new = _flatten(builtin[key].data), _flatten(synced[key].data)
        for path in sorted(set(old) | set(new)):
            if old.get(path) != new.get(path):
                changes.append(RecipeChange(key, "changed", path, old.get(path), new.get(path)))
    return changes
