from __future__ import annotations

from pathlib import Path

import pytest

from glmkit.errors import UsageError
from glmkit.host.hardware import Hardware, parse_nvidia_smi
from glmkit.knowledge.catalog import CATALOG
from glmkit.knowledge.sizing import (
    ARCH,
    GPUS,
    arch_from_config,
    decode_tpot,
    fit,
    gpu_spec,
    kv_bytes_per_token,
    plan_report,
    valid_tp,
)
from glmkit.run.doctor import (
    check_amd_devices,
    check_disk,
    check_gpus,
    check_groups,
    check_nvidia_runtime,
    check_port,
    render_lines,
)

DATA = Path(__file__).parent / "data"
MACHINES = {"8xH100": (GPUS["H100"], 8), "8xH200": (GPUS["H200"], 8),
            "4xH100": (GPUS["H100"], 4), "8xMI300X": (GPUS["MI300X"], 8)}


# Expected layouts from the published checkpoints: parameters as the model cards give
# them (GLM-4.5/4.6 355B ≈ 358B in safetensors, Air 106B, GLM-5 744B) x 2 bytes (BF16)
# or 1 (FP8), split over the smallest TP whose share fits 90 % of the card.
@pytest.mark.parametrize(("model_id", "machine", "tp", "replicas", "per_gpu_gb", "fits"), [
    ("zai-org/GLM-4.5", "8xH100", 8, 1, 358 * 2 / 8, False),  # 89.5 GB > 80 GB
    ("zai-org/GLM-4.5", "8xH200", 8, 1, 358 * 2 / 8, True),
    ("zai-org/GLM-4.5-FP8", "8xH100", 8, 1, 358 / 8, True),
    ("zai-org/GLM-4.5-FP8", "8xH200", 4, 2, 358 / 4, True),
    ("zai-org/GLM-4.6-FP8", "8xMI300X", 4, 2, 357 / 4, True),
    # Air's published config.json is shipped: its weights are counted (FP8 linears, BF16
    # embedding and lm_head: 100.65 GiB; vLLM loaded 100.85 GiB on an H200).
    ("zai-org/GLM-4.5-Air-FP8", "8xH100", 2, 4, 100.65 / 2, True),
    ("zai-org/GLM-4.5-Air-FP8", "8xH200", 1, 8, 100.65, True),
    ("zai-org/GLM-5-FP8", "8xH100", 8, 1, 744 / 8, False),  # 93 GB > 80 GB
    ("zai-org/GLM-5-FP8", "8xH200", 8, 1, 744 / 8, True),
])
def test_layouts_from_published_sizes(model_id: str, machine: str, tp: int, replicas: int,
                                      per_gpu_gb: float, fits: bool) -> None:
    gpu, count = MACHINES[machine]
    model = CATALOG[model_id]
    chosen = plan_report(model, ARCH[model.short_name.removesuffix("-FP8")], gpu, count).chosen
    assert (chosen.tp, chosen.replicas, chosen.fits) == (tp, replicas, fits)
    assert chosen.weights_per_gpu_gb == pytest.approx(per_gpu_gb, rel=0.01)


def test_glm45_bf16_on_8xh100_needs_offload_as_vllms_glm_post_says() -> None:
    model = CATALOG["zai-org/GLM-4.5"]
    result = fit(model, ARCH["GLM-4.5"], GPUS["H100"], 8, "bf16")
    assert not result.fits and result.tp == 8
    # vLLM's GLM-4.5 post serves it on 8 x H100 with --cpu-offload-gb 16 (at 0.95 util).
    assert 16 <= result.cpu_offload_gb <= 30
    assert fit(model, ARCH["GLM-4.5"], GPUS["H200"], 8, "bf16").fits


def test_air_fp8_on_8_gpus_makes_replicas() -> None:
    result = fit(CATALOG["zai-org/GLM-4.5-Air-FP8"], ARCH["GLM-4.5-Air"], GPUS["H100"], 8,
                 "fp8")
    assert (result.tp, result.replicas) == (2, 4)


