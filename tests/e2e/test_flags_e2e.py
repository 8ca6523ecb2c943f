"""Every rendered command goes through the argument parser of the vLLM in the CPU image."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from glmkit.knowledge.images import CPU_IMAGE
from glmkit.run.image_build import image_present

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def check_flags() -> Any:
    spec = importlib.util.spec_from_file_location("check_flags", ROOT / "scripts/check_flags.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_vllm_accepts_every_rendered_command() -> None:
    if not image_present(CPU_IMAGE.ref):
        pytest.fail(f"{CPU_IMAGE.ref} is missing: `invoke build --vendor cpu`")
    # A flag 0.32 removed must be rejected, or the check proves nothing.
    removed = ["zai-org/GLM-4.6", "--disable-log-requests"]
    results, _ = check_flags().check(extra={"removed flag": removed})
    assert results.pop("removed flag")
    assert len(results) > 150
    assert {name: error for name, error in results.items() if error} == {}
