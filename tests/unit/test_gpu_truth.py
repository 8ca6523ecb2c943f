"""The plan against what vLLM did on a real H200 (knowledge/gpu_calibration.json, written
from scripts/gpu_truth.py runs), and the GPU-truth script's own parts."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from glmkit.knowledge.catalog import CATALOG
from glmkit.knowledge.gpu_model import calibration, moe_config_name, vllm_ships_moe_config
from glmkit.knowledge.sizing import (
    ARCH,
    GPUS,
    decode_tpot,
    fit,
    gpu_from_hardware,
    gpu_spec,
    weights_per_gpu_gib,
    with_mtp,
)

ROOT = Path(__file__).parents[2]
H200 = gpu_from_hardware("NVIDIA H200", calibration()["measured"]["memory_mib"])
BENCH_CONTEXT = 1100  # 1000 prompt tokens + half of the 200 generated, on average
MEMORY_POINTS = [p for p in calibration()["points"] if "kv_tokens" in p]
TPOT_POINTS = [(p, int(c), ms) for p in calibration()["points"]
               if not p.get("mtp") and not p.get("tuned_moe")
               for c, ms in p.get("median_tpot_ms", {}).items()]


def _arch(model_id: str) -> Any:
    return ARCH["GLM-4.7-Flash" if "Flash" in model_id else "GLM-4.5-Air"]


@pytest.mark.parametrize("point", MEMORY_POINTS,
                         ids=[f"{p['model']}{'-mtp' if p['mtp'] else ''}"
                              for p in MEMORY_POINTS])
def test_kv_tokens_within_5_percent_of_vllm_on_the_h200(point: dict[str, Any]) -> None:
    model = CATALOG[point["model"]]
    planned = fit(model, _arch(point["model"]), H200, 1, model.precision,
                  point["utilization"], 1, 2.0, point["mtp"])
    assert planned.kv_tokens == pytest.approx(point["kv_tokens"], rel=0.05)
    assert planned.kv_budget_per_gpu_gb == pytest.approx(point["kv_cache_gib"], rel=0.05)


@pytest.mark.parametrize("point", MEMORY_POINTS,
                         ids=[p["model"] + ("-mtp" if p["mtp"] else "") for p in MEMORY_POINTS])
def test_counted_weights_within_1_percent_of_what_vllm_loaded(point: dict[str, Any]) -> None:
    model = CATALOG[point["model"]]
    arch = _arch(point["model"])
    weights = weights_per_gpu_gib(with_mtp(arch) if point["mtp"] else arch, model.precision, 1)
    assert weights == pytest.approx(point["weights_gib"], rel=0.01)


@pytest.mark.parametrize(("point", "concurrency", "measured"), TPOT_POINTS,
                         ids=[f"c{c}" for _, c, _ in TPOT_POINTS])
def test_tpot_within_25_percent_at_each_measured_concurrency(
        point: dict[str, Any], concurrency: int, measured: float) -> None:
    model = CATALOG[point["model"]]
    estimate = decode_tpot(model, _arch(point["model"]), H200, 1, model.precision,
                           concurrency, BENCH_CONTEXT)
    assert estimate.calibrated
    assert estimate.tpot_ms == pytest.approx(measured, rel=0.25)
    assert estimate.bound_ms < measured  # the bound stays a bound


def test_active_parameters_are_counted_not_the_recipes_rounded_figure() -> None:
    params = ARCH["GLM-4.7-Flash"].params
    assert params is not None
    assert params.active_b == pytest.approx(3.57, abs=0.02)  # the recipe says 3B
    assert params.total_b == pytest.approx(29.94, abs=0.02)


def test_a_counted_model_that_does_not_fit_offloads_what_it_lacks() -> None:
    """fit computed the flat figure, then replaced it with vLLM's accounting but took the
    budget as weights + KV (KV clamped at 0): GLM-4.5-Air in BF16 (199 GiB) on one H100
    was told --cpu-offload-gb 2. It lacks ~135 GiB."""
    from glmkit.knowledge.gpu_model import vllm_memory
    from glmkit.knowledge.sizing import kv_bytes_per_token

    model, arch = CATALOG["zai-org/GLM-4.5-Air"], ARCH["GLM-4.5-Air"]
    h100 = gpu_spec("h100")
    planned = fit(model, arch, h100, 1, "bf16", 0.9, 1)
    weights = weights_per_gpu_gib(arch, "bf16", 1)
    assert weights is not None and not planned.fits
    # What is left with that much offloaded holds the least KV cache worth serving.
    per_token = kv_bytes_per_token(arch, 1)
    left = vllm_memory(h100.memory_gib, 0.9, weights - planned.cpu_offload_gb, arch.hidden,
                       arch.vocab, per_token)
    assert left.kv_tokens >= 8192
    less = vllm_memory(h100.memory_gib, 0.9, weights - planned.cpu_offload_gb + 1,
                       arch.hidden, arch.vocab, per_token)
    assert less.kv_tokens < 8192  # and not more than it takes
    assert planned.unit == "GiB"  # vLLM's accounting, as `plan` labels it


@pytest.mark.parametrize("point", MEMORY_POINTS,
                         ids=[p["model"] + ("-mtp" if p["mtp"] else "") for p in MEMORY_POINTS])
def test_the_flat_overhead_covers_what_vllm_kept_on_the_h200(point: dict[str, Any]) -> None:
    """Models without a count keep OVERHEAD_GB beside weights and KV: a guess, checked
    against what vLLM held beyond them at the same utilization. With MTP it held more
    (its activation peak doubles), as sizing's comment says."""
    from glmkit.knowledge.gpu_model import GIB
    from glmkit.knowledge.sizing import OVERHEAD_GB

    kept_gb = (H200.memory_gib * point["utilization"] - point["weights_gib"]
               - point["kv_cache_gib"]) * GIB / 1e9
    assert kept_gb > 5
    assert (kept_gb <= OVERHEAD_GB) == (not point["mtp"])