def test_impossible_tp_sizes_are_refused_with_the_reason() -> None:
    assert valid_tp(ARCH["GLM-4.5"], 8) is None
    assert "not divisible by TP 5" in (valid_tp(ARCH["GLM-4.5"], 5) or "")
    with pytest.raises(UsageError, match="TP 3 is impossible.*KV heads"):
        fit(CATALOG["zai-org/GLM-4.6"], ARCH["GLM-4.6"], GPUS["MI300X"], 8, "bf16", tp=3)


def test_kv_heads_replicate_beyond_their_count() -> None:
    arch = ARCH["GLM-4.5"]
    assert kv_bytes_per_token(arch, 8) == kv_bytes_per_token(arch, 16)
    assert kv_bytes_per_token(arch, 4) == 2 * kv_bytes_per_token(arch, 8)


def test_decode_bound_grows_with_batch_and_falls_with_tp() -> None:
    model, arch = CATALOG["zai-org/GLM-4.5-FP8"], ARCH["GLM-4.5"]
    one = decode_tpot(model, arch, GPUS["H100"], 8, "fp8", 1, 9000)
    sixteen = decode_tpot(model, arch, GPUS["H100"], 8, "fp8", 16, 9000)
    assert one.distinct_experts == pytest.approx(8)
    assert sixteen.tpot_ms > one.tpot_ms
    assert decode_tpot(model, arch, GPUS["H100"], 4, "fp8", 16, 9000).tpot_ms > sixteen.tpot_ms


def test_arch_from_a_config_json() -> None:
    arch = arch_from_config({"num_hidden_layers": 46, "num_attention_heads": 96,
                             "num_key_value_heads": 8, "head_dim": 128, "hidden_size": 4096,
                             "n_routed_experts": 128, "num_experts_per_tok": 8})
    assert arch.layers == 46 and arch.experts == 128 and arch.source == "config.json"


def test_gpu_spec_lookup() -> None:
    assert gpu_spec("NVIDIA H100 80GB HBM3").bandwidth_tb_s == 3.35
    assert gpu_spec("AMD Instinct MI300X").memory_gib == 191.7
    with pytest.raises(UsageError, match="--gpu-mem"):
        gpu_spec("Mystery 9000")


def test_doctor_lines_from_real_nvidia_smi_output() -> None:
    text = (DATA / "h100-nvidia-smi-query.txt").read_text()
    hw = Hardware(vendor="cuda", gpus=parse_nvidia_smi(text), source="nvidia-smi")
    check = check_gpus(hw, text)
    assert check.status == "ok" and "1 × NVIDIA H100 80GB HBM3" in check.detail


def test_doctor_checks_that_fail_say_how_to_fix(tmp_path: Path) -> None:
    runtime = check_nvidia_runtime(["runc"], wanted=True)
    assert runtime.status == "fail" and "nvidia-ctk" in runtime.fix
    assert check_nvidia_runtime(["nvidia", "runc"], wanted=True).status == "ok"
    assert check_nvidia_runtime(["runc"], wanted=False).status == "skip"
    devices = check_amd_devices(True, root=tmp_path)
    assert [d.status for d in devices] == ["fail", "fail"]
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "kfd").write_text("")
    (tmp_path / "dev" / "dri").mkdir()
    assert [d.status for d in check_amd_devices(True, root=tmp_path)] == ["ok", "ok"]
    groups = check_groups({"video": 44}, amd=True)
    assert groups.status == "warn" and "render" in groups.detail
    assert check_port("127.0.0.1", 8000, lambda h, p: True).status == "fail"
    assert check_disk(tmp_path, 10**9).status == "fail"
    assert check_disk(tmp_path / "not" / "yet", 0.001).status == "ok"
    lines = render_lines([runtime])
    assert lines[0].startswith("[red]✗[/red] NVIDIA container runtime")
    assert "fix:" in lines[1]


