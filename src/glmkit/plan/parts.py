"""The containers a deployment is made of, as plain data: what the one lifecycle in
`run.lifecycle` starts, polls, probes and stops, whatever the kind of deployment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from glmkit.endpoints import CONTAINER_PORT
from glmkit.errors import UsageError
from glmkit.knowledge.images import ImageProfile
from glmkit.policy import Source, merge_args, parse_flags

# The flags that size one server among others: a cluster or the pools set their own.
PARALLEL = ("--tensor-parallel-size", "--data-parallel-size")
KV_TRANSFER = "--kv-transfer-config"  # how KV moves between servers: the pools decide theirs


def parted(words: Sequence[str], names: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the flags not named, the flags named), each in order: admitted words split by
    vLLM's reading of each flag (`-tp 2` is --tensor-parallel-size)."""
    flags = parse_flags(words, Source.KIT)
    return ([w for f in flags if f.name not in names for w in f.words()],
            [w for f in flags if f.name in names for w in f.words()])


def refuse_owned(extra_args: Sequence[str], owned: dict[str, str], kind: str) -> None:
    """A cluster or the pools size their servers themselves: a flag after `--` that they
    set (in any spelling vLLM reads, `-tp 2` too) would be overridden or left out without a
    word, so it is refused in one line naming the option that does it."""
    given = [f.name for f in parse_flags(extra_args, Source.KIT) if f.name in owned]
    if given:
        name = given[0]
        raise UsageError(f"{kind} sets {name} itself: leave it out of the flags after `--` "
                         f"({owned[name]}).")


@dataclass(frozen=True, kw_only=True)
class ServeCommand:
    """`vllm serve`'s words in the layers they come from, each admitted by the policy.
    One server runs them all (`argv`); a cluster and the pools compose their own commands
    from the same layers, never by taking another's argv apart."""

    model_ref: str  # the repository, or the mounted folder
    names: tuple[str, ...]  # --served-model-name: the one it reports first, then aliases
    recipe: tuple[str, ...]  # the recipe's flags, without parallel sizes
    parallel: tuple[str, ...]  # the one server's sizes (PARALLEL), the user's winning
    kit: tuple[str, ...]  # glmkit's own: context, memory, dtype, media folder, ...
    user: tuple[str, ...]  # the user's after `--`, without parallel sizes or KV transfer
    kv_transfer: tuple[str, ...] = ()  # the user's --kv-transfer-config

    def flags(self, *, parallel: bool = True, kv_transfer: bool = True) -> list[str]:
        """Every layer's flags, each option once, a later layer's setting winning."""
        return merge_args(self.recipe, self.parallel if parallel else (), self.kit,
                          self.user, self.kv_transfer if kv_transfer else ())

    def argv(self, *, host: str = "0.0.0.0", port: int = CONTAINER_PORT,
             parallel: bool = True) -> tuple[str, ...]:
        """Everything after `vllm serve`, listening on `host`:`port` (in its network)."""
        return (self.model_ref, "--served-model-name", *self.names, "--host", host,
                "--port", str(port), *self.flags(parallel=parallel))

    def kit_flag(self, name: str) -> list[str]:
        """glmkit's own setting of one flag, as words (none: [])."""
        return parted(self.kit, (name,))[1]


@dataclass(frozen=True)
class Probe:
    """A check run inside a part's container (its API may be unpublished): /health at the
    address the server binds, and with `request` one real chat request too (a cluster's
    head whose worker died still answers /health: measured, for minutes); with `asleep`,
    vLLM's /is_sleeping must say true (a model group's member, put to sleep by its door)."""

    host: str  # where a client inside the container reaches the API
    port: int
    request: bool = True
    asleep: bool = False


@dataclass(frozen=True)
class Part:
    """One container of a deployment: its compose service, the project and engine that hold
    it, and how it is probed (None: running is enough, or the host probes the API)."""

    service: str
    label: str  # how messages name it: "The vLLM container", "Node worker1"
    project: str
    docker_host: str | None  # None: this machine's engine
    probe: Probe | None = None
    timeout_s: int | None = None  # how long its own start may take, when started alone


def engines(parts: tuple[Part, ...]) -> list[tuple[str, str | None]]:
    """(compose project, DOCKER_HOST) of each engine the parts run on, in order, once each."""
    return list(dict.fromkeys((p.project, p.docker_host) for p in parts))


class Defaults:
    """What a deployment is unless its kind says otherwise (the `Deployment` protocol)."""

    @property
    def shared_secret(self) -> str | None:
        """The name of a secret every part must share (Ray's token)."""
        return None

    @property
    def overlay_images(self) -> tuple[ImageProfile, ...]:
        return ()

    def exposed(self) -> list[tuple[str, str]]:
        return []

    def describe(self) -> list[str]:
        return []

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """The services started together, in order, each stage healthy before the next;
        (): all at once."""
        return ()
