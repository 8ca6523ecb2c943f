"""The labels on a container glmkit starts: written by the plan (`plan.serve`, a
cluster node's by `render.cluster_compose`), read back by `run.server` and `run.engine`.
One definition: every key is `io.glmkit.<field>`, the field's name with `-` for `_`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

LABEL = "io.glmkit"
# On every container, volume and network glmkit makes: what clean-up and status look for.
MANAGED = f"{LABEL}.managed"


def label_key(name: str) -> str:
    """The label of a ServerLabels field, for lookups and filters."""
    if name not in _FIELDS:
        raise KeyError(f"ServerLabels has no field {name!r}")
    return f"{LABEL}.{name.replace('_', '-')}"


class MissingLabel(KeyError):
    """A label a server needs is absent or unreadable: not started by this glmkit."""


@dataclass(frozen=True, kw_only=True)
class ServerLabels:
    """What a serving container says about itself. The fields without a default are the
    ones bench and check need to reach it, so `from_labels` requires them."""

    # In the order they are written (keyword-only: the required ones need not lead).
    version: str | None = None  # glmkit's
    project: str | None = None
    model: str | None = None  # the catalog id
    vendor: str
    port: int | None = None  # the host port
    image: str
    served_model: str
    model_ref: str
    max_model_len: int
    strategy: str | None = None
    # A cluster node's: its name and rank, how many nodes, and the engine over them.
    node: str | None = None
    node_rank: int | None = None
    nodes: int | None = None
    engine: str | None = None
    # A pd_cluster's: which part of the deployment (prefill, decode, router); a model
    # group's: door or member, and the member's place in the group (1: awake at start).
    role: str | None = None
    member: int | None = None
    # What the plan decided of the served model (plan.model_facts): check and bench read
    # these, not the model's name. Absent on an older glmkit's server: none of them.
    vision: bool | None = None
    tiny: str | None = None  # which tiny model glmkit made: text, vision
    exact_answers: bool | None = None

    def to_labels(self) -> dict[str, str]:
        """Every set field as a label, after `io.glmkit.managed=true`."""
        out = {MANAGED: "true"}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[label_key(f.name)] = str(value).lower() if isinstance(value, bool) \
                    else str(value)
        return out

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> ServerLabels:
        """The labels read back; MissingLabel names the first required one absent."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = label_key(f.name)
            if key not in labels:
                if f.default is not None:  # required: the default is MISSING
                    raise MissingLabel(key)
                continue
            value: Any = labels[key]
            if f.name in _INTS:
                try:
                    value = int(value)
                except ValueError:
                    if f.default is not None:
                        raise MissingLabel(key) from None
                    continue
            if f.name in _BOOLS:
                if value not in ("true", "false"):
                    continue  # unreadable: as if absent (none of these is required)
                value = value == "true"
            values[f.name] = value
        return cls(**values)


_FIELDS = {f.name for f in fields(ServerLabels)}
_INTS = {"max_model_len", "port", "node_rank", "nodes", "member"}
_BOOLS = {"vision", "exact_answers"}