def test_doctor_checks_the_model_and_image_of_the_plan_up_makes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # #29: doctor resolved the model without the environment, so a synced recipe's model
    # was unknown to it, and chose an image of its own, not the one `up` runs.
    from glmkit.host import hardware
    from glmkit.host.settings import Settings
    from glmkit.knowledge import recipes
    from glmkit.run import doctor
    from glmkit.run.deploy import plan_on_host
    from tests.unit.test_recipe_upstream import env_for, upstream_copy

    monkeypatch.setattr(recipes, "_git_commit", lambda folder: None)
    env = {**env_for(tmp_path),
           "GLMKIT_HARDWARE": str(Path(__file__).parents[1] / "cpu-host.json")}
    recipes.sync(str(upstream_copy(tmp_path)), env)
    monkeypatch.setattr(doctor, "docker_info", lambda: None)
    monkeypatch.setattr(doctor, "check_compose", lambda: doctor.Check("Compose v2", "ok", ""))
    monkeypatch.setattr(doctor, "smi_output", lambda vendor: None)
    monkeypatch.setattr(doctor, "check_token", lambda model, env: doctor.Check("t", "ok", ""))
    settings = Settings(model="zai-org/GLM-5.3-Flash", vendor="cuda", port=18099)
    checks = doctor.diagnose(settings, {"model": "flag"}, env)
    plan = plan_on_host(settings, hardware.detect(env), env).serving
    assert (checks[0].name, checks[0].status) == ("plan", "ok"), checks[0]
    assert f"image {plan.image.ref}" in [c.name for c in checks]
    # What `up` would refuse is a failed check, said as `up` says it.
    refused = doctor.diagnose(Settings(model="zai-org/GLM-4.6", vendor="cuda",
                                       gpus="0,1,2,3", port=18099), {"model": "flag"}, env)
    assert refused[0].name == "plan" and refused[0].status == "fail"
    assert "needs about 857 GB" in refused[0].detail


def test_a_detected_or_given_gpus_gib_are_not_compared_as_gb() -> None:
    from glmkit.knowledge.resolver import HardwareTarget

    # nvidia-smi's 81,559 MiB on an H100: 79.6 GiB, 85.5 GB. Compared with the recipes'
    # vram_minimum_gb as if GB, a real H100 fell short of a recipe's 80 that `--gpu h100`
    # (the label, 80 GB) met, and `plan` printed the GiB as "GB".
    detected = HardwareTarget("h100", "NVIDIA", "hopper", 8, 79.6)
    assert detected.describe() == "8 × H100 (79.6 GiB)"
    assert 85.4 < detected.gpu_gb < 85.5 and detected.vram_gb >= 8 * 80
    label = HardwareTarget("h100", "NVIDIA", "hopper", 8, 80.0, memory_given=False)
    assert label.describe() == "8 × H100 (80 GB)" and label.vram_gb == 640


def test_an_unknown_gpu_is_not_echoed_whole() -> None:
    from glmkit.knowledge.recipes import load_book
    from glmkit.knowledge.resolver import target_for
    from glmkit.knowledge.sizing import gpu_spec

    # `invoke plan --gpu <3,000 characters>` printed them all on its "one line".
    for call in (lambda: gpu_spec("h" * 3000), lambda: target_for(load_book({}), "h" * 3000, 1)):
        with pytest.raises(UsageError) as err:
            call()
        assert len(str(err.value)) < 300


def test_no_offload_is_advised_past_the_weights() -> None:
    from glmkit.knowledge.sizing import fit, gpu_spec, model_arch

    # A 0.5 GiB GPU cannot hold 8,192 tokens of KV cache with no weights at all: `plan`
    # advised --cpu-offload-gb 206 for GLM-4.5-Air's 199 GiB of weights.
    model = CATALOG["zai-org/GLM-4.5-Air"]
    arch = model_arch(model)
    assert arch is not None and arch.params is not None
    tiny = fit(model, arch, gpu_spec("GPU", 0.5), 1, "bf16")
    assert not tiny.fits and not tiny.offload_suffices
    h100 = fit(model, arch, gpu_spec("H100"), 1, "bf16")  # 135 GiB: a real answer
    assert not h100.fits and h100.offload_suffices and h100.cpu_offload_gb == 135
