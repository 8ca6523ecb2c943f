"""`--kv-offload-gb N`: vLLM's native CPU KV offloading, rendered where the recipe's
kv_offload_support lists offloading_cpu and the image's vLLM has the flags; on the CPU
vendor rendered and validated only (vLLM's CPU backend refuses it)."""

from __future__ import annotations

import pytest

from glmkit.errors import UsageError
from glmkit.host.settings import Settings, check_ranges

from .helpers import gpus, plan_for

H200 = gpus("cuda", 8, 143771, "NVIDIA H200")


def offload_args(args: tuple[str, ...]) -> list[str]:
    i = args.index("--kv-offloading-size") if "--kv-offloading-size" in args else None
    return [] if i is None else list(args[i:i + 4])


def test_rendered_on_a_gpu_server_where_the_recipe_supports_it() -> None:
    plan = plan_for(hw=H200, vendor="cuda", model="zai-org/GLM-4.6-FP8", kv_offload_gb=8.5)
    assert offload_args(plan.serve_args) == ["--kv-offloading-size", "8.5",
                                             "--kv-offloading-backend", "native"]
    assert not any("kv-offload" in n for n in plan.notes)
    assert offload_args(plan_for(hw=H200, vendor="cuda",
                                 model="zai-org/GLM-4.6-FP8").serve_args) == []


def test_on_cpu_rendered_and_said_not_served() -> None:
    plan = plan_for(vendor="cpu", model="zai-org/GLM-4.6", kv_offload_gb=4)
    assert offload_args(plan.serve_args)[:2] == ["--kv-offloading-size", "4"]
    assert any("CPU backend refuses KV offloading" in n for n in plan.notes)


def test_refused_where_the_recipe_lists_no_cpu_offloading() -> None:
    with pytest.raises(UsageError, match="does not list CPU KV offloading"):
        plan_for(vendor="cpu", kv_offload_gb=4)  # the tiny model's recipe has none


def test_an_image_without_the_flags_drops_them_with_a_note() -> None:
    plan = plan_for(hw=H200, vendor="cuda", model="zai-org/GLM-4.6-FP8", kv_offload_gb=8,
                    vllm_version="0.11.0")
    assert "--kv-offloading-size" not in plan.serve_args
    assert any("dropped --kv-offloading-size" in n for n in plan.notes)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), 1e9])
def test_sizes_out_of_range_are_refused(value: float) -> None:
    with pytest.raises(UsageError, match="--kv-offload-gb"):
        check_ranges(Settings(kv_offload_gb=value))


def test_vllm_032s_own_parser_reads_the_rendered_flags() -> None:
    from glmkit.policy import Source, admit_args

    words = offload_args(plan_for(vendor="cpu", model="zai-org/GLM-4.6",
                                  kv_offload_gb=4).serve_args)
    # The option table of vLLM 0.32 (the CPU image's own parser) knows both, as written.
    assert list(admit_args(words, Source.COMMAND_LINE).args) == words
