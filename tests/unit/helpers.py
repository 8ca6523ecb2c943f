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


SECRET = "hf_SECRETVALUE_1234"


def plan_from(env: dict[str, str], flags: dict[str, Any] | None = None,
              config: dict[str, Any] | None = None, **kwargs: Any) -> ServePlan:
    """A plan through the settings layers (flags and `kwargs` < nothing; config as
    invoke.yaml; `env` as the environment), as a task builds it."""
    from glmkit.host.settings import resolve_settings

    settings, _ = resolve_settings({**(flags or {}), **kwargs}, config or {}, env)
    return plan_here(settings, NO_GPU, env)


def file_args(plan: ServePlan) -> list[str]:
    """The container's command as Compose will run it: the file read back, `$$` → `$`."""
    import yaml

    from glmkit.render.compose import compose_dict, dump

    data = yaml.safe_load(dump(compose_dict(plan)))
    return [a.replace("$$", "$") for a in data["services"]["vllm"]["command"]]


def plan_for_largest_node(model_id: str, vendor: str) -> ServePlan | None:
    """The model on the largest node of the vendor (every checkpoint fits one without
    offload); None where the checkpoint cannot run there, after checking why."""
    import pytest

    from glmkit.errors import UsageError

    machine = {"cuda": gpus("cuda", 8, 274432, "NVIDIA B300 SXM6 AC"),
               "rocm": gpus("rocm", 8, 294912, "AMD Instinct MI355X"),
               "cpu": gpus("cpu", 0)}[vendor]
    for marker, refused_on, why in (("NVFP4", "rocm", "nvfp4 needs NVIDIA blackwell"),
                                    ("MXFP4", "cuda", "runs only on mi355x")):
        if marker in model_id and vendor == refused_on:
            with pytest.raises(UsageError, match=why):
                plan_for(hw=machine, vendor=vendor, model=model_id, project="t")
            return None
    return plan_for(hw=machine, vendor=vendor, model=model_id, project="t")
