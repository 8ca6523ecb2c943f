"""Recipe sync against the real git: a clone that fails never echoes the token its origin
URL carries."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from glmkit.errors import EnvironmentProblem
from glmkit.knowledge.recipes import sync
from tests.unit.test_recipe_trust import env_for

# --- from tests/unit/test_recipe_trust.py -------------------------------------------------

def test_a_failed_clone_does_not_echo_the_token(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    origin = "http://someone:sekrit-token-123@127.0.0.1:9/recipes.git"
    with pytest.raises(EnvironmentProblem) as caught:
        sync(origin, env_for(tmp_path))
    assert "sekrit" not in str(caught.value)
    assert "127.0.0.1:9/recipes.git" in str(caught.value)