def test_the_rendered_health_check_waits_longer_than_the_h200_took(tmp_path: Path) -> None:
    """start_period covers the measured start (145 s) without the old 455 s guess."""
    from glmkit.knowledge.gpu_model import start_period_s

    measured = next(p for p in MEMORY_POINTS if not p["mtp"] and "Flash" in p["model"])
    arch = ARCH["GLM-4.7-Flash"]
    weights = weights_per_gpu_gib(arch, "bf16", 1)
    assert weights is not None
    grace = start_period_s(weights, block_fp8=False)
    assert measured["time_to_healthy_s"] < grace < 455
    assert start_period_s(weights, block_fp8=True) > grace + 270  # Air-FP8 was not up at 420 s


def test_plan_says_when_vllm_ships_no_tuned_moe_config() -> None:
    from glmkit.knowledge.quant_format import BF16

    name = moe_config_name(64, 1536, "H200", BF16)
    assert name == "E=64,N=1536,device_name=NVIDIA_H200.json"
    assert not vllm_ships_moe_config(name)  # vLLM warned "Using default MoE config"
    shipped = moe_config_name(128, 1024, "H200", BF16)
    assert shipped is not None and vllm_ships_moe_config(shipped)
    assert moe_config_name(64, 1536, "Unknown", BF16) is None


def test_invoke_plan_prints_kv_tokens_concurrency_and_the_moe_row() -> None:
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU

    rows = dict(advise(PlanRequest(model="zai-org/GLM-4.7-Flash", gpu="H200", gpu_count=1),
                       NO_GPU, {"HF_HUB_OFFLINE": "1"}).rows)
    assert "tokens" in rows["KV cache"] and "maximum concurrency" in rows["KV cache"]
    assert "no tuned config" in rows["MoE kernels"]
    assert "3.57B active" in rows["parameters"]


def test_a_named_h200_is_planned_as_the_card_reports_its_memory() -> None:
    """`--gpu h200` took the label's 141 as GiB, the card reports 140.4 (143,771 MiB):
    0.8 % more KV tokens than a detected H200 got, and more than vLLM found."""
    from glmkit.plan.advice import PlanRequest, advise

    from .helpers import NO_GPU, gpus

    env = {"HF_HUB_OFFLINE": "1"}
    request = PlanRequest(model="zai-org/GLM-4.7-Flash", gpu_count=1)
    named = advise(replace(request, gpu="h200"), NO_GPU, env)
    detected = advise(request, gpus("cuda", 1, calibration()["measured"]["memory_mib"],
                                    "NVIDIA H200"), env)
    assert dict(named.rows)["KV cache"] == dict(detected.rows)["KV cache"]
    assert "(140.4 GiB, 4.8 TB/s)" in named.title
    assert dict(named.rows)["GPU memory"] == "140.4 GiB per GPU: 143,771 MiB reported by " \
        "nvidia-smi on the H200 of gpu_calibration.json"  # where the number comes from
    assert dict(detected.rows)["GPU memory"] == "140.4 GiB per GPU: 143,771 MiB reported " \
        "by this host's GPU"
    given = advise(replace(request, gpu="mystery", gpu_mem=96.0), NO_GPU, env)
    assert dict(given.rows)["GPU memory"] == "96 GiB per GPU: as given (--gpu-mem)"
    measured = next(p for p in MEMORY_POINTS if not p["mtp"] and "Flash" in p["model"])
    model = CATALOG["zai-org/GLM-4.7-Flash"]
    planned = fit(model, ARCH["GLM-4.7-Flash"], gpu_spec("h200"), 1, "bf16", 0.9, 1)
    assert planned.kv_tokens == pytest.approx(measured["kv_tokens"], rel=0.005)


