"""A deployment's files by its kind: compose data per project, Kubernetes manifests."""

from __future__ import annotations

from functools import singledispatch
from typing import Any

from glmkit.errors import UsageError
from glmkit.plan.cluster import ClusterPlan
from glmkit.plan.deployment import Deployment
from glmkit.plan.group import GroupPlan
from glmkit.plan.pd import PdPlan
from glmkit.plan.serve import ServePlan
from glmkit.render import k8s
from glmkit.render.cluster_compose import cluster_compose
from glmkit.render.compose import compose_dict
from glmkit.render.group_compose import group_compose
from glmkit.render.pd_compose import pd_compose


@singledispatch
def compose_files(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """Compose data by project name: one file, or one per machine of a cluster."""
    raise TypeError(f"no compose files for {type(deployment).__name__}")


@compose_files.register
def _(plan: ServePlan) -> dict[str, dict[str, Any]]:
    return {plan.project: compose_dict(plan)}


compose_files.register(ClusterPlan, cluster_compose)
compose_files.register(PdPlan, pd_compose)
compose_files.register(GroupPlan, group_compose)


@singledispatch
def manifests(deployment: Deployment) -> list[dict[str, Any]]:
    """Kubernetes manifests for a host-independent plan."""
    raise TypeError(f"no manifests for {type(deployment).__name__}")


manifests.register(ServePlan, k8s.single_node)
manifests.register(ClusterPlan, k8s.multi_node)
manifests.register(PdPlan, k8s.pd)


@manifests.register
def _(plan: GroupPlan) -> list[dict[str, Any]]:
    raise UsageError("`invoke export k8s` has no model groups: the door switches models "
                     "with vLLM's sleep mode on one machine's GPUs. Export each model alone.")
