"""What every kind of deployment is to the rest of the kit: one server (`ServePlan`), a
cluster over nodes (`ClusterPlan`), prefill/decode pools behind a router (`PdPlan`) or a
model group behind its door (`GroupPlan`).

The run layer, the renderers' callers and the views ask a deployment through this
protocol (its parts, how each is probed, how it fails), never which kind it is."""

from __future__ import annotations

from typing import Protocol

from glmkit.host.facts import HostFacts
from glmkit.host.settings import Settings
from glmkit.knowledge.images import ImageProfile
from glmkit.knowledge.recipes import RecipeBook
from glmkit.plan.cluster import ClusterPlan, plan_cluster
from glmkit.plan.group import GroupPlan, plan_group
from glmkit.plan.parts import Part
from glmkit.plan.pd import PD_STRATEGY, PdPlan, plan_pd
from glmkit.plan.serve import ServePlan, build_plan


class Deployment(Protocol):
    @property
    def serving(self) -> ServePlan:
        """The plan of what serves the API: the server, a cluster's head, or the pools'
        shared plan (published as the router's)."""

    @property
    def local(self) -> bool:
        """Every part runs on this machine's engine (its API is ours to reach)."""

    @property
    def node_count(self) -> int: ...

    @property
    def rejoins(self) -> bool:
        """A stopped part may start again beside running ones."""

    @property
    def keep_on_failure(self) -> bool:
        """A failed start stops the parts and keeps them for their logs (else removes)."""

    @property
    def head_command(self) -> tuple[str, ...] | None:
        """What `up` runs in the first part once the group formed (Ray's `vllm serve`)."""

    @property
    def shared_secret(self) -> str | None:
        """The name of a secret every part must share, kept across `up`s (Ray's token)."""

    def parts(self) -> tuple[Part, ...]:
        """Its containers, in start order, with the probe each needs."""

    @property
    def api_probe_url(self) -> str | None:
        """Where this machine checks the API's /health, when it should."""

    @property
    def overlay_images(self) -> tuple[ImageProfile, ...]:
        """Small images of its own, rebuilt here whenever their recipe changed."""

    def exposed(self) -> list[tuple[str, str]]:
        """(part, address) of parts that listen beyond loopback on their own."""

    def describe(self) -> list[str]:
        """Its layout in words, printed before it starts."""

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """Its services in the order they start, each stage healthy before the next
        (a model group's members, one by one); (): all at once."""

    def served(self) -> tuple[ServePlan, ...]:
        """Every model it serves, with the image and weights each needs here."""


AnyPlan = ServePlan | ClusterPlan | PdPlan | GroupPlan


def plan_deployment(settings: Settings, facts: HostFacts, book: RecipeBook) -> AnyPlan:
    """A ServePlan, a PdPlan for --strategy pd_cluster, a ClusterPlan when --nodes is
    given, or a GroupPlan for several models; portable facts (`HostFacts.portable()`) plan
    for another platform (`export`)."""
    if len(settings.models) > 1:
        return plan_group(settings, facts, book)
    if settings.strategy == PD_STRATEGY:
        return plan_pd(settings, facts, book)
    if settings.nodes:
        return plan_cluster(settings, facts, book)
    return build_plan(settings, facts, book)
