from __future__ import annotations

from typing import Any

from glmkit.host.facts import read_host_facts
from glmkit.host.hardware import Gpu, Hardware
from glmkit.host.settings import Settings
from glmkit.knowledge.recipes import load_book
from glmkit.plan.serve import ServePlan, build_plan

NO_GPU = Hardware(vendor="cpu", group_ids={"video": 44, "render": 993})


def gpus(vendor: str, count: int, memory_mib: int = 81559,
         name: str = "NVIDIA H100 80GB HBM3") -> Hardware:
    return Hardware(vendor=vendor,  # type: ignore[arg-type]
                    gpus=tuple(Gpu(i, name, memory_mib) for i in range(count)),
                    group_ids={"video": 44, "render": 993}, source="test")


def plan_for(hw: Hardware = NO_GPU, env: dict[str, str] | None = None, **settings: Any
             ) -> ServePlan:
    default_env = {"GLMKIT_HOME": "/tmp/glmkit-test", "HF_HOME": "/tmp/glmkit-test-hf"}
    return plan_here(Settings(**settings), hw, env or default_env)


def plan_here(settings: Settings, hw: Hardware, env: dict[str, str]) -> ServePlan:
    """build_plan on this host's facts, as the tasks make it."""
    return build_plan(settings, read_host_facts(settings, env, hw), load_book(env))
