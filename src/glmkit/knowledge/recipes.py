"""The recipe book: model recipes, strategies and hardware in vllm-project/recipes' schema.

glmkit ships its own data in that schema (`glmkit/recipedata`, facts only). `invoke recipes
sync` copies the newest upstream recipes into the user's cache; recipes found there
override the built-in ones by key, and a model that only the synced copy has (a new GLM
release) is served like any other.

A synced recipe is data from the internet: every file goes through `recipe_schema` (plain
file, size, YAML limits, typed schema) at sync and again at load. A file that fails is
skipped with a one-line note and the built-in data keeps serving. Sync copies plain files
only (no symbolic links) and never stores or shows the credentials an origin URL carries.
"""

from __future__ import annotations

import datetime
import functools
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from glmkit.errors import EnvironmentProblem, UsageError
from glmkit.knowledge.recipe_schema import (
    Feature,
    HardwareProfile,
    ModelBlock,
    RecipeDoc,
    RecipeRefused,
    StrategyDoc,
    Variant,
    check_hardware,
    check_recipe,
    check_strategy,
    describe_unknown,
    lookup,
    one_line,
    read_plain_file,
    read_yaml,
    taxonomy_unknown,
)
from glmkit.paths import kit_home
from glmkit.vllm_args import flag_value

BUILTIN_ROOT = Path(__file__).parents[1] / "recipedata"
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
# Limits on what a sync fetches: upstream's tarball is about 1 MB, a folder holds ~20 files.
MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
MAX_UNPACKED_BYTES = 200 * 1024 * 1024
MAX_ARCHIVE_MEMBERS = 20_000
DOWNLOAD_DEADLINE_S = 300
MAX_FILES_PER_FOLDER = 500
GIT_SCHEMES = ("https", "http", "ssh", "git", "file")
SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.yaml")


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


@dataclass(frozen=True)
class Recipe:
    """One model family's recipe: the typed document the schema checked, and where it
    came from."""

    key: str  # provider/name, e.g. zai-org/GLM-4.6
    data: RecipeDoc
    source: RecipeSource

    @property
    def model(self) -> ModelBlock:
        return self.data.model

    @property
    def model_id(self) -> str:
        return self.model.model_id or self.key

    @property
    def min_vllm(self) -> str:
        return self.model.min_vllm_version or "0"

    @property
    def context_length(self) -> int:
        return self.model.context_length or 0

    @property
    def variants(self) -> Mapping[str, Variant]:
        return self.data.variants or {"default": Variant()}

    @property
    def features(self) -> Mapping[str, Feature]:
        return self.data.features or {}

    @property
    def opt_in_features(self) -> tuple[str, ...]:
        return tuple(self.data.opt_in_features or ())

    @property
    def compatible_strategies(self) -> tuple[str, ...]:
        return tuple(self.data.compatible_strategies or ("single_node_tp",))

    @property
    def is_moe(self) -> bool:
        return self.model.architecture == "moe"

    @property
    def vision(self) -> bool:
        return "multimodal" in ((self.data.meta.tasks if self.data.meta else None) or ())

    def variant_model_id(self, key: str) -> str:
        return self.variants[key].model_id or self.model_id

    def feature_args(self, name: str) -> list[str]:
        """A plain feature's flags (the first mode's for a feature with modes)."""
        feature = lookup(self.features, name)
        if feature is None:
            return []
        if feature.modes:
            modes = feature.modes
            mode = lookup(modes, feature.default_mode) or next(iter(modes.values()))
            return list(mode.args or ())
        return list(feature.args or ())

    def parser(self, feature: str, flag: str) -> str | None:
        return flag_value(self.feature_args(feature), flag)


def is_chat_recipe(data: Mapping[str, Any]) -> bool:
    """A chat model glmkit serves: its recipe declares a tool-call parser."""
    features = lookup(data, "features") or {}
    return isinstance(features, Mapping) and "tool_calling" in features


