"""The quantization format from the checkpoint (#36 item 1): its config.json's
quantization_config where one is downloaded, else a per-family default with its source,
and every consumer keyed on it: the fused-MoE config name, the start period, the tuner's
dtype and blocks, `invoke plan`'s rows. One test per family: GLM-4.x FP8 (channel-wise
compressed-tensors), GLM-5.x FP8 (block 128 x 128), the V models (assumed, unverified)."""

from __future__ import annotations

import ast
import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from glmkit.knowledge.gpu_model import constant, moe_config_name, start_period_s
from glmkit.knowledge.quant_format import BF16, family_default, format_from_config
from glmkit.plan.advice import PlanRequest, advise

from .helpers import NO_GPU, gpus, plan_for

CONFIGS = Path(__file__).parents[2] / "src" / "glmkit" / "knowledge" / "configs"
AIR_FP8 = json.loads((CONFIGS / "GLM-4.5-Air-FP8.json").read_text())
BLOCK = {"quant_method": "fp8", "activation_scheme": "dynamic", "fmt": "e4m3",
         "weight_block_size": [128, 128]}
H200 = gpus("cuda", 1, 143771, "NVIDIA H200")


def _cache(root: Path, model_id: str, config: dict[str, Any]) -> Path:
    """An HF cache holding one downloaded config.json."""
    snap = root / "hub" / f"models--{model_id.replace('/', '--')}" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(config))
    return root


def _plan_rows(model: str, cache: Path | None = None) -> dict[str, str]:
    request = PlanRequest(model=model, gpu="h200", gpu_count=1,
                          hf_cache=str(cache) if cache else None)
    env = {"HF_HUB_OFFLINE": "1", **({"HF_HOME": str(cache)} if cache else {})}
    return dict(advise(request, NO_GPU, env).rows)


# --- GLM-4.x FP8: compressed-tensors, channel-wise, no blocks -----------------------------

def test_glm4_fp8_plan_names_the_file_vllm_looks_for_and_the_format() -> None:
    """`invoke plan --gpu h200 --model zai-org/GLM-4.5-Air-FP8` named
    E=128,N=1408,...,dtype=fp8_w8a8,block_shape=[128,128].json, a file vLLM never looks
    for, and said nothing of the format."""
    rows = _plan_rows("zai-org/GLM-4.5-Air-FP8")
    assert "E=128,N=1408,device_name=NVIDIA_H200,dtype=fp8_w8a8.json" in rows["MoE kernels"]
    assert "block_shape" not in rows["MoE kernels"]
    assert rows["quantization"].startswith("FP8 (compressed-tensors): weights per output "
                                           "channel, activations per token (dynamic)")
    assert "glmkit's default for GLM-4.x FP8" in rows["quantization"]
    assert "(unverified)" not in rows["quantization"]


def test_glm4_fp8_renders_no_block_warm_up() -> None:
    """GLM-4.5-Air-FP8 on one H200 rendered `start_period: 720s`: a 300 s block-FP8
    warm-up for a checkpoint that has no blocks."""
    plan = plan_for(hw=H200, vendor="cuda", model="zai-org/GLM-4.5-Air-FP8")
    assert plan.start_period_s == start_period_s(100.85, block_fp8=False) == 270
    assert not any("warm-up" in note for note in plan.notes)


def test_glm4_fp8_config_json_is_read_as_channel_wise() -> None:
    fmt = format_from_config(AIR_FP8)
    assert (fmt.kind, fmt.method, fmt.block, fmt.channel, fmt.token) == \
        ("fp8", "compressed-tensors", None, True, True)
    assert moe_config_name(128, 1408, "H200", fmt) == \
        "E=128,N=1408,device_name=NVIDIA_H200,dtype=fp8_w8a8.json"


def test_the_tuner_times_glm4_fp8_as_channel_wise_fp8_not_bf16(tmp_path: Path) -> None:
    """moe_tuner read only quant_method "fp8": a compressed-tensors checkpoint was tuned
    as BF16, a file named without dtype=fp8_w8a8."""
    from glmkit.measure.moe_tuner import shape_from_model

    (tmp_path / "config.json").write_text(json.dumps(AIR_FP8))
    shape = shape_from_model(str(tmp_path))
    assert (shape["dtype"], shape["block"], shape["per_channel"]) == ("fp8_w8a8", "", True)
    assert shape["experts"] == 128 and shape["intermediate"] == 1408


