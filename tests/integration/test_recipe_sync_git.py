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


def test_a_folder_inside_another_repository_has_no_recipes_commit(tmp_path: Path) -> None:
    """`--from tests/data/recipes-upstream` is a folder of glmkit's own checkout: its sync
    names no commit rather than glmkit's HEAD. A checkout of its own names its HEAD."""
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    upstream = Path(__file__).resolve().parents[1] / "data" / "recipes-upstream"
    outer = tmp_path / "outer"
    shutil.copytree(upstream, outer / "vendored" / "recipes")

    def git(*args: str, cwd: Path) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              cwd=cwd, check=True, capture_output=True, text=True).stdout

    git("init", "-q", cwd=outer)
    git("add", "-A", cwd=outer)
    git("commit", "-qm", "outer", cwd=outer)
    assert sync(str(outer / "vendored" / "recipes"), env_for(tmp_path)).commit is None
    own = outer / "vendored" / "recipes"
    git("init", "-q", cwd=own)
    git("add", "-A", cwd=own)
    git("commit", "-qm", "recipes", cwd=own)
    head = git("rev-parse", "HEAD", cwd=own).strip()
    assert sync(str(own), env_for(tmp_path / "again")).commit == head
