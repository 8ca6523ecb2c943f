"""The recipe book: sync, diff and bad input. (Parity with the recipe site's synthesizer,
which runs under Node: tests/integration/test_recipe_site_parity.py.)"""

from __future__ import annotations

import functools
import http.server
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from glmkit.errors import EnvironmentProblem, UsageError
from glmkit.knowledge import recipes
from glmkit.knowledge.catalog import resolve_model
from glmkit.knowledge.recipes import diff, load_book, sync
from glmkit.vllm_args import dedupe_flags

from .helpers import plan_for


@pytest.fixture(autouse=True)
def no_git_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A synced folder here is never a git checkout: its commit is None without asking git
    (the unit layer starts no program)."""
    monkeypatch.setattr(recipes, "_git_commit", lambda folder: None)


ROOT = Path(__file__).resolve().parents[2]
def test_last_flag_wins() -> None:
    args = ["--kv-cache-dtype", "fp8_e4m3", "--trust-remote-code", "--kv-cache-dtype", "fp8",
            "--trust-remote-code"]
    assert dedupe_flags(args) == ["--kv-cache-dtype", "fp8", "--trust-remote-code"]


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"GLMKIT_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}


def recipes_folder(tmp_path: Path) -> Path:
    """A recipes checkout made from the built-in data, plus a GLM-5.3 glmkit never shipped."""
    from glmkit.knowledge.recipes import BUILTIN_ROOT

    folder = tmp_path / "recipes"
    shutil.copytree(BUILTIN_ROOT, folder, ignore=shutil.ignore_patterns("glmkit"))
    data = yaml.safe_load((folder / "models/zai-org/GLM-5.2.yaml").read_text())
    data["model"].update(model_id="zai-org/GLM-5.3", min_vllm_version="0.29.0")
    data["model"].pop("docker_image")
    data["variants"] = {"default": {"model_id": "zai-org/GLM-5.3-FP8", "precision": "fp8",
                                    "vram_minimum_gb": 900}}
    (folder / "models/zai-org/GLM-5.3.yaml").write_text(yaml.safe_dump(data))
    return folder


def test_a_synced_new_model_serves_without_a_release(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    with pytest.raises(UsageError, match="Did you mean 'zai-org/GLM-5.2-FP8'"):
        resolve_model("zai-org/GLM-5.3-FP8", env)  # unknown before the sync
    result = sync(str(recipes_folder(tmp_path)), env)
    assert "zai-org/GLM-5.3" in result.recipes
    spec = resolve_model("zai-org/GLM-5.3-FP8", env)
    assert spec.recipe is not None and spec.min_vllm == "0.29.0"
    assert spec.source.startswith("synced")
    plan = plan_for(env=env, vendor="cuda", model="zai-org/GLM-5.3-FP8", gpu="b200")
    assert "--tool-call-parser" in plan.serve_args
    # glmkit's own additions to a family survive a sync whose recipe lacks them.
    assert resolve_model("zai-org/GLM-4.5-Air-FP8", env).source.startswith("synced")
    changes = diff(env)
    assert any(c.recipe == "zai-org/GLM-5.3" and c.kind == "added" for c in changes)


def test_a_broken_synced_file_is_skipped_and_the_built_in_one_serves(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    sync(str(recipes_folder(tmp_path)), env)
    (Path(env["GLMKIT_HOME"]) / "recipes/models/zai-org/GLM-4.6.yaml").write_text("model: [")
    (Path(env["GLMKIT_HOME"]) / "recipes/SYNCED.json").touch()
    book = load_book(env)
    assert any("GLM-4.6.yaml" in note for note in book.notes)
    assert book.recipes["zai-org/GLM-4.6"].source.kind == "built-in"
    assert plan_for(env=env, vendor="rocm", model="zai-org/GLM-4.6").tensor_parallel == 8


def test_sync_refuses_what_is_not_a_recipes_checkout(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    with pytest.raises(UsageError, match="no models/ folder"):
        sync(str(tmp_path), env)
    with pytest.raises(UsageError, match="neither a folder nor a URL"):
        sync("no-such-thing", env)
    with pytest.raises(UsageError, match="run `invoke recipes sync` first"):
        diff(env)


def test_sync_offline_is_a_clear_error(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    with pytest.raises(EnvironmentProblem, match="built-in recipes still serve"):
        sync("http://127.0.0.1:9/recipes.tar.gz", env)
    assert not (Path(env["GLMKIT_HOME"]) / "recipes").exists()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A .tar.gz of a recipes checkout, served on loopback like codeload serves one."""
    folder = recipes_folder(tmp_path)
    www = tmp_path / "www"
    www.mkdir()
    with tarfile.open(www / "recipes-main.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="recipes-main")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/recipes-main.tar.gz"
    finally:
        server.shutdown()


def test_sync_from_a_tarball_url(served: str, tmp_path: Path) -> None:
    env = env_for(tmp_path)
    result = sync(served, env)
    assert "zai-org/GLM-5.3" in result.recipes
    assert load_book(env).sources[-1].origin == served


def test_flag_value_reads_the_last_value_in_either_form() -> None:
    from glmkit.vllm_args import flag_value

    args = ("m", "--tensor-parallel-size", "8", "--kv-cache-dtype=fp8", "--tool-call-parser")
    assert flag_value(args, "--tensor-parallel-size") == "8"
    assert flag_value(args, "--kv-cache-dtype") == "fp8"
    assert flag_value(args, "--tool-call-parser") is None  # no value follows
    assert flag_value((*args, "--tensor-parallel-size=4"), "--tensor-parallel-size") == "4"
    assert flag_value(args, "--max-model-len") is None
