"""The containers a deployment is made of, as plain data: what the one lifecycle in
`run.lifecycle` starts, polls, probes and stops, whatever the kind of deployment."""

from __future__ import annotations

from dataclasses import dataclass

from glmkit.knowledge.images import ImageProfile


@dataclass(frozen=True)
class Probe:
    """A check run inside a part's container (its API may be unpublished): /health at the
    address the server binds, and with `request` one real chat request too (a cluster's
    head whose worker died still answers /health: measured, for minutes)."""

    host: str  # where a client inside the container reaches the API
    port: int
    request: bool = True


@dataclass(frozen=True)
class Part:
    """One container of a deployment: its compose service, the project and engine that hold
    it, and how it is probed (None: running is enough, or the host probes the API)."""

    service: str
    label: str  # how messages name it: "The vLLM container", "Node worker1"
    project: str
    docker_host: str | None  # None: this machine's engine
    probe: Probe | None = None


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

    def secret_aliases(self) -> dict[str, str]:
        return {}

    def exposed(self) -> list[tuple[str, str]]:
        return []

    def describe(self) -> list[str]:
        return []