def test_each_cards_memory_is_what_it_reports_with_its_source() -> None:
    """Labels are no single unit ("80 GB" H100: 79.6 GiB; "288 GB" B300: 268.6 GiB), so
    the table holds reported memory and says where each figure comes from."""
    for name, spec in GPUS.items():
        assert "MiB reported by" in spec.memory_source or \
            spec.memory_source.startswith("the data sheet's"), name
    assert GPUS["H200"].memory_gib == round(calibration()["measured"]["memory_mib"] / 1024, 1)
    assert GPUS["H100"].memory_gib == 79.6 and GPUS["B300"].memory_gib == 268.6
    assert GPUS["MI300X"].memory_gib == 191.7 and GPUS["MI355X"].memory_gib == 288.0


# --- scripts/gpu_truth.py ---------------------------------------------------------------

def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_truth", ROOT / "scripts" / "gpu_truth.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# vLLM 0.26.0's own lines from the H200 run (abridged prefixes).
VLLM_LINES = (Path(__file__).parent / "data" / "vllm-0.26-h200-flash.log").read_text()


def test_the_script_reads_vllms_memory_accounting() -> None:
    facts = _script().memory_facts(VLLM_LINES)
    assert facts["kv_tokens"] == 1295664 and facts["max_concurrency"] == 19.77
    assert facts["activation_peak_gib"] == 2.53 and facts["cuda_graph_gib"] == 2.16
    assert facts["requested_gib"] == 125.82 and facts["default_moe_config"] is True