class StrategyTable(dict[str, StrategyDoc]):
    """The book's strategies by name: a strategy put in passes the schema first, so every
    reader gets a typed document, whoever put it there."""

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value if isinstance(value, StrategyDoc)
                            else check_strategy(value))


@dataclass(frozen=True)
class RecipeBook:
    recipes: dict[str, Recipe]
    strategies: StrategyTable
    hardware: dict[str, HardwareProfile]
    sources: tuple[RecipeSource, ...]
    notes: tuple[str, ...] = field(default=())

    def recipe(self, key: str) -> Recipe:
        return self.recipes[key]

    def checkpoints(self) -> Iterator[tuple[str, Recipe, str]]:
        """(served model id, recipe, variant key) for every variant of every recipe."""
        for recipe in self.recipes.values():
            for key in recipe.variants:
                yield recipe.variant_model_id(key), recipe, key


def _skipped(path: Path | str, source: RecipeSource, why: object) -> str:
    """The one-line note for a file glmkit does not use (a synced name may hold anything)."""
    return one_line(f"skipped {path} ({source.describe()}): {why}", 400)


def _yaml_files(root: Path, folder: str, source: RecipeSource,
                notes: list[str]) -> list[Path]:
    """The *.yaml files of `root/folder`, found without following a symbolic link out of
    `root` (a linked folder is skipped with a note, so are files past the folder limit)."""
    path = root
    for part in Path(folder).parts:
        path = path / part
        try:
            mode = path.lstat().st_mode
        except OSError:
            return []
        if stat.S_ISLNK(mode):
            notes.append(_skipped(path, source, "a symbolic link; recipe folders are read "
                                  "as plain folders only"))
            return []
        if not stat.S_ISDIR(mode):
            return []
    try:
        files = sorted(p for p in path.iterdir() if p.name.endswith(".yaml"))
    except OSError as err:
        notes.append(_skipped(path, source, f"cannot list it: {err.strerror}"))
        return []
    # A file's name becomes a recipe key that tables and messages show.
    odd = [p for p in files if not SAFE_FILE_NAME.fullmatch(p.name)]
    notes.extend(_skipped(p, source, "a file name outside A-Z a-z 0-9 . _ -") for p in odd)
    files = [p for p in files if p not in odd]
    if len(files) > MAX_FILES_PER_FOLDER:
        notes.append(_skipped(f"{len(files) - MAX_FILES_PER_FOLDER} files of {path}", source,
                              f"more than {MAX_FILES_PER_FOLDER} in one folder"))
    return files[:MAX_FILES_PER_FOLDER]


def _read_root(root: Path, source: RecipeSource, notes: list[str],
               providers: tuple[str, ...], unknown: dict[str, list[str]] | None = None
               ) -> tuple[dict[str, Recipe], StrategyTable, dict[str, HardwareProfile]]:
    """Every recipe, strategy and hardware profile under `root` that passes
    `recipe_schema`; each file that does not is skipped with a note. The key paths glmkit
    does not read go into `unknown`, by file."""
    synced = source.kind == "synced"
    recipes: dict[str, Recipe] = {}
    for provider in providers:
        for path in _yaml_files(root, f"models/{provider}", source, notes):
            keys: list[str] = []
            try:
                raw = read_yaml(path)
                # Recipes glmkit does not serve (TTS, OCR) are passed over without a note.
                if isinstance(raw, dict) and not is_chat_recipe(raw):
                    continue
                data = check_recipe(raw, synced=synced, unknown=keys)
            except RecipeRefused as err:
                notes.append(_skipped(path, source, err))
                continue
            if keys and unknown is not None:
                unknown[str(path.relative_to(root))] = keys
            recipes[f"{provider}/{path.stem}"] = Recipe(f"{provider}/{path.stem}", data, source)
    strategies = StrategyTable()
    for path in _yaml_files(root, "strategies", source, notes):
        keys = []
        try:
            strategy = check_strategy(read_yaml(path), keys)
        except RecipeRefused as err:
            notes.append(_skipped(path, source, err))
            continue
        if keys and unknown is not None:
            unknown[str(path.relative_to(root))] = keys
        strategies[strategy.name or path.stem] = strategy
    hardware: dict[str, HardwareProfile] = {}
    taxonomy = root / "taxonomy.yaml"
    if os.path.lexists(taxonomy):
        try:
            document = read_yaml(taxonomy)
            if not isinstance(document, dict):
                raise RecipeRefused("not a mapping")
            if unknown is not None and (keys := taxonomy_unknown(document)):
                unknown["taxonomy.yaml"] = keys
            profiles, dropped = check_hardware(lookup(document, "hardware_profiles"))
            hardware.update(profiles)
            notes.extend(_skipped(taxonomy, source, why) for why in dropped)
        except RecipeRefused as err:
            notes.append(_skipped(taxonomy, source, err))
    return recipes, strategies, hardware


