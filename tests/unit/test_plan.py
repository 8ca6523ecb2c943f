from __future__ import annotations

import json

import pytest

from glmkit.errors import UsageError
from glmkit.plan.serve import CONTAINER_MEDIA

from .helpers import NO_GPU, gpus, plan_for


def flag_value(args: tuple[str, ...], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_amd_glm46_follows_the_seed_with_least_privilege() -> None:
    plan = plan_for(vendor="amd", model="zai-org/GLM-4.6")
    assert plan.vendor.name == "rocm"
    assert plan.devices == ("/dev/kfd", "/dev/dri")
    assert plan.group_add == ("44", "993")  # the host's ids, not names
    assert plan.security_opt == ("seccomp=unconfined",)
    assert plan.cap_add == ("SYS_PTRACE",)
    assert plan.ipc_host
    assert plan.environment["SAFETENSORS_FAST_GPU"] == "1"
    assert flag_value(plan.serve_args, "--tensor-parallel-size") == "8"
    assert flag_value(plan.serve_args, "--tool-call-parser") == "glm45"
    assert not plan.privileged
    assert "/dev/mem" not in plan.devices and "SYS_ADMIN" not in plan.cap_add


def test_privileged_reproduces_the_seed_options() -> None:
    plan = plan_for(vendor="rocm", model="zai-org/GLM-4.6", privileged=True)
    assert plan.privileged
    assert "/dev/mem" in plan.devices
    assert "SYS_ADMIN" in plan.cap_add
    assert any("privileged" in note for note in plan.notes)


def test_group_names_used_when_host_lacks_the_group() -> None:
    from glmkit.host.hardware import Hardware

    plan = plan_for(hw=Hardware(vendor="cpu"), vendor="rocm", model="zai-org/GLM-4.6")
    assert plan.group_add == ("video", "render")


def test_rocm_gpu_selection_uses_one_visibility_variable() -> None:
    plan = plan_for(vendor="rocm", model="zai-org/GLM-4.5-Air", gpus="0,1,2,3")
    visibility = {k for k in plan.environment if k.endswith("VISIBLE_DEVICES")}
    assert visibility == {"HIP_VISIBLE_DEVICES"}
    assert plan.environment["HIP_VISIBLE_DEVICES"] == "0,1,2,3"


def test_disable_log_requests_follows_the_image_version() -> None:
    seed_image = plan_for(vendor="rocm", model="zai-org/GLM-4.6", vllm_version="0.15.1")
    assert seed_image.image.ref == "vllm/vllm-openai-rocm:v0.15.1"
    assert "--disable-log-requests" in seed_image.serve_args
    current = plan_for(vendor="rocm", model="zai-org/GLM-4.6")
    assert current.image.ref == "vllm/vllm-openai-rocm:v0.33.0"
    assert "--disable-log-requests" not in current.serve_args
    custom = plan_for(vendor="rocm", model="zai-org/GLM-4.6", image="my/vllm:latest",
                      vllm_version="0.32.0", extra_args=("--disable-log-requests",))
    assert "--disable-log-requests" not in custom.serve_args
    assert any("dropped --disable-log-requests" in note for note in custom.notes)


def test_cuda_reserves_gpus() -> None:
    plan = plan_for(vendor="nvidia", model="zai-org/GLM-4.5-Air-FP8")
    assert plan.vendor.gpu_reservation and plan.gpu_ids is None
    assert plan.devices == ()
    picked = plan_for(vendor="cuda", model="zai-org/GLM-4.5-Air", gpus="4,5,6,7")
    assert picked.gpu_ids == ("4", "5", "6", "7")


def test_tp_larger_than_named_gpus_is_refused() -> None:
    with pytest.raises(UsageError, match="needs 8 GPUs, but --gpus 0,1 names 2"):
        plan_for(vendor="cuda", model="zai-org/GLM-4.6", gpus="0,1", tp=8)
    with pytest.raises(UsageError, match="needs about 857 GB.*2 × H200.*at TP 2"):
        plan_for(vendor="cuda", model="zai-org/GLM-4.6", gpus="0,1")


def test_tp_times_dp_checked_against_detected_gpus() -> None:
    with pytest.raises(UsageError, match="this machine has 4"):
        plan_for(hw=gpus("cuda", 4), vendor="cuda", model="zai-org/GLM-4.5-Air", tp=4, dp=2)
    ok = plan_for(hw=gpus("cuda", 8), vendor="cuda", model="zai-org/GLM-4.5-Air", dp=4)
    assert flag_value(ok.serve_args, "--data-parallel-size") == "4"
    with pytest.raises(UsageError, match="needs about 254 GB.*2 GPU"):
        plan_for(hw=gpus("cuda", 8), vendor="cuda", model="zai-org/GLM-4.5-Air", dp=2)


def test_vendor_detected_when_not_given() -> None:
    plan = plan_for(hw=gpus("cuda", 8), model="zai-org/GLM-4.6-FP8")
    assert plan.vendor.name == "cuda"
    assert any("detected" in note for note in plan.notes)
    assert plan_for().vendor.name == "cpu"


def test_cpu_default_is_the_tiny_model() -> None:
    plan = plan_for()
    assert plan.model.id == "glmkit/glm-tiny"
    assert plan.serve_args[0] == "/models/glm-tiny"
    # Room for a coding agent's system prompt (tests/e2e/test_agents_e2e.py).
    assert flag_value(plan.serve_args, "--max-model-len") == "65536"
    assert "--gpu-memory-utilization" not in plan.serve_args
    model_mount = [m for m in plan.mounts if m.target == "/models/glm-tiny"]
    assert model_mount and model_mount[0].read_only
    assert model_mount[0].source == "/tmp/glmkit-test/models/glm-tiny"


def test_max_model_len_default_and_limit() -> None:
    assert plan_for(vendor="cuda", model="zai-org/GLM-4.6").max_model_len == 65536
    with pytest.raises(UsageError, match="above zai-org/GLM-4.5V's context limit of 65536"):
        plan_for(vendor="cuda", model="zai-org/GLM-4.5V", max_model_len=131072)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("gpu_memory_utilization", 1.5, "must be in"),
    ("gpu_memory_utilization", 0.0, "must be in"),
    ("port", 70000, "must be a whole number from 1 to 65535"),
    ("tp", 0, "must be a whole number from 1"),
    ("project", "Bad Name", "Project name"),
])
def test_out_of_range_values(field: str, value: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan_for(vendor="cuda", model="zai-org/GLM-4.6", **{field: value})


def test_mtp_flags_and_refusal() -> None:
    plan = plan_for(vendor="cuda", model="zai-org/GLM-4.7-FP8", mtp=True, tp=4)
    args = plan.serve_args
    assert flag_value(args, "--speculative-config.method") == "mtp"
    assert flag_value(args, "--speculative-config.num_speculative_tokens") == "1"
    assert flag_value(args, "--tool-call-parser") == "glm47"
    with pytest.raises(UsageError, match="no MTP layers"):
        plan_for(vendor="cuda", model="zai-org/GLM-4.5V", mtp=True)


def test_media_dir_is_mounted_read_only_and_narrows_the_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan = plan_for(vendor="cuda", model="zai-org/GLM-4.5V-FP8", media_dir=str(tmp_path))
    assert flag_value(plan.serve_args, "--allowed-local-media-path") == CONTAINER_MEDIA
    media = [m for m in plan.mounts if m.target == CONTAINER_MEDIA]
    assert media[0].read_only and media[0].source == str(tmp_path)
    with pytest.raises(UsageError, match="vision models"):
        plan_for(vendor="cuda", model="zai-org/GLM-4.6", media_dir=str(tmp_path))


def test_bench_mode_and_batched_tokens() -> None:
    plan = plan_for(vendor="cuda", model="zai-org/GLM-4.6", bench_mode=True,
                    max_num_batched_tokens=32768)
    assert "--no-enable-prefix-caching" in plan.serve_args
    assert flag_value(plan.serve_args, "--max-num-batched-tokens") == "32768"


def test_extra_args_pass_through_but_cannot_take_over_owned_options() -> None:
    plan = plan_for(extra_args=("--enforce-eager", "--seed", "1"))
    assert plan.serve_args[-3:] == ("--enforce-eager", "--seed", "1")
    with pytest.raises(UsageError, match="--host from the command line is set by glmkit"):
        plan_for(extra_args=("--host", "0.0.0.0"))
    with pytest.raises(UsageError, match="--port from the command line is set by glmkit"):
        plan_for(extra_args=("--port=9000",))


def test_cpu_rejects_gpus() -> None:
    with pytest.raises(UsageError, match="cpu vendor"):
        plan_for(vendor="cpu", gpus="0")


def test_images_follow_the_recipe() -> None:
    assert plan_for(vendor="cuda", model="zai-org/GLM-4.7").image.ref == \
        "vllm/vllm-openai:v0.33.0"
    assert plan_for(vendor="cuda", model="zai-org/GLM-4.6", cuda12=True).image.ref == \
        "vllm/vllm-openai:v0.33.0-cu129"
    glm52 = plan_for(vendor="cuda", model="zai-org/GLM-5.2-FP8")
    assert glm52.image.ref == "vllm/vllm-openai:v0.23.0"
    assert plan_for(vendor="rocm", model="zai-org/GLM-5.2-FP8", gpu="mi355x").image.ref \
        .startswith("vllm/vllm-openai-rocm:nightly-")


def test_transformers_overlay_only_where_the_image_lacks_it() -> None:
    old = plan_for(vendor="cuda", model="zai-org/GLM-4.7", vllm_version="0.15.1")
    assert old.image.source == "build"
    assert old.image.build_args == {"BASE_IMAGE": "vllm/vllm-openai:v0.15.1",
                                    "TRANSFORMERS_SPEC": "transformers==5.0.0"}
    assert plan_for(vendor="cuda", model="zai-org/GLM-4.6", vllm_version="0.15.1"
                    ).image.source == "pull"


def test_an_image_older_than_the_recipe_minimum_is_refused() -> None:
    with pytest.raises(UsageError, match=r"GLM-5.2-FP8 needs vLLM ≥ 0.23.0.*0.15.1"):
        plan_for(vendor="cuda", model="zai-org/GLM-5.2-FP8", vllm_version="0.15.1")


def test_mtp_with_tools_on_an_image_before_the_fix_warns() -> None:
    old = plan_for(vendor="cuda", model="zai-org/GLM-4.6-FP8", vllm_version="0.15.1", mtp=True)
    assert any("fixed in vLLM 0.20.0" in note for note in old.notes)
    new = plan_for(vendor="cuda", model="zai-org/GLM-4.6-FP8", mtp=True)
    assert not any("fixed in vLLM" in note for note in new.notes)


def test_glm46_serves_its_full_context() -> None:
    plan = plan_for(vendor="rocm", model="zai-org/GLM-4.6", max_model_len=202752)
    assert flag_value(plan.serve_args, "--max-model-len") == "202752"
    with pytest.raises(UsageError, match="context limit of 202752"):
        plan_for(vendor="rocm", model="zai-org/GLM-4.6", max_model_len=202753)


def test_glm52_fp8_on_8_h200() -> None:
    plan = plan_for(vendor="cuda", model="zai-org/GLM-5.2-FP8", gpu="h200", gpu_count=8,
                    mtp=True)
    args = plan.serve_args
    assert flag_value(args, "--kv-cache-dtype") == "fp8"
    assert flag_value(args, "--tensor-parallel-size") == "8"
    assert json.loads(flag_value(args, "--speculative-config")) == \
        {"method": "mtp", "num_speculative_tokens": 5}
    assert flag_value(args, "--tool-call-parser") == "glm47"


def test_glm52_on_mi355x_gets_aiter() -> None:
    plan = plan_for(vendor="rocm", model="zai-org/GLM-5.2-FP8", gpu="mi355x")
    assert plan.environment["VLLM_ROCM_USE_AITER"] == "1"
    assert plan.environment["VLLM_ROCM_USE_AITER_FUSION_SHARED_EXPERTS"] == "1"
    assert flag_value(plan.serve_args, "--linear-backend") == "aiter"
    assert flag_value(plan.serve_args, "--moe-backend") == "aiter"
    assert flag_value(plan.serve_args, "--kv-cache-dtype") == "fp8_e4m3"
    mxfp4 = plan_for(vendor="rocm", model="amd/GLM-5.2-MXFP4", gpu="mi355x")
    assert mxfp4.environment["VLLM_USE_V2_MODEL_RUNNER"] == "1"
    with pytest.raises(UsageError, match="runs only on mi355x"):
        plan_for(vendor="rocm", model="amd/GLM-5.2-MXFP4", gpu="mi300x")


def test_data_parallel_is_the_recipes_dep() -> None:
    plan = plan_for(vendor="cuda", model="zai-org/GLM-4.5-FP8", gpu="h200", dp=8)
    assert plan.strategy == "single_node_dep"
    assert "--enable-expert-parallel" in plan.serve_args
    assert flag_value(plan.serve_args, "--data-parallel-size") == "8"
    tep = plan_for(vendor="cuda", model="zai-org/GLM-4.6-FP8", strategy="single_node_tep",
                   gpu="b200", gpu_count=4)
    assert "--enable-expert-parallel" in tep.serve_args
    assert flag_value(tep.serve_args, "--tensor-parallel-size") == "4"


def test_unknown_or_foreign_strategies_are_refused() -> None:
    with pytest.raises(UsageError, match="does not offer single_node_dep"):
        plan_for(vendor="cuda", model="zai-org/GLM-5-FP8", strategy="single_node_dep")
    with pytest.raises(UsageError, match="spans machines: add --nodes"):
        plan_for(vendor="cuda", model="zai-org/GLM-5-FP8", strategy="multi_node_tp")
    with pytest.raises(UsageError, match="Unknown --strategy"):
        plan_for(vendor="cuda", model="zai-org/GLM-5-FP8", strategy="fastest")


def test_rocm_recipe_env_reaches_the_container() -> None:
    plan = plan_for(vendor="rocm", model="zai-org/GLM-4.6V-FP8")
    assert plan.environment["VLLM_ROCM_USE_AITER"] == "1"
    assert "--allowed-local-media-path" not in plan.serve_args


def test_hf_cache_follows_hf_home() -> None:
    plan = plan_for(env={"HF_HOME": "/data/hf"}, vendor="cuda", model="zai-org/GLM-4.6")
    assert plan.mounts[0].source == "/data/hf"
    assert plan.environment["HF_HOME"] == "/root/.cache/huggingface"


def test_start_period_grows_with_model_size() -> None:
    small = plan_for()
    large = plan_for(vendor="cuda", model="zai-org/GLM-4.6")
    assert large.start_period_s > small.start_period_s >= 300
    assert NO_GPU.gpu_count == 0


def test_detected_gpus_fill_tp_as_the_recipes_do() -> None:
    # 127 GB of weights do not fit one 80 GB card: the recipes take the whole node.
    plan = plan_for(hw=gpus("cuda", 8), vendor="cuda", model="zai-org/GLM-4.5-Air-FP8")
    assert plan.tensor_parallel == 8
    assert any(note.startswith("plan: TP 8") for note in plan.notes)
    one_card = plan_for(hw=gpus("cuda", 8, 143771, "NVIDIA H200"), vendor="cuda",
                        model="zai-org/GLM-4.7-Flash")
    assert one_card.tensor_parallel == 1
    user_tp = plan_for(hw=gpus("cuda", 8), vendor="cuda", model="zai-org/GLM-4.5-Air-FP8", tp=4)
    assert user_tp.tensor_parallel == 4


def test_what_cannot_fit_is_refused_before_anything_starts() -> None:
    with pytest.raises(UsageError, match="needs about 859 GB.*8 × H100.*--cpu-offload-gb"):
        plan_for(hw=gpus("cuda", 8), vendor="cuda", model="zai-org/GLM-4.5")
    offloaded = plan_for(hw=gpus("cuda", 8), vendor="cuda", model="zai-org/GLM-4.5",
                         extra_args=("--cpu-offload-gb", "24"))
    assert offloaded.tensor_parallel == 8


def test_quantized_checkpoints_get_the_kv_fit_too() -> None:
    # The fit check finds a checkpoint's architecture by its family, whatever the
    # quantization suffix: the NVFP4 one is sized like the FP8 one.
    plan = plan_for(vendor="cuda", model="nvidia/GLM-5.2-NVFP4", gpu="b200")
    assert any(note.startswith("plan: TP 8") for note in plan.notes)


@pytest.mark.parametrize(("host", "url"), [("::1", "http://[::1]:8000"),
                                           ("::", "http://[::1]:8000"),
                                           ("0.0.0.0", "http://127.0.0.1:8000"),
                                           ("localhost", "http://127.0.0.1:8000"),
                                           ("fd00::5", "http://[fd00::5]:8000")])
def test_base_url_brackets_ipv6(host: str, url: str) -> None:
    assert plan_for(vendor="cpu", host=host).base_url == url


def test_loopback_is_one_list() -> None:
    from glmkit.endpoints import is_loopback
    from glmkit.host.credentials import container_secrets

    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert is_loopback(host)
        assert container_secrets({"HF_TOKEN": ""}, host, None) == {}
    for host in ("0.0.0.0", "::", "10.0.0.5", "fd00::5"):
        assert not is_loopback(host)


def test_gpu_memory_and_count_size_an_unnamed_gpu() -> None:
    from glmkit.plan.advice import PlanRequest, advise

    advice = advise(PlanRequest(model="zai-org/GLM-4.5-Air-FP8", vendor="cuda", gpu_mem=80,
                                gpu_count=8), NO_GPU, {"HF_HUB_OFFLINE": "1"})
    assert "8 × " in advice.title and "80 GiB" in advice.title
    plan = plan_for(vendor="cuda", model="zai-org/GLM-4.5-Air-FP8", gpu_mem=80, gpu_count=4)
    assert plan.target.gpu_count == 4 and plan.target.gpu_memory_gb == 80


def test_plan_honours_vendor() -> None:
    from glmkit.plan.advice import PlanRequest, advise

    rocm = advise(PlanRequest(model="zai-org/GLM-4.6-FP8", vendor="amd"), NO_GPU,
                  {"HF_HUB_OFFLINE": "1"})
    cuda = advise(PlanRequest(model="zai-org/GLM-4.6-FP8", vendor="nvidia"), NO_GPU,
                  {"HF_HUB_OFFLINE": "1"})
    assert "MI300X" in rocm.title and "H200" in cuda.title


def test_the_tiny_model_serves_with_mtp_on_request() -> None:
    args = plan_for(vendor="cpu", mtp=True).serve_args
    at = args.index("--speculative-config.method")
    assert args[at:at + 4] == ("--speculative-config.method", "mtp",
                               "--speculative-config.num_speculative_tokens", "1")
    assert "--speculative-config.method" not in plan_for(vendor="cpu").serve_args