# --- GLM-5.x FP8: block 128 x 128 ---------------------------------------------------------

def test_glm5_fp8_keeps_block_shape_wherever_a_file_is_named(tmp_path: Path) -> None:
    from glmkit.measure.moe_tuner import format_args

    fmt = family_default("GLM-5.1-FP8", "fp8")
    assert fmt.block == (128, 128) and "GLM-5.x" in fmt.source and fmt.verified
    assert moe_config_name(256, 256, "H200", fmt) == \
        "E=256,N=256,device_name=NVIDIA_H200,dtype=fp8_w8a8,block_shape=[128,128].json"
    # the tuner, from a block checkpoint's config.json
    assert format_args({"quantization_config": BLOCK}) == {
        "dtype": "fp8_w8a8", "block": "128,128", "per_channel": False,
        "format": format_from_config({"quantization_config": BLOCK}).describe()}
    # the plan, from a downloaded config.json (its own quantization_config)
    config = {**copy.deepcopy(AIR_FP8), "quantization_config": BLOCK, "n_routed_experts": 256}
    rows = _plan_rows("zai-org/GLM-5.1-FP8", _cache(tmp_path, "zai-org/GLM-5.1-FP8", config))
    assert "dtype=fp8_w8a8,block_shape=[128,128].json" in rows["MoE kernels"]
    assert "the checkpoint's config.json" in rows["quantization"]


def test_glm5_fp8_counts_the_block_warm_up_and_says_it_was_measured_wrong(
        tmp_path: Path) -> None:
    config = {**copy.deepcopy(AIR_FP8), "quantization_config": BLOCK}
    cache = _cache(tmp_path, "zai-org/GLM-5.1-FP8", config)
    plan = plan_for(hw=gpus("cuda", 8, 143771, "NVIDIA H200"), vendor="cuda",
                    model="zai-org/GLM-5.1-FP8",
                    env={"GLMKIT_HOME": str(tmp_path / "home"), "HF_HOME": str(cache)})
    warm = [n for n in plan.notes if "block-FP8 warm-up" in n]
    assert len(warm) == 1 and "does not have" in warm[0]  # the calibration's caveat
    assert plan.start_period_s >= 1.5 * constant("block_fp8_warmup_s")


# --- the V models: GLM-4.x's layout assumed, marked unverified --------------------------

@pytest.mark.parametrize("model", ["zai-org/GLM-4.5V-FP8", "zai-org/GLM-4.6V-FP8"])
def test_the_v_models_format_is_marked_unverified(model: str) -> None:
    fmt = family_default(model.rsplit("/", 1)[-1], "fp8")
    assert fmt.channel and fmt.block is None and not fmt.verified
    assert _plan_rows(model)["quantization"].endswith("(unverified)")


# --- where the format comes from --------------------------------------------------------

def test_a_downloaded_config_json_decides_over_the_family_default(tmp_path: Path) -> None:
    """The checkpoint's own quantization_config is read where it is in the HF cache."""
    config = {**copy.deepcopy(AIR_FP8), "quantization_config": BLOCK}
    rows = _plan_rows("zai-org/GLM-4.5-Air-FP8",
                      _cache(tmp_path, "zai-org/GLM-4.5-Air-FP8", config))
    assert "block_shape=[128,128]" in rows["MoE kernels"]
    assert rows["quantization"].startswith("FP8 (quant_method fp8): weights in 128 × 128")


