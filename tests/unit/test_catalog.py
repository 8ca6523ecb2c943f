from __future__ import annotations

import pytest

from glmkit.catalog import CATALOG, DEFAULT_MAX_MODEL_LEN, resolve_model
from glmkit.errors import UsageError

SEED_MODELS = ["GLM-4.5", "GLM-4.5-Air", "GLM-4.6", "GLM-4.7", "GLM-4.7-Flash", "GLM-4.5V",
               "GLM-4.6V"]


@pytest.mark.parametrize("name", SEED_MODELS)
def test_every_seed_model_has_bf16_and_fp8(name: str) -> None:
    assert CATALOG[f"zai-org/{name}"].precision == "bf16"
    assert CATALOG[f"zai-org/{name}-FP8"].precision == "fp8"


@pytest.mark.parametrize("model_id", [m for m in CATALOG if m.startswith("zai-org/")])
def test_parsers_follow_the_recipes(model_id: str) -> None:
    spec = CATALOG[model_id]
    args = spec.catalog_args()
    expected_tool = "glm47" if "GLM-4.7" in model_id else "glm45"
    assert args[args.index("--tool-call-parser") + 1] == expected_tool
    assert args[args.index("--reasoning-parser") + 1] == "glm45"
    assert "--enable-auto-tool-choice" in args


def test_context_limits() -> None:
    assert CATALOG["zai-org/GLM-4.5V"].max_context == 64 * 1024
    assert CATALOG["zai-org/GLM-4.6V"].max_context == 128 * 1024
    assert CATALOG["zai-org/GLM-4.6"].max_context == 128 * 1024


def test_vision_models_get_vision_flags_and_no_root_media_path() -> None:
    for model_id in ("zai-org/GLM-4.5V-FP8", "zai-org/GLM-4.6V"):
        args = CATALOG[model_id].catalog_args()
        assert args[args.index("--mm-encoder-tp-mode"):][:2] == ["--mm-encoder-tp-mode", "data"]
        assert "--enable-expert-parallel" in args
        assert "--mm-processor-cache-type" in args
        assert "--allowed-local-media-path" not in args


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
    assert spec.catalog_args() == []
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
