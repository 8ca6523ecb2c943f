"""Parity with the recipe site: every command glmkit renders contains what the site's own
synthesizer (Node, over a vllm-project/recipes snapshot at ../shared/recipes) emits."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


# --- from tests/unit/test_recipes.py ------------------------------------------------------

SNAPSHOT = ROOT.parent / "shared" / "recipes"
needs_snapshot = pytest.mark.skipif(not (SNAPSHOT / "models").is_dir(),
                                    reason="no vllm-project/recipes snapshot at ../shared/recipes")


def parity_module() -> Any:
    spec = importlib.util.spec_from_file_location("recipe_parity",
                                                  ROOT / "scripts" / "recipe_parity.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


@needs_snapshot
@pytest.mark.skipif(shutil.which("node") is None, reason="Node is not installed (the oracle)")
def test_rendered_commands_contain_what_the_recipe_site_emits() -> None:
    outcomes = parity_module().compare(SNAPSHOT)
    mismatches = [(o.case, o.detail) for o in outcomes if o.status == "mismatch"]
    assert mismatches == []
    matched = sum(o.status == "match" for o in outcomes)
    assert matched >= 300  # 8 recipes, their variants, 5 GPUs, strategies, MTP on/off
    refused = {o.detail for o in outcomes if o.status == "refused"}
    assert refused <= {"precision the GPU cannot run", "checkpoint limited to other GPUs",
                       "larger than one node (vram_minimum_gb)"}


@needs_snapshot
@pytest.mark.skipif(shutil.which("node") is None, reason="Node is not installed (the oracle)")
def test_upstreams_newest_glm_files_render_what_the_recipe_site_emits(tmp_path: Path) -> None:
    """The same over upstream's newest GLM files (tests/data/recipes-upstream: GLM-5.3,
    GLM-5.3-Flash), with the snapshot's synthesizer as the oracle."""
    folder = tmp_path / "recipes"
    shutil.copytree(ROOT / "tests" / "data" / "recipes-upstream", folder)
    shutil.copytree(SNAPSHOT / "src", folder / "src")
    outcomes = parity_module().compare(folder)
    assert [(o.case, o.detail) for o in outcomes if o.status == "mismatch"] == []
    flash = [o for o in outcomes if o.case.recipe == "GLM-5.3-Flash" and o.status == "match"]
    assert len(flash) >= 30