@pytest.mark.parametrize("quant", [
    "fp8", ["x"], {"quant_method": 7}, {"quant_method": "fp8", "weight_block_size": [0, 128]},
    {"quant_method": "compressed-tensors", "config_groups": {}},
    {"quant_method": "compressed-tensors", "config_groups": {
        "a": {"weights": {"num_bits": 8, "type": "float", "strategy": "channel"}},
        "b": {"weights": {"num_bits": 8, "type": "float", "strategy": "tensor"}}}},
    {"quant_method": "fp8", "weight_block_size": [128] * 100_000},
])
def test_a_quantization_config_that_cannot_be_read_falls_back_with_a_note(
        tmp_path: Path, quant: Any) -> None:
    """A cache is data from the Hub: an unreadable quantization_config is a ValueError
    naming it, and the plan serves the family default, saying why."""
    with pytest.raises(ValueError, match="quantization_config|config_groups|weights"):
        format_from_config({"quantization_config": quant})
    config = {**copy.deepcopy(AIR_FP8), "quantization_config": quant}
    rows = _plan_rows("zai-org/GLM-4.5-Air-FP8",
                      _cache(tmp_path, "zai-org/GLM-4.5-Air-FP8", config))
    assert "glmkit's default for GLM-4.x FP8" in rows["quantization"]
    assert "quantization_config not used" in rows["quantization"]
    assert len(rows["quantization"]) < 700


def test_bf16_and_unknown_fp8_families() -> None:
    assert format_from_config({"hidden_size": 8}) == BF16
    assert moe_config_name(64, 1536, "H200", BF16) == "E=64,N=1536,device_name=NVIDIA_H200.json"
    unknown = family_default("GLM-9-FP8", "fp8")
    assert not unknown.layout_known and moe_config_name(8, 8, "H200", unknown) is None
    assert family_default("GLM-5.2-NVFP4", "nvfp4").kind == "nvfp4"


# --- the copy the serving container gets ------------------------------------------------

def test_quant_format_imports_nothing_of_glmkit() -> None:
    """`invoke tune-moe` copies it into a container where glmkit is not installed."""
    source = (CONFIGS.parent / "quant_format.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("glmkit")
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("glmkit") for a in node.names)


def test_the_tuner_finds_quant_format_beside_it_without_glmkit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import glmkit.knowledge  # noqa: F401
    from glmkit.measure import moe_tuner

    monkeypatch.setitem(sys.modules, "glmkit.knowledge.quant_format", None)  # not installed
    # The package as imports see it now: another test may have imported it afresh.
    monkeypatch.delattr(sys.modules["glmkit.knowledge"], "quant_format", raising=False)
    monkeypatch.delitem(sys.modules, "quant_format", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    module = moe_tuner._quant_format()
    assert module.__name__ == "quant_format"
    assert module.format_from_config(AIR_FP8).channel
    monkeypatch.delitem(sys.modules, "quant_format")


def test_tune_moe_copies_quant_format_beside_the_tuner(monkeypatch: pytest.MonkeyPatch) -> None:
    from .test_tune_moe import _serving

    docker = _serving(monkeypatch, ())
    from glmkit.measure.moe_tune import tune_moe

    tune_moe("glmkit", 60)
    copied = [a[2] for a in docker.calls if a[1] == "cp"]
    assert [Path(c).name for c in copied] == ["moe_tuner.py", "quant_format.py"]


def test_gpu_truth_tunes_the_built_in_air_fp8_as_channel_wise_fp8(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/gpu_truth.py tune-moe read only quant_method "fp8": the built-in
    GLM-4.5-Air-FP8 config (compressed-tensors) was tuned as BF16, and a DEP layout as TP."""
    import argparse
    import subprocess

    from .test_gpu_truth import _script

    layout = tmp_path / "air"
    (layout / "model").mkdir(parents=True)
    (layout / "model" / "config.json").write_text(json.dumps(AIR_FP8))
    (layout / "layout.json").write_text(json.dumps({"serve_args": [
        "--data-parallel-size", "8", "--enable-expert-parallel"]}))
    ran: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda argv, check: ran.append(argv))
    _script().tune_moe(argparse.Namespace(layout=str(layout), out=str(tmp_path / "o"),
                                          budget_s=60))
    argv = ran[0]
    assert argv[argv.index("--dtype") + 1] == "fp8_w8a8" and "--per-channel" in argv
    assert "--block" not in argv
    assert (argv[argv.index("--tp") + 1], argv[argv.index("--ep") + 1]) == ("1", "8")