def synced_root(env: Mapping[str, str]) -> Path:
    return kit_home(env) / "recipes"


def _synced_source(root: Path) -> RecipeSource:
    try:
        info = json.loads(read_plain_file(root / "SYNCED.json", 64 * 1024))
    except (RecipeRefused, ValueError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    commit = info.get("commit")
    commit = commit if isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{7,64}", commit) \
        else None
    # A SYNCED.json written before origins were cleaned may still hold a token.
    origin = public_origin(one_line(str(info.get("origin") or root), 500))
    return RecipeSource("synced", root, commit, origin)


def load_book(env: Mapping[str, str], *, synced: bool = True) -> RecipeBook:
    """Built-in data, then the synced copy's recipes, strategies and hardware on top."""
    stamp = synced_root(env) / "SYNCED.json"
    try:
        version = stamp.stat().st_mtime_ns if synced else 0
    except OSError:
        version = 0
    return _load_book(str(synced_root(env)), version)


@functools.lru_cache(maxsize=1)
def _builtin_book() -> RecipeBook:
    """glmkit's own data: it ships with the package, so one parse per process."""
    notes: list[str] = []
    builtin = RecipeSource("built-in", BUILTIN_ROOT)
    recipes, strategies, hardware = _read_root(BUILTIN_ROOT, builtin, notes,
                                               (*PROVIDERS, "glmkit"))
    return RecipeBook(recipes, strategies, hardware, (builtin,), tuple(notes))


@functools.lru_cache(maxsize=8)
def _load_book(synced_dir: str, version: int) -> RecipeBook:
    """One parse per synced copy (`version` changes with each sync)."""
    base = _builtin_book()
    notes = list(base.notes)
    recipes, strategies, hardware = dict(base.recipes), StrategyTable(base.strategies), \
        dict(base.hardware)
    sources = list(base.sources)
    root = Path(synced_dir)
    if version and (root / "SYNCED.json").is_file():
        source = _synced_source(root)
        more, more_strategies, more_hardware = _read_root(root, source, notes, PROVIDERS)
        for key, recipe in more.items():
            recipes[key] = _keep_builtin_variants(lookup(recipes, key), recipe)
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
    data = synced.data.model_copy(update={"variants": {**synced.variants, **extra}})
    return Recipe(synced.key, data, synced.source)


# --- sync ---------------------------------------------------------------------------------

def _git_commit(folder: Path) -> str | None:
    """The commit of a recipes checkout; None for a folder that is only inside some other
    repository (a test fixture, a vendored copy): that repository's commit is not the
    recipes' commit."""
    if shutil.which("git") is None:
        return None
    done = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel", "HEAD"],
                          capture_output=True, text=True, check=False)
    lines = done.stdout.split("\n")
    if done.returncode != 0 or len(lines) < 2:
        return None
    try:
        own = Path(lines[0]).resolve() == folder.resolve()
    except OSError:
        return None
    return lines[1].strip() if own else None


