"""What planning needs to know about this host, read once before the plan is made.

`read_host_facts` is the one place a serve plan's inputs touch the machine: detected
GPUs, the home and working folders, the HF cache (its owner, whether a model's weights
are complete there), the folders the settings name (resolved as Docker will mount them)
and the model the settings name (a folder there is this host's). `plan.serve.build_plan`
is then a pure function of these facts, the recipe book and the settings.

`HostFacts.portable()` keeps only what holds on any machine, for exports that run
elsewhere (Kubernetes): no detected GPUs or group ids, no completed download, no owner.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from glmkit.errors import UsageError
from glmkit.host.hardware import Hardware
from glmkit.host.hub import offline_env
from glmkit.host.settings import Settings
from glmkit.knowledge.catalog import ModelSpec, resolve_model
from glmkit.knowledge.sizing import Arch, known_arch
from glmkit.paths import existing_ancestor, hf_cache, kit_home
from glmkit.policy import Source, admit_host_folder


@dataclass(frozen=True)
class HostPath:
    """A host folder the settings name, as the mount policy admitted it (absolute,
    symlinks resolved), or the policy's refusal, raised where the plan mounts it."""

    path: Path | None
    refusal: str | None = None
    is_dir: bool = False
    note: str | None = None  # the policy's word on it (a system folder the user named)

    def admitted(self) -> Path:
        if self.path is None:
            raise UsageError(self.refusal or "The folder was refused.")
        return self.path


@dataclass(frozen=True, kw_only=True)
class HostFacts:
    hardware: Hardware  # detected GPUs and the host's video/render group ids
    home: Path  # the user's home folder, resolved
    cwd: Path  # the working directory relative host paths are taken from
    # --model resolved: a catalog entry, a Hub id, or a model folder on this host; a
    # refusal is kept and raised where the plan reads the model.
    model: ModelSpec | None
    model_refusal: str | None = None
    hf_cache: HostPath  # the HF cache to mount (HF_HOME or --hf-cache)
    offline: bool = False  # the model's weights are complete in the cache
    cache_owner_uid: int | None = None  # owner of the cache (or its nearest parent)
    uid: int | None = None  # the invoking user (None: portable facts)
    model_dir: HostPath | None = None  # a local model's folder
    media_dir: HostPath | None = None  # --media-dir
    here: bool = True  # False: portable facts, for a plan that runs elsewhere
    cpu_count: int = 2  # this host's cores (a CPU pd_cluster splits them between its pools)
    # The model's architecture facts (config.json in the HF cache, else built in), as
    # `invoke plan` reads them; None: none, so the plan is made from the recipe's numbers.
    arch: Arch | None = None
    # A model group's members (settings.models), each read as --model would be: the first
    # is this one's model. Empty for one model.
    members: tuple[HostFacts, ...] = ()
    # The host memory Linux says is available now (MemAvailable), in GiB: where a group's
    # sleeping models keep their weights (sleep level 1). None: not known.
    memory_available_gib: float | None = None

    def portable(self) -> HostFacts:
        """What holds on any machine: the vendor of the detected hardware and the folders,
        without the GPUs, group ids, a completed download or the cache's owner."""
        return dataclasses.replace(
            self, hardware=Hardware(vendor=self.hardware.vendor,
                                    source="not this host: exported"),
            offline=False, cache_owner_uid=None, uid=None, here=False,
            members=tuple(m.portable() for m in self.members), memory_available_gib=None)

    @property
    def notes(self) -> list[str]:
        """What the mount policy said of the folders it admitted."""
        return [p.note for p in (self.hf_cache, self.model_dir, self.media_dir)
                if p is not None and p.note]


def _admit(path: str | Path, what: str, home: Path, cwd: Path, source: Source) -> HostPath:
    try:
        admitted = admit_host_folder(path, what, home, cwd, source=source)
    except UsageError as err:
        return HostPath(None, str(err))
    try:
        is_dir = admitted.path.is_dir()
    except OSError:
        is_dir = False
    return HostPath(admitted.path, is_dir=is_dir, note=admitted.note)


def _owner_uid(path: Path) -> int | None:
    try:
        path = existing_ancestor(path)  # a missing cache is made by `up` as the invoking user
        return path.stat().st_uid if path.exists() else None
    except OSError:
        return None


def memory_available_gib(meminfo: str) -> float | None:
    """MemAvailable of /proc/meminfo's text, in GiB; None when it has none."""
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        words = rest.split()
        if name == "MemAvailable" and words and words[0].isascii() and words[0].isdigit():
            return int(words[0]) / (1024 * 1024)  # kB
    return None


def available_memory_gib() -> float | None:
    """This host's MemAvailable now, in GiB; None where /proc/meminfo has none."""
    return _meminfo()


def _meminfo() -> float | None:
    try:
        return memory_available_gib(Path("/proc/meminfo").read_text())
    except OSError:
        return None


def read_host_facts(s: Settings, env: Mapping[str, str], hw: Hardware) -> HostFacts:
    """Everything about this host a serve plan for `s` depends on, read now; for a model
    group, each member's model read as --model would be."""
    if len(s.models) > 1:
        members = tuple(_read_host_facts(dataclasses.replace(
            s, model=model, models=(), model_source=s.models_source), env, hw)
            for model in s.models)
        return dataclasses.replace(members[0], members=members)
    return _read_host_facts(s, env, hw)


def _read_host_facts(s: Settings, env: Mapping[str, str], hw: Hardware) -> HostFacts:
    home, cwd = Path.home(), Path(os.getcwd())
    model: ModelSpec | None = None
    refusal: str | None = None
    try:
        model = resolve_model(s.model, env)
    except UsageError as err:
        refusal = str(err)
    # Each folder is weighed by the layer that named it: HF_HOME and GLMKIT_HOME are the
    # environment's, the cache's default (~/.cache/huggingface) the kit's.
    if s.hf_cache:
        cache_from = Source.of_setting(s.hf_cache_source)
    else:
        cache_from = Source.ENVIRONMENT if env.get("HF_HOME") else Source.KIT
    cache = _admit(hf_cache(env, s.hf_cache), "--hf-cache" if s.hf_cache else
                   "The HF cache (HF_HOME)", home, cwd, cache_from)
    model_dir = None
    if model is not None and model.local_dir:
        folder = Path(model.local_dir)
        model_from = Source.of_setting(s.model_source) if folder.is_absolute() else (
            Source.ENVIRONMENT if env.get("GLMKIT_HOME") else Source.KIT)
        model_dir = _admit(folder if folder.is_absolute() else kit_home(env) / folder,
                           "The model folder", home, cwd, model_from)
    offline = bool(cache.path and model and not model.local_dir
                   and offline_env(cache.path, model.id, env))
    arch = known_arch(model, cache.path) if model is not None and model.in_catalog and \
        not model.local_dir else None
    return HostFacts(
        hardware=hw, home=home, cwd=cwd, model=model, model_refusal=refusal,
        hf_cache=cache, offline=offline,
        cache_owner_uid=_owner_uid(cache.path) if cache.path else None, uid=os.getuid(),
        model_dir=model_dir, cpu_count=os.cpu_count() or 2, arch=arch,
        memory_available_gib=_meminfo(),
        media_dir=_admit(s.media_dir, "--media-dir", home, cwd,
                         Source.of_setting(s.media_dir_source)) if s.media_dir else None)