def test_the_script_serves_the_rendered_argv_with_two_changes(tmp_path: Path) -> None:
    layout = {"serve_args": ["--served-model-name", "zai-org/GLM-4.7-Flash", "--host",
                             "0.0.0.0", "--port", "8000", "--tool-call-parser", "glm47"]}
    argv = _script().serve_argv(layout, tmp_path, 8123)
    assert argv[0] == str(tmp_path) and argv[-2:] == ["--load-format", "dummy"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "8123"
    assert "--tool-call-parser" in argv  # nothing else changed


def test_points_are_stored_as_they_finish_with_their_provenance(tmp_path: Path) -> None:
    """The MTP run's files were lost when its step hit a timeout after its last point:
    the run now exists before the first point, and each point is written when done."""
    import argparse

    from glmkit.measure.results import list_runs

    script = _script()
    layout = {"model": "zai-org/GLM-4.7-Flash", "mtp": False, "glmkit_commit": "abc",
              "serve_args": ["--max-model-len", "65536"]}
    provenance = {"gpu": "NVIDIA H200", "memory_mib": 143771, "driver": "580", "gpu_count": 1,
                  "vllm": "0.26.0", "weights": "dummy", "routing": "uniform_random"}
    stored = script.create_store(argparse.Namespace(results=str(tmp_path), tag="t"), layout,
                                 provenance, [1, 16])
    stored.save_point(1, {"median_tpot_ms": 5.2, "completed": 10, "failed": 0})
    (run,) = list_runs(tmp_path)
    assert run.meta.provenance is not None and run.meta.provenance["weights"] == "dummy"
    assert list(run.points()) == [1] and run.missing() == [16]
    assert json.loads((run.path / "meta.json").read_text())["provenance"]["routing"] == \
        "uniform_random"


def test_the_moe_tuner_only_offers_tiles_that_fit_shared_memory() -> None:
    from glmkit.measure.moe_tuner import SHARED_MEMORY_BYTES, candidates

    for dtype_bytes in (1, 2):
        pool = candidates(dtype_bytes, seed=0, count=500)
        assert pool and all((c["BLOCK_SIZE_M"] * c["BLOCK_SIZE_K"] + c["BLOCK_SIZE_K"]
                             * c["BLOCK_SIZE_N"]) * dtype_bytes * c["num_stages"]
                            <= SHARED_MEMORY_BYTES for c in pool)
    assert candidates(2, seed=1) == candidates(2, seed=1)  # a rerun tries the same tiles


def test_tune_moe_is_refused_on_cpu_with_a_reason() -> None:
    from glmkit.measure.moe_tune import refusal

    assert refusal("cpu") is not None and "GPU" in (refusal("cpu") or "")
    assert refusal("cuda") is None


def test_gpu_plans_name_the_tuned_moe_folder_and_cpu_plans_do_not() -> None:
    from glmkit.plan.serve import CONTAINER_MOE_CONFIGS, CONTAINER_VLLM_CACHE

    from .helpers import gpus, plan_for

    nvidia = plan_for(gpus("nvidia", 1, 143771), vendor="nvidia",
                      model="zai-org/GLM-4.7-Flash")
    assert nvidia.environment["VLLM_TUNED_CONFIG_FOLDER"] == CONTAINER_MOE_CONFIGS
    # on the kit's cache volume, where `invoke tune-moe` writes
    assert CONTAINER_MOE_CONFIGS.startswith(CONTAINER_VLLM_CACHE + "/")
    assert any(m.target == CONTAINER_VLLM_CACHE for m in nvidia.mounts)
    assert nvidia.start_period_s == 230  # counted weights, not 300 + 5 x 31B = 455
    cpu = plan_for(vendor="cpu")
    assert "VLLM_TUNED_CONFIG_FOLDER" not in cpu.environment


@pytest.mark.parametrize("budget", [None, float("nan"), 5.0, 1e9])
def test_tune_moe_refuses_a_budget_out_of_range_before_docker(budget: float | None) -> None:
    """`invoke tune-moe --budget ""` was a TypeError traceback (review)."""
    from glmkit.errors import UsageError
    from glmkit.measure.moe_tune import tune_moe

    with pytest.raises(UsageError, match="--budget"):
        tune_moe("glmkit", budget)


def test_the_tuners_result_is_its_last_json_line() -> None:
    from glmkit.errors import UsageError
    from glmkit.measure.moe_tune import tuner_summary

    line = json.dumps({"file": "a", "installed": "none", "baseline": "default",
                       "candidates_tried": 0, "batch_sizes": {}})
    assert tuner_summary(f"noise\n{line}\n{{not json\n").file == "a"
    with pytest.raises(UsageError, match="no result"):
        tuner_summary("Traceback ...\n{broken")


@pytest.mark.parametrize("argv", [["run", "/nonexistent"], ["tune-moe", "/nonexistent",
                                                            "--out", "x"],
                                  ["reference", "/tmp", "--name", "x"]])
def test_the_script_says_one_line_for_a_bad_path(argv: list[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """These were FileNotFoundError tracebacks (review)."""
    monkeypatch.setattr("sys.argv", ["gpu_truth.py", *argv])
    with pytest.raises(SystemExit) as exited:
        _script().main()
    message = exited.value.code
    assert isinstance(message, str) and "\n" not in message and argv[1] in message


def test_prepare_reads_the_hf_caches_config_through_the_kits_bounded_reader(
        tmp_path: Path) -> None:
    """A FIFO as the cached config.json was read with read_text (a hang); now the kit's
    bounded reader passes it over and the step says what is missing."""
    import os

    script = _script()
    snap = tmp_path / "hub" / "models--org--Other" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    os.mkfifo(snap / "config.json")
    with pytest.raises(SystemExit, match="No config.json for org/Other"):
        script.published_config("org/Other", tmp_path)
    (snap / "config.json").unlink()
    (snap / "config.json").write_text('{"num_hidden_layers": 2}')
    assert script.published_config("org/Other", tmp_path) == {"num_hidden_layers": 2}


HELD_OUT = calibration()["held_out"]


@pytest.mark.parametrize("point", HELD_OUT, ids=[p["gpu"] for p in HELD_OUT])
def test_the_plan_predicts_a_gpu_it_was_not_fitted_on(point: dict[str, Any]) -> None:
    """The fitted points above only catch a formula that drifts; a held-out measurement on
    another card (an H100, its tuned MoE kernels, 42 % less bandwidth) tests the model."""
    model = CATALOG[point["model"]]
    arch = _arch(point["model"])
    card = gpu_from_hardware(point["gpu"], point["memory_mib"])
    planned = fit(model, arch, card, 1, model.precision, point["utilization"], 1, 2.0,
                  point["mtp"])
    assert planned.kv_tokens == pytest.approx(point["kv_tokens"], rel=0.05)
    for concurrency, measured in point["median_tpot_ms"].items():
        estimate = decode_tpot(model, arch, card, 1, model.precision, int(concurrency),
                               BENCH_CONTEXT)
        assert estimate.tpot_ms == pytest.approx(measured, rel=0.25)
        assert estimate.bound_ms < measured