def _snapshot_commit(folder: Path) -> str | None:
    """A snapshot without .git names its commit in its README ("at commit <sha>")."""
    try:
        readme = read_plain_file(folder / "README.md", 1024 * 1024)
    except RecipeRefused:
        return None
    match = re.search(r"\bcommit ([0-9a-f]{40})\b", readme.decode(errors="replace"))
    return match.group(1) if match else None


def _find_root(folder: Path) -> Path:
    """The folder holding models/ (a tarball unpacks into one top folder)."""
    if (folder / "models").is_dir():
        return folder
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (child / "models").is_dir():
            return child
    raise UsageError(f"{folder} is not a vllm-project/recipes checkout: no models/ folder.")


def public_origin(origin: str) -> str:
    """`origin` as glmkit shows and stores it: without the `user:token@` a URL may carry."""
    try:
        parts = urllib.parse.urlsplit(origin)
    except ValueError:
        return "(an unreadable URL)"
    if not parts.scheme or "@" not in parts.netloc:
        return origin
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _redact(text: str, origin: str) -> str:
    """`text` (a message, git's stderr) with the credentials of `origin` taken out."""
    text = text.replace(origin, public_origin(origin))
    try:
        parts = urllib.parse.urlsplit(origin)
    except ValueError:
        return text
    if "@" not in parts.netloc:
        return text
    userinfo = parts.netloc.rsplit("@", 1)[0]
    # A token may stand alone as the user name (https://TOKEN@github.com/...).
    secrets = [userinfo, parts.password, parts.username if parts.password is None else None]
    for secret in secrets:
        for form in {secret or "", urllib.parse.unquote(secret or "")}:
            if len(form) >= 4:  # not `git` of ssh://git@host
                text = text.replace(form, "***")
    return text


def _check_origin(origin: str) -> Literal["folder", "git", "tarball"]:
    """What `origin` is, or a UsageError before anything reaches git or the network."""
    if origin.startswith("-"):
        raise UsageError(f"--from {public_origin(origin)!r} starts with '-', which git would "
                         "read as an option. Pass a folder as ./NAME, or a URL.")
    if any(c in origin for c in "\0\r\n"):
        raise UsageError("--from holds a control character; pass a folder or a URL.")
    try:
        if Path(origin).expanduser().is_dir():
            return "folder"
    except OSError:  # a name longer than the file system takes: no folder
        pass
    if re.fullmatch(r"[\w.+-]+@\w[\w.-]*:[^:]+", origin):
        return "git"  # scp-like: git@github.com:owner/repo.git
    if "://" not in origin:
        raise UsageError(f"--from {public_origin(origin)[:80]!r} is neither a folder nor a "
                         "URL.")
    try:
        parts = urllib.parse.urlsplit(origin)
        scheme = parts.scheme.lower()
    except ValueError:
        raise UsageError("--from is not a readable URL.") from None
    if (parts.hostname or "").startswith("-"):  # ssh would read it as an option
        raise UsageError(f"--from {public_origin(origin)!r}: a host name cannot start "
                         "with '-'.")
    if re.search(r"\.(tar\.gz|tgz)$|/tar\.gz/", origin):
        if scheme not in ("https", "http"):
            raise UsageError(f"--from {public_origin(origin)!r}: a tarball is downloaded "
                             "over https or http only.")
        return "tarball"
    if scheme not in GIT_SCHEMES:
        raise UsageError(f"--from {public_origin(origin)!r}: git URLs are synced over "
                         f"{', '.join(GIT_SCHEMES)} only.")
    return "git"


class _Capped(io.BufferedIOBase):
    """A file's read() that fails once more than `limit` bytes came out of it."""

    def __init__(self, raw: io.BufferedIOBase, limit: int, what: str) -> None:
        super().__init__()
        self.raw, self.limit, self.what, self.count = raw, limit, what, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise UsageError(f"{self.what} unpacks to more than {self.limit // 2**20} MB; a "
                             "recipes snapshot is a few MB. Pass --from another source.")
        return data


