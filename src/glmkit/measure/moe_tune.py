"""`invoke tune-moe`: vLLM's fused-MoE kernel tuned for the served model on this host's
GPUs, inside the serving container (its own vLLM, Triton and GPU), with the tuner in
measure/moe_tuner.py copied in, as the agentic client is.

The JSON lands on the kit's vLLM cache volume, in the folder every GPU plan names with
VLLM_TUNED_CONFIG_FOLDER, so the next `invoke up` of the model uses it (vLLM logs "Using
configuration from ... for MoE layer"). Measured on an H200 for GLM-4.7-Flash (E=64,
N=1536, BF16): the kernel alone 1.09x faster at 16 tokens, 1.01x at 64; served TPOT and
throughput at concurrency 16 and 64 unchanged within noise (docs/gpu.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmkit.errors import UsageError
from glmkit.host.vendors import resolve_vendor
from glmkit.plan.serve import CONTAINER_MOE_CONFIGS
from glmkit.process import run
from glmkit.run.server import running_server
from glmkit.vllm_args import flag_value

TUNER = Path(__file__).with_name("moe_tuner.py")
CONTAINER_TMP = "/tmp/glmkit-moe"


@dataclass(frozen=True)
class TuneMoeResult:
    container: str
    summary: dict[str, Any]


def refusal(vendor: str) -> str | None:
    """Why this server's kernels cannot be tuned, or None."""
    if not resolve_vendor(vendor).has_gpus:
        return ("invoke tune-moe tunes vLLM's fused-MoE Triton kernel on a GPU; the CPU "
                "image runs the experts with its own CPU kernels, which have no such config.")
    return None


def tune_moe(project: str, budget_s: float | None) -> TuneMoeResult:
    if budget_s is None or not 10 <= budget_s <= 3600:  # None: --budget ""; nan fails too
        raise UsageError(f"--budget {budget_s}: give seconds from 10 to 3600.")
    _, target = running_server(project)
    if reason := refusal(target.vendor):
        raise UsageError(reason)
    tp = flag_value(target.serve_args, "--tensor-parallel-size") or "1"
    container = target.container
    run(["docker", "exec", container, "mkdir", "-p", CONTAINER_TMP, CONTAINER_MOE_CONFIGS])
    try:
        run(["docker", "cp", str(TUNER), f"{container}:{CONTAINER_TMP}/{TUNER.name}"])
        # The server keeps its memory: the tuner gets what is left of the GPU.
        done = run(["docker", "exec", container, "python3", f"{CONTAINER_TMP}/{TUNER.name}",
                    "--model", target.model_ref, "--tp", tp, "--out", CONTAINER_MOE_CONFIGS,
                    "--budget-s", f"{budget_s:g}"], timeout=budget_s + 900)
    finally:
        run(["docker", "exec", container, "rm", "-rf", CONTAINER_TMP], check=False)
    return TuneMoeResult(container=container, summary=tuner_summary(done.stdout))


def tuner_summary(stdout: str) -> dict[str, Any]:
    """The tuner's last JSON line; a clear error where there is none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                summary = json.loads(line)
            except ValueError:
                continue
            if isinstance(summary, dict):
                return summary
    raise UsageError("The tuner printed no result; see `invoke logs`.")
