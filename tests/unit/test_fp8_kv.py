"""fp8 KV in the plan (#36): the tokens and maximum concurrency `--kv-cache-dtype fp8`
gives, held to what vLLM measured on an H100 (gpu_calibration.json's fp8_kv point), and
offered by `invoke plan` with the accuracy gate it needs."""

from __future__ import annotations

from typing import Any

import pytest

from glmkit.knowledge.catalog import CATALOG
from glmkit.knowledge.gpu_model import calibration, vllm_memory
from glmkit.knowledge.sizing import ARCH, fit, gpu_from_hardware, kv_bytes_per_token
from glmkit.plan.advice import PlanRequest, advise

from .helpers import NO_GPU

POINTS = calibration()["fp8_kv"]


@pytest.mark.parametrize("point", POINTS, ids=[p["gpu"] for p in POINTS])
def test_fp8_kv_tokens_as_vllm_measured_them(point: dict[str, Any]) -> None:
    """GLM-4.7-Flash on an H100: 476,928 KV tokens with fp8 vs 213,664 in BF16. Halving
    the bytes alone planned ~430,000: vLLM also estimated its CUDA graphs at 0.59 GiB,
    not 1.84."""
    model, arch = CATALOG[point["model"]], ARCH["GLM-4.7-Flash"]
    card = gpu_from_hardware(point["gpu"], point["memory_mib"])
    fp8 = fit(model, arch, card, 1, model.precision, point["utilization"], 1, 1.0,
              point["mtp"])
    bf16 = fit(model, arch, card, 1, model.precision, point["utilization"], 1, 2.0,
               point["mtp"])
    assert fp8.kv_tokens == pytest.approx(point["kv_tokens"], rel=0.01)
    assert bf16.kv_tokens == pytest.approx(point["bf16_kv_tokens"], rel=0.02)
    memory = vllm_memory(card.memory_gib, point["utilization"], 50.0, arch.hidden,
                         arch.vocab, kv_bytes_per_token(arch, 1, 1.0), fp8_kv=True)
    assert memory.cuda_graph_gib == point["cuda_graph_estimate_gib"]


def test_invoke_plan_offers_fp8_kv_for_long_sessions_with_the_accuracy_gate() -> None:
    point = POINTS[0]
    rows = dict(advise(PlanRequest(model=point["model"], gpu="h100", gpu_count=1),
                       NO_GPU, {"HF_HUB_OFFLINE": "1"}).rows)
    model, arch = CATALOG[point["model"]], ARCH["GLM-4.7-Flash"]
    card = gpu_from_hardware(point["gpu"], point["memory_mib"])
    tokens = fit(model, arch, card, 1, model.precision, 0.9, 1, 1.0).kv_tokens
    offer = rows["fp8 KV cache"]
    assert f"holds {tokens:,} tokens" in offer and "--kv-cache-dtype fp8" in offer
    assert f"maximum concurrency {tokens / 9000:.2f}x at 9,000 tokens" in offer
    assert "long agent sessions" in offer and "`invoke eval`" in offer