def _download(origin: str, archive: Path) -> None:
    """Stream `origin` into `archive`, refusing more than MAX_DOWNLOAD_BYTES."""
    import requests

    shown = public_origin(origin)
    too_big = UsageError(f"{shown} is larger than {MAX_DOWNLOAD_BYTES // 2**20} MB; a recipes "
                         "snapshot is a few MB. Pass --from another source.")
    deadline = time.monotonic() + DOWNLOAD_DEADLINE_S
    try:
        with requests.get(origin, timeout=60, stream=True) as response:
            response.raise_for_status()
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_DOWNLOAD_BYTES:
                raise too_big
            size = 0
            with archive.open("wb") as out:
                for chunk in response.iter_content(chunk_size=64 * 1024):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise too_big
                    if time.monotonic() > deadline:
                        raise EnvironmentProblem(f"Downloading {shown} took over "
                                                 f"{DOWNLOAD_DEADLINE_S} s; sync again later.")
                    out.write(chunk)
    except requests.RequestException as err:
        raise EnvironmentProblem(_redact(
            f"Could not download recipes from {shown}: {one_line(str(err), 300)}. The "
            "built-in recipes still serve; sync again when online, or pass --from a local "
            "checkout.", origin)) from None


def _unpack(archive: Path, into: Path, shown: str) -> None:
    """Unpack a .tar.gz with tarfile's `data` filter, within size and member limits."""
    import gzip

    def members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        for count, member in enumerate(tar, 1):
            if count > MAX_ARCHIVE_MEMBERS:
                raise UsageError(f"{shown} holds more than {MAX_ARCHIVE_MEMBERS} files; a "
                                 "recipes snapshot holds a few hundred.")
            yield member

    try:
        with gzip.open(archive) as raw, \
                tarfile.open(None, "r|", _Capped(raw, MAX_UNPACKED_BYTES, shown)) as tar:
            tar.extractall(into, members=members(tar), filter="data")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UsageError(f"{shown} is not a readable .tar.gz: {one_line(str(err))}") from None


