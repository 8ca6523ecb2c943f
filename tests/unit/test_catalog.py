from __future__ import annotations

import pytest

from glmkit.errors import UsageError
from glmkit.knowledge.catalog import CATALOG, DEFAULT_MAX_MODEL_LEN, resolve_model

BF16_AND_FP8 = ["GLM-4.5", "GLM-4.5-Air", "GLM-4.6", "GLM-4.7", "GLM-4.5V", "GLM-4.6V",
                "GLM-5", "GLM-5.1", "GLM-5.2"]


@pytest.mark.parametrize("name", BF16_AND_FP8)
def test_families_have_bf16_and_fp8(name: str) -> None:
    assert CATALOG[f"zai-org/{name}"].precision == "bf16"
    assert CATALOG[f"zai-org/{name}-FP8"].precision == "fp8"


def test_checkpoints_zai_org_does_not_publish_are_gone() -> None:
    assert "zai-org/GLM-4.7-Flash-FP8" not in CATALOG
    assert CATALOG["zai-org/GLM-4.7-Flash"].family == "GLM-4.7"


def test_third_party_checkpoints_of_the_recipes() -> None:
    assert CATALOG["nvidia/GLM-5.2-NVFP4"].precision == "nvfp4"
    assert CATALOG["amd/GLM-5.2-MXFP4"].precision == "mxfp4"
    assert CATALOG["nvidia/GLM-4.7-NVFP4"].family == "GLM-4.7"


@pytest.mark.parametrize("model_id", [m for m in CATALOG if "/GLM-" in m])
def test_parsers_follow_the_recipes(model_id: str) -> None:
    spec = CATALOG[model_id]
    newer = spec.family.startswith(("GLM-4.7", "GLM-5"))
    assert spec.tool_parser == ("glm47" if newer else "glm45")
    assert spec.reasoning_parser == "glm45"


def test_context_limits_from_the_recipes() -> None:
    assert CATALOG["zai-org/GLM-4.5V"].max_context == 65536
    assert CATALOG["zai-org/GLM-4.6V"].max_context == 131072
    for model_id in ("zai-org/GLM-4.6", "zai-org/GLM-4.7", "zai-org/GLM-4.7-Flash",
                     "zai-org/GLM-5.1-FP8"):
        assert CATALOG[model_id].max_context == 202752
    assert CATALOG["zai-org/GLM-5.2-FP8"].max_context == 1048576


def test_minimum_vllm_and_sizes_from_the_recipes() -> None:
    assert CATALOG["zai-org/GLM-5-FP8"].min_vllm == "0.16.0"
    assert CATALOG["zai-org/GLM-5.1"].min_vllm == "0.19.1"
    assert CATALOG["zai-org/GLM-5.2-FP8"].min_vllm == "0.23.0"
    assert CATALOG["zai-org/GLM-4.6"].vram_minimum_gb == 857
    assert CATALOG["zai-org/GLM-5.2-FP8"].total_params_b == 743


def test_mtp_only_on_text_models() -> None:
    assert CATALOG["zai-org/GLM-4.5-Air"].has_mtp
    assert CATALOG["zai-org/GLM-4.7-FP8"].has_mtp
    assert not CATALOG["zai-org/GLM-4.5V"].has_mtp


def test_short_and_case_insensitive_names() -> None:
    assert resolve_model("glm-4.6").id == "zai-org/GLM-4.6"
    assert resolve_model("ZAI-ORG/GLM-4.5-AIR-FP8").id == "zai-org/GLM-4.5-Air-FP8"


def test_typo_gets_did_you_mean() -> None:
    with pytest.raises(UsageError, match="Did you mean 'zai-org/GLM-4.5-Air'"):
        resolve_model("zai-org/GLM-4.5-Aír")


def test_other_hub_repo_is_generic() -> None:
    spec = resolve_model("Qwen/Qwen3-0.6B")
    assert not spec.in_catalog
    assert spec.recipe is None and spec.tool_parser is None
    assert spec.max_context == DEFAULT_MAX_MODEL_LEN


def test_unknown_bare_name_is_an_error() -> None:
    with pytest.raises(UsageError, match="Unknown model 'llama'"):
        resolve_model("llama")


def test_local_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="no config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    spec = resolve_model(str(tmp_path))
    assert spec.local_dir == str(tmp_path)


def test_vllm_version_on_a_kit_built_image_builds_it_never_pulls() -> None:
    from glmkit.host.vendors import VENDORS
    from glmkit.knowledge.images import CPU_IMAGE, choose_image

    cpu = choose_image(resolve_model("glmkit/glm-tiny"), VENDORS["cpu"], image=CPU_IMAGE.ref,
                       vllm_version=CPU_IMAGE.vllm_version)
    assert cpu.source == "build" and cpu.build_dir == "docker/cpu"
    glm47 = resolve_model("zai-org/GLM-4.7")
    overlay = choose_image(glm47, VENDORS["cuda"], vllm_version="0.15.1")
    assert overlay.source == "build" and overlay.ref.startswith("glmkit/")
    again = choose_image(glm47, VENDORS["cuda"], image=overlay.ref, vllm_version="0.15.1")
    assert again == overlay  # its base image and transformers pin, so it can be rebuilt
    other = choose_image(glm47, VENDORS["cuda"], image="glmkit/vllm-cuda:mine",
                         vllm_version="0.33.0")
    assert other.source == "local"  # never a pull: no registry has glmkit/ images