def _fetch(origin: str, kind: str, into: Path) -> tuple[Path, str | None]:
    """A git URL is cloned (depth 1); an http(s) URL ending in .tar.gz/.tgz is unpacked."""
    shown = public_origin(origin)
    if kind == "tarball":
        archive = into / "recipes.tar.gz"
        _download(origin, archive)
        _unpack(archive, into / "unpacked", shown)
        return _find_root(into / "unpacked"), None
    if shutil.which("git") is None:
        raise EnvironmentProblem("git is not installed: pass --from a tarball URL or a "
                                 "local checkout.")
    # `--` ends git's options whatever the origin looks like; core.symlinks=false checks a
    # link out as a small file holding its target, never as a link.
    done = subprocess.run(["git", "-c", "core.symlinks=false", "clone", "--quiet", "--depth",
                           "1", "--", origin, str(into / "clone")], capture_output=True,
                          text=True, check=False, timeout=300,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if done.returncode != 0:
        detail = one_line(_redact(done.stderr.strip(), origin)[-300:], 300)
        raise EnvironmentProblem(f"Could not clone {shown}: {detail}. The built-in recipes "
                                 "still serve; sync again when online, or pass --from a "
                                 "local checkout.")
    return into / "clone", _git_commit(into / "clone")


def _copy_plain(root: Path, staged: Path, source: RecipeSource, notes: list[str]) -> None:
    """Copy the files glmkit reads, as plain files. A symbolic link could point anywhere on
    this host (~/.ssh, /etc), so it is skipped with a note, as is a file over the limit."""
    found = [path for folder in ("strategies", *(f"models/{p}" for p in PROVIDERS))
             for path in _yaml_files(root, folder, source, notes)]
    if os.path.lexists(root / "taxonomy.yaml"):
        found.append(root / "taxonomy.yaml")
    for path in found:
        try:
            data = read_plain_file(path)
        except RecipeRefused as err:
            notes.append(_skipped(path, source, err))
            continue
        copy = staged / path.relative_to(root)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(data)


@dataclass(frozen=True)
class SyncResult:
    root: Path
    commit: str | None
    origin: str  # without credentials
    recipes: tuple[str, ...]
    notes: tuple[str, ...]
    # (file, key paths glmkit does not read): a newer schema is shown, not ignored
    unknown: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def unknown_notes(self) -> list[str]:
        return [f"{path}: keys glmkit does not read: {describe_unknown(list(keys))}"
                for path, keys in self.unknown]

    def describe(self) -> str:
        at = f" @ {self.commit[:12]}" if self.commit else ""
        return f"synced {len(self.recipes)} GLM recipes from {self.origin}{at} into {self.root}"


def sync(origin: str | None, env: Mapping[str, str]) -> SyncResult:
    """Copy the recipes at `origin` (folder, git URL or tarball URL; default upstream) into
    the user's cache, replacing an earlier sync only once the new copy has parsed."""
    origin = origin or UPSTREAM_GIT
    kind = _check_origin(origin)
    shown = public_origin(origin)
    target = synced_root(env)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".recipes-") as tmp:
        work = Path(tmp)
        if kind == "folder":
            root = _find_root(Path(origin).expanduser())
            commit = _git_commit(root) or _snapshot_commit(root)
        else:
            root, commit = _fetch(origin, kind, work)
            commit = commit or _snapshot_commit(root)
        staged = work / "staged"
        staged.mkdir()
        notes: list[str] = []
        _copy_plain(root, staged, RecipeSource("synced", root, commit, shown), notes)
        source = RecipeSource("synced", staged, commit, shown)
        unknown: dict[str, list[str]] = {}
        recipes, _, _ = _read_root(staged, source, notes, PROVIDERS, unknown)
        # Notes name files as in the recipes repository: models/zai-org/GLM-4.6.yaml.
        notes = [note.replace(f"{root}{os.sep}", "").replace(f"{staged}{os.sep}", "")
                 for note in notes]
        if not recipes:
            raise UsageError(f"No GLM chat recipe could be read from {shown} "
                             f"({'; '.join(notes[:3]) or 'models/zai-org is empty'}); the "
                             "built-in recipes still serve.")
        (staged / "SYNCED.json").write_text(json.dumps({
            "origin": shown, "commit": commit,
            "synced_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}, indent=2))
        old = work / "old"
        if target.exists():
            target.replace(old)
        staged.replace(target)
    return SyncResult(target, commit, shown, tuple(sorted(recipes)), tuple(notes),
                      tuple((path, tuple(keys)) for path, keys in sorted(unknown.items())))


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
    # kept: a checkpoint only glmkit's data has (GLM-4.5-Air), served after the sync too
    kind: Literal["added", "removed", "changed", "kept"]
    path: str = ""
    builtin: Any = None
    synced: Any = None


KEPT = "only in the built-in data (kept)"


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
        # Variants the load keeps (`_keep_builtin_variants`) are one line, not a change of
        # each of their fields to nothing.
        merged = _keep_builtin_variants(builtin[key], synced[key])
        kept = [v for v in merged.variants if v not in synced[key].variants]
        changes += [RecipeChange(key, "kept", f"variants.{v}",
                                 builtin[key].variant_model_id(v), KEPT) for v in kept]
        old = {p: v for p, v in _flatten(builtin[key].data.plain()).items()
               if not any(p.startswith(f"variants.{k}.") for k in kept)}
        new = _flatten(synced[key].data.plain())
        for path in sorted(set(old) | set(new)):
            if (was := lookup(old, path)) != (now := lookup(new, path)):
                changes.append(RecipeChange(key, "changed", path, was, now))
    return changes
