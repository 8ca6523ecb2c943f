"""A synced recipe is data from the internet (issue #17, items 5 and 6).

Each hostile file is either refused at sync or skipped at load with a one-line note, and
the built-in recipes keep serving; sync never follows a link out of the source, never
hands git an option, and never stores or shows the credentials an origin URL carries.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glmkit.errors import EnvironmentProblem, GlmkitError, UsageError
from glmkit.knowledge import recipes
from glmkit.knowledge.catalog import resolve_model, spec_from_recipe
from glmkit.knowledge.recipes import BUILTIN_ROOT, load_book, sync
from glmkit.knowledge.resolver import default_features, resolve, target_for

ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
model: {model_id: zai-org/GLM-4.6, context_length: 1}
features: {tool_calling: {args: [*i]}}
"""


@pytest.fixture(autouse=True)
def no_git_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A synced folder here is never a git checkout: its commit is None without asking git
    (the unit layer starts no program)."""
    monkeypatch.setattr(recipes, "_git_commit", lambda folder: None)


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"GLMKIT_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf")}


def checkout(tmp_path: Path) -> Path:
    """A recipes checkout made from the built-in data (what upstream looks like)."""
    folder = tmp_path / "recipes"
    if not folder.exists():
        shutil.copytree(BUILTIN_ROOT, folder, ignore=shutil.ignore_patterns("glmkit"))
    return folder


def glm46() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((BUILTIN_ROOT / "models/zai-org/GLM-4.6.yaml")
                                          .read_text())
    return data


def synced(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment and models/zai-org folder of a good sync."""
    env = env_for(tmp_path)
    sync(str(checkout(tmp_path)), env)
    return env, Path(env["GLMKIT_HOME"]) / "recipes/models/zai-org"


def plant(env: dict[str, str], relative: str, text: str | None = None) -> Path:
    """Put a file into the synced copy (as a later sync or a hand edit would) and mark the
    copy changed, so load_book reads it again."""
    root = Path(env["GLMKIT_HOME"]) / "recipes"
    path = root / relative
    if text is not None:
        path.write_text(text)
    stamp = root / "SYNCED.json"
    os.utime(stamp, ns=(time.time_ns(), stamp.stat().st_mtime_ns + 1_000_000))
    return path


def skipped(book: recipes.RecipeBook, name: str) -> str:
    """The one note about `name`; it must be a single line."""
    notes = [note for note in book.notes if name in note]
    assert len(notes) == 1, book.notes
    assert "\n" not in notes[0] and notes[0].startswith("skipped ")
    return notes[0]


def serves_builtin(env: dict[str, str], key: str = "zai-org/GLM-4.6") -> None:
    book = load_book(env)
    assert book.recipes[key].source.kind == "built-in"
    assert resolve_model("zai-org/GLM-4.6", env).max_context == 202752


# --- item 5: a bad synced file is skipped, the built-in data serves -----------------------

def test_an_alias_bomb_is_skipped_at_once(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    assert len(ALIAS_BOMB) < 700
    plant(env, "models/zai-org/GLM-4.6.yaml", ALIAS_BOMB)
    started = time.monotonic()
    book = load_book(env)
    assert "YAML aliases" in skipped(book, "GLM-4.6.yaml")
    serves_builtin(env)
    assert time.monotonic() - started < 2  # the bomb expands to 9^9 words otherwise


def test_an_alias_bomb_is_refused_at_sync(tmp_path: Path) -> None:
    folder = checkout(tmp_path)
    (folder / "models/zai-org/GLM-4.6.yaml").write_text(ALIAS_BOMB)
    result = sync(str(folder), env_for(tmp_path))
    assert "zai-org/GLM-4.6" not in result.recipes
    assert any("GLM-4.6.yaml" in n and "YAML aliases" in n for n in result.notes)


def test_a_few_aliases_that_expand_past_the_budget_are_refused(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    words = ", ".join(["w"] * 2500)
    bomb = f"a: &a [{words}]\nb: [*a, *a, *a, *a, *a, *a, *a, *a]\n" \
           "model: {model_id: x}\nfeatures: {tool_calling: {}}\n"
    plant(env, "models/zai-org/GLM-4.6.yaml", bomb)
    assert "values once YAML aliases are expanded" in skipped(load_book(env), "GLM-4.6.yaml")


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    plant(env, "models/zai-org/GLM-4.6.yaml",
          "a: &a [*a]\nmodel: {model_id: x}\nfeatures: {tool_calling: {}}\n")
    assert "contains itself" in skipped(load_book(env), "GLM-4.6.yaml")


def test_deep_nesting_is_refused_before_the_parser_recurses(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    plant(env, "models/zai-org/GLM-4.6.yaml", "model: " + "[" * 50_000 + "]" * 50_000)
    assert "nested deeper" in skipped(load_book(env), "GLM-4.6.yaml")
    serves_builtin(env)


@pytest.mark.parametrize(("change", "reason"), [
    ({"model": {"model_id": "zai-org/GLM-4.6", "context_length": "lots"}},
     "model.context_length: Input should be a valid integer"),
    ({"variants": [1, 2]}, "variants: Input should be a valid dictionary"),
    ({"variants": {"default": {"vram_minimum_gb": "huge"}}},
     "variants.default.vram_minimum_gb"),
    ({"variants": {"default": {"tp": "eight"}}}, "variants.default.tp: tp is a GPU count"),
    ({"features": {"tool_calling": {"args": "--tool-call-parser glm45"}}},
     "features.tool_calling.args: Input should be a valid list"),
    ({"features": {"tool_calling": {"args": [["nested"]]}}},
     "features.tool_calling.args.0"),
    ({"model": {"model_id": "zai-org/GLM-4.6", "base_env": {"A": {"B": 1}}}},
     "model.base_env.A"),
    ({"hardware_overrides": {"hopper": {"extra_args": [True]}}},
     "hardware_overrides.hopper.extra_args.0"),
    ({"compatible_strategies": "single_node_tp"}, "compatible_strategies"),
    ({"strategy_overrides": {"single_node_tp": {"tp": 0}}}, "strategy_overrides"),
    ({"meta": {"tasks": "multimodal"}}, "meta.tasks"),
    ({"model": ["not", "a", "mapping"]}, "model: Input should be a valid dictionary"),
])
def test_wrong_types_are_skipped_with_the_key_named(tmp_path: Path, change: dict[str, Any],
                                                    reason: str) -> None:
    env, _ = synced(tmp_path)
    plant(env, "models/zai-org/GLM-4.6.yaml", yaml.safe_dump({**glm46(), **change}))
    assert reason in skipped(load_book(env), "GLM-4.6.yaml")
    serves_builtin(env)


def test_wrong_types_are_refused_at_sync_not_crashed_on(tmp_path: Path) -> None:
    folder = checkout(tmp_path)
    data = glm46()
    data["model"]["context_length"] = "lots"
    (folder / "models/zai-org/GLM-4.6.yaml").write_text(yaml.safe_dump(data))
    (folder / "models/zai-org/GLM-4.7.yaml").write_text(
        yaml.safe_dump({**glm46(), "variants": [1, 2]}))
    result = sync(str(folder), env_for(tmp_path))
    assert "zai-org/GLM-4.6" not in result.recipes and "zai-org/GLM-4.7" not in result.recipes
    assert "zai-org/GLM-5.2" in result.recipes
    assert [n.split()[1] for n in result.notes] == ["models/zai-org/GLM-4.6.yaml",
                                                    "models/zai-org/GLM-4.7.yaml"]
    serves_builtin(env_for(tmp_path))


def test_numbers_in_flags_and_env_become_strings(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    data = glm46()
    data["model"]["base_args"] = ["--max-num-seqs", 64]
    data["model"]["base_env"] = {"VLLM_X": 1}
    plant(env, "models/zai-org/GLM-4.6.yaml", yaml.safe_dump(data))
    recipe = load_book(env).recipes["zai-org/GLM-4.6"]
    assert recipe.source.kind == "synced"
    assert recipe.model["base_args"] == ["--max-num-seqs", "64"]
    assert recipe.model["base_env"] == {"VLLM_X": "1"}


def test_unknown_keys_are_kept(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    plant(env, "models/zai-org/GLM-4.6.yaml",
          yaml.safe_dump({**glm46(), "schema_version": 2, "new_block": {"x": [1, "y"]}}))
    recipe = load_book(env).recipes["zai-org/GLM-4.6"]
    assert recipe.source.kind == "synced"
    assert recipe.data["new_block"] == {"x": [1, "y"]}


def test_a_40_mb_file_is_skipped_without_being_read(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    path = plant(env, "models/zai-org/GLM-4.6.yaml")
    with path.open("r+b") as handle:  # sparse: no 40 MB written
        handle.truncate(40 * 1024 * 1024)
    started = time.monotonic()
    assert "over the 262144-byte limit" in skipped(load_book(env), "GLM-4.6.yaml")
    assert time.monotonic() - started < 2
    serves_builtin(env)


def test_a_40_mb_file_is_not_copied_by_sync(tmp_path: Path) -> None:
    folder = checkout(tmp_path)
    with (folder / "models/zai-org/GLM-4.6.yaml").open("r+b") as handle:
        handle.truncate(40 * 1024 * 1024)
    env = env_for(tmp_path)
    result = sync(str(folder), env)
    assert any("GLM-4.6.yaml" in n and "byte limit" in n for n in result.notes)
    assert not (Path(env["GLMKIT_HOME"]) / "recipes/models/zai-org/GLM-4.6.yaml").exists()


def test_a_fifo_does_not_block_the_load(tmp_path: Path) -> None:
    env, models = synced(tmp_path)
    fifo = models / "GLM-4.6.yaml"
    fifo.unlink()
    os.mkfifo(fifo)
    plant(env, "SYNCED.json")

    def unblock() -> None:  # code that opens the FIFO would wait for a writer forever
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                return
            except OSError:
                continue

    threading.Thread(target=unblock, daemon=True).start()
    started = time.monotonic()
    assert "not a regular file" in skipped(load_book(env), "GLM-4.6.yaml")
    assert time.monotonic() - started < 0.5


def test_text_that_is_not_utf8_is_skipped(tmp_path: Path) -> None:
    env, models = synced(tmp_path)
    (models / "GLM-4.6.yaml").write_bytes(b"model: {model_id: \xff\xfe}\n")
    plant(env, "SYNCED.json")
    skipped(load_book(env), "GLM-4.6.yaml")
    serves_builtin(env)


@pytest.mark.parametrize("text", [
    "model: {context_length: " + "9" * 5000 + "}\nfeatures: {tool_calling: {}}\n",
    "model: {m: 2024-13-45}\nfeatures: {tool_calling: {}}\n",
    "model: !!python/object/apply:os.system ['true']\n",
    "? [a, b]\n: 1\n",
    "model: {}\n---\nmodel: {}\n",
    "just a string\n",
    "model: {model_id: 'unterminated\n",
])
def test_yaml_the_safe_loader_rejects_is_a_one_line_note(tmp_path: Path, text: str) -> None:
    env, _ = synced(tmp_path)
    plant(env, "models/zai-org/GLM-4.6.yaml", text)
    skipped(load_book(env), "GLM-4.6.yaml")
    serves_builtin(env)


def test_a_file_name_with_control_characters_is_skipped(tmp_path: Path) -> None:
    env, models = synced(tmp_path)
    text = yaml.safe_dump(glm46())
    (models / "GLM-9\nfake note.yaml").write_text(text)
    (models / "GLM-9\x1b[31m.yaml").write_text(text)
    plant(env, "SYNCED.json")
    book = load_book(env)
    assert not [key for key in book.recipes if "GLM-9" in key]
    notes = [n for n in book.notes if "GLM-9" in n]
    assert len(notes) == 2
    assert all("\n" not in n and "\x1b" not in n and "file name" in n for n in notes)


def test_a_synced_recipe_may_not_name_a_host_folder(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    data = glm46()
    data["model"]["local_dir"] = "/etc"
    plant(env, "models/zai-org/GLM-4.6.yaml", yaml.safe_dump(data))
    assert "model.local_dir" in skipped(load_book(env), "GLM-4.6.yaml")
    assert resolve_model("zai-org/GLM-4.6", env).local_dir is None
    # glmkit's own tiny model keeps its folder under GLMKIT_HOME.
    assert load_book(env).recipes["glmkit/glm-tiny"].model["local_dir"] == "models/glm-tiny"


def test_a_bad_strategy_or_hardware_profile_is_skipped(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    plant(env, "strategies/single_node_tp.yaml",
          "name: single_node_tp\nvllm_args: --enable-expert-parallel\n")
    taxonomy = yaml.safe_load((BUILTIN_ROOT / "taxonomy.yaml").read_text())
    taxonomy["hardware_profiles"]["h100"]["gpu_count"] = 0
    taxonomy["hardware_profiles"]["evil"] = {"brand": "X", "generation": "y",
                                             "gpu_count": 8, "vram_gb": "lots"}
    plant(env, "taxonomy.yaml", yaml.safe_dump(taxonomy))
    book = load_book(env)
    assert "vllm_args" in skipped(book, "single_node_tp.yaml")
    assert book.strategies["single_node_tp"]["parallel_flag"] == "--tensor-parallel-size"
    notes = [n for n in book.notes if "taxonomy.yaml" in n]
    assert len(notes) == 2
    assert any("hardware_profiles.h100: gpu_count: Input should be greater than 0" in n
               for n in notes)
    assert book.hardware["h100"]["gpu_count"] == 8  # the built-in profile
    assert "evil" not in book.hardware and "b200" in book.hardware


def test_a_taxonomy_alias_bomb_is_skipped(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    plant(env, "taxonomy.yaml", ALIAS_BOMB)
    assert "YAML aliases" in skipped(load_book(env), "taxonomy.yaml")
    assert load_book(env).hardware["h200"]["gpu_count"] == 8


def test_every_built_in_and_upstream_recipe_passes_the_schema() -> None:
    from glmkit.knowledge.recipe_schema import check_recipe, check_strategy, read_yaml

    upstream = Path(__file__).resolve().parents[3] / "shared" / "recipes"
    roots = [BUILTIN_ROOT] + ([upstream] if (upstream / "models").is_dir() else [])
    for root in roots:
        for path in sorted(root.glob("models/*/*.yaml")):
            check_recipe(read_yaml(path), synced=root != BUILTIN_ROOT)
        for path in sorted(root.glob("strategies/*.yaml")):
            check_strategy(read_yaml(path))
    book = load_book({}, synced=False)
    assert book.notes == ()
    assert len(book.recipes) >= 9 and len(book.hardware) >= 9


# --- item 6: sync hygiene -----------------------------------------------------------------

def test_a_symlinked_recipe_is_not_followed_at_sync(tmp_path: Path) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_text("model: {model_id: PRIVATE-KEY-MATERIAL}\n")
    folder = checkout(tmp_path)
    (folder / "models/zai-org/GLM-9.yaml").symlink_to(secret)
    (folder / "taxonomy.yaml").unlink()
    (folder / "taxonomy.yaml").symlink_to(secret)
    env = env_for(tmp_path)
    result = sync(str(folder), env)
    cache = Path(env["GLMKIT_HOME"]) / "recipes"
    assert not (cache / "models/zai-org/GLM-9.yaml").exists()
    assert not (cache / "taxonomy.yaml").exists()
    assert any("GLM-9.yaml" in n and "symbolic link" in n for n in result.notes)
    assert any("taxonomy.yaml" in n and "symbolic link" in n for n in result.notes)
    assert not any("PRIVATE" in n for n in result.notes)


def test_a_symlinked_folder_is_not_followed_at_sync(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "GLM-9.yaml").write_text(yaml.safe_dump(glm46()))
    folder = checkout(tmp_path)
    shutil.rmtree(folder / "strategies")
    (folder / "strategies").symlink_to(outside)
    env = env_for(tmp_path)
    result = sync(str(folder), env)
    assert not (Path(env["GLMKIT_HOME"]) / "recipes/strategies").exists()
    assert any("strategies" in n and "symbolic link" in n for n in result.notes)


def test_a_symlink_in_the_synced_copy_is_not_read_at_load(tmp_path: Path) -> None:
    env, models = synced(tmp_path)
    outside = tmp_path / "outside.yaml"
    data = glm46()
    data["model"]["context_length"] = 7
    outside.write_text(yaml.safe_dump(data))
    (models / "GLM-4.6.yaml").unlink()
    (models / "GLM-4.6.yaml").symlink_to(outside)
    plant(env, "SYNCED.json")
    assert "symbolic link" in skipped(load_book(env), "GLM-4.6.yaml")
    serves_builtin(env)


def test_an_origin_that_looks_like_an_option_never_reaches_git(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for origin in (f"--upload-pack=touch {marker} #://", "-u", "--config=x=y://"):
        with pytest.raises(UsageError, match="starts with '-'"):
            sync(origin, env_for(tmp_path))
    with pytest.raises(UsageError, match="cannot start with '-'"):
        sync(f"ssh://-oProxyCommand=touch%20{marker}/recipes.git", env_for(tmp_path))
    assert not marker.exists()


def test_git_gets_the_origin_after_a_double_dash(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 128, "", "fatal: nope")

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(shutil, "which", lambda _: "/usr/bin/git")
    with pytest.raises(EnvironmentProblem):
        sync("https://example.invalid/recipes.git", env_for(tmp_path))
    argv = calls[0]
    assert argv[argv.index("--") + 1] == "https://example.invalid/recipes.git"


@pytest.mark.parametrize("origin", [
    "ext::true #://",
    "fd::3 ://",
    "ftp://example.invalid/recipes.tar.gz",
    "file:///etc/recipes.tar.gz",
])
def test_only_plain_transports_are_synced(tmp_path: Path, origin: str) -> None:
    with pytest.raises(UsageError, match="only"):
        sync(origin, env_for(tmp_path))


def test_public_origin_strips_credentials() -> None:
    strip = recipes.public_origin
    assert strip("https://user:ghp_token@github.com/o/r.git") == "https://github.com/o/r.git"
    assert strip("https://ghp_token@github.com/o/r.git") == "https://github.com/o/r.git"
    assert strip("https://u:p%40ss@host:8443/r.tar.gz?x=1") == "https://host:8443/r.tar.gz?x=1"
    assert strip("https://u:p@ss@host/r") == "https://host/r"
    assert strip("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert strip("/home/me/recipes") == "/home/me/recipes"
    assert strip("http://[::1") == "(an unreadable URL)"


def test_a_failed_clone_does_not_echo_the_token(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """git's own refusal, as it prints it (the real clone: tests/integration/
    test_recipe_sync_git.py)."""
    origin = "http://someone:sekrit-token-123@127.0.0.1:9/recipes.git"

    def git_refuses(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 128, "", f"fatal: unable to access "
                                           f"'{origin}/': Failed to connect to 127.0.0.1")

    monkeypatch.setattr(shutil, "which", lambda _: "/usr/bin/git")
    monkeypatch.setattr(subprocess, "run", git_refuses)
    with pytest.raises(EnvironmentProblem) as caught:
        sync(origin, env_for(tmp_path))
    assert "sekrit" not in str(caught.value)
    assert "127.0.0.1:9/recipes.git" in str(caught.value)


def test_a_synced_json_from_before_never_shows_its_token(tmp_path: Path) -> None:
    env, _ = synced(tmp_path)
    stamp = Path(env["GLMKIT_HOME"]) / "recipes/SYNCED.json"
    stamp.write_text(json.dumps({"origin": "https://u:sekrit@h/r.git", "commit": 7}))
    plant(env, "SYNCED.json")
    source = load_book(env).sources[-1]
    assert source.origin == "https://h/r.git" and source.commit is None
    assert "sekrit" not in source.describe()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def www(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback web server (it ignores credentials) and the folder it serves."""
    folder = tmp_path / "www"
    folder.mkdir()
    with tarfile.open(folder / "recipes-main.tar.gz", "w:gz") as tar:
        tar.add(checkout(tmp_path), arcname="recipes-main")
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()


def test_credentials_in_the_url_are_not_stored_or_shown(www: tuple[str, Path],
                                                        tmp_path: Path) -> None:
    host, _ = www
    env = env_for(tmp_path)
    result = sync(f"http://someone:sekrit-token-123@{host}/recipes-main.tar.gz", env)
    stored = (Path(env["GLMKIT_HOME"]) / "recipes/SYNCED.json").read_text()
    assert "sekrit" not in stored and "someone" not in stored
    assert json.loads(stored)["origin"] == f"http://{host}/recipes-main.tar.gz"
    assert "sekrit" not in result.describe() and "sekrit" not in " ".join(result.notes)
    assert "sekrit" not in load_book(env).sources[-1].describe()


def test_a_failed_download_does_not_echo_the_token(www: tuple[str, Path],
                                                   tmp_path: Path) -> None:
    host, _ = www
    with pytest.raises(EnvironmentProblem) as caught:
        sync(f"http://someone:sekrit-token-123@{host}/missing.tar.gz", env_for(tmp_path))
    assert "404" in str(caught.value) and "sekrit" not in str(caught.value)


def test_a_download_over_the_limit_is_refused(www: tuple[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    host, folder = www
    size = (folder / "recipes-main.tar.gz").stat().st_size
    monkeypatch.setattr(recipes, "MAX_DOWNLOAD_BYTES", size - 1)
    env = env_for(tmp_path)
    with pytest.raises(UsageError, match="larger than"):
        sync(f"http://{host}/recipes-main.tar.gz", env)
    assert not (Path(env["GLMKIT_HOME"]) / "recipes").exists()


def test_a_gzip_bomb_is_refused_while_unpacking(www: tuple[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    host, folder = www
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as tar:
        member = tarfile.TarInfo("recipes-main/models/zai-org/zeros.yaml")
        member.size = 4 * 1024 * 1024
        tar.addfile(member, io.BytesIO(bytes(member.size)))
    (folder / "bomb.tar.gz").write_bytes(gzip.compress(body.getvalue()))
    monkeypatch.setattr(recipes, "MAX_UNPACKED_BYTES", 1024 * 1024)
    with pytest.raises(UsageError, match="unpacks to more than"):
        sync(f"http://{host}/bomb.tar.gz", env_for(tmp_path))


def test_a_tarball_link_out_of_the_archive_is_refused(www: tuple[str, Path],
                                                      tmp_path: Path) -> None:
    host, folder = www
    with tarfile.open(folder / "links.tar.gz", "w:gz") as tar:
        tar.add(checkout(tmp_path), arcname="recipes-main")
        link = tarfile.TarInfo("recipes-main/models/zai-org/GLM-9.yaml")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(UsageError, match="not a readable .tar.gz"):
        sync(f"http://{host}/links.tar.gz", env_for(tmp_path))


def test_a_link_inside_a_tarball_is_not_copied(www: tuple[str, Path],
                                               tmp_path: Path) -> None:
    host, folder = www
    with tarfile.open(folder / "inner.tar.gz", "w:gz") as tar:
        tar.add(checkout(tmp_path), arcname="recipes-main")
        link = tarfile.TarInfo("recipes-main/models/zai-org/GLM-9.yaml")
        link.type, link.linkname = tarfile.SYMTYPE, "GLM-4.6.yaml"
        tar.addfile(link)
    env = env_for(tmp_path)
    result = sync(f"http://{host}/inner.tar.gz", env)
    assert any("GLM-9.yaml" in n and "symbolic link" in n for n in result.notes)
    assert not (Path(env["GLMKIT_HOME"]) / "recipes/models/zai-org/GLM-9.yaml").exists()


# --- property: no synced document makes load_book raise -----------------------------------

TEXT = st.text(alphabet=st.sampled_from(list("ab_-=$`{}()[]'\"\\ \n\t:#&*!|>%@,.é漢\u202e")),
               max_size=12)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), TEXT)
KEYS = st.sampled_from(["model", "variants", "features", "args", "extra_args", "base_args",
                        "base_env", "extra_env", "context_length", "tp", "modes",
                        "hardware_overrides", "strategy_overrides", "tool_calling",
                        "default", "meta", "tasks", "local_dir", "model_id",
                        "vram_minimum_gb", "docker_image", "dependencies",
                        "supported_hardware", "default_modes", "precision"]) | TEXT
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(KEYS, inner, max_size=5), max_leaves=15)
RECIPES = st.fixed_dictionaries(
    {"model": st.dictionaries(KEYS, DOCUMENTS, max_size=4),
     "features": st.fixed_dictionaries({"tool_calling": DOCUMENTS})},
    optional={"variants": DOCUMENTS, "hardware_overrides": DOCUMENTS,
              "strategy_overrides": DOCUMENTS, "meta": DOCUMENTS})


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """The real GLM-4.6 recipe with one to three values anywhere replaced by random ones."""
    document = glm46()
    for _ in range(draw(st.integers(1, 3))):
        node: Any = document
        while isinstance(node, (dict, list)) and node:
            key = draw(st.sampled_from(list(node) if isinstance(node, dict)
                                       else list(range(len(node)))))
            if isinstance(node[key], (dict, list)) and node[key] and draw(st.booleans()):
                node = node[key]
                continue
            node[key] = draw(DOCUMENTS)
            break
    return document


EXAMPLES = {"documents": 0, "loaded": 0, "skipped": 0}


# Any document, as YAML or as YAML-ish text. The unit layer tries 40 of them; tests/
# integration/test_recipe_trust_examples.py tries 200 with the same check.
ANY_DOCUMENT = {"document": st.one_of(mutated(), mutated(), RECIPES, DOCUMENTS),
                "as_text": st.sampled_from([False, False, True])}
PROPERTY = {"deadline": None, "database": None,
            "suppress_health_check": [HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow]}


@settings(max_examples=40, **PROPERTY)  # type: ignore[arg-type]
@given(**ANY_DOCUMENT)
def test_no_synced_document_makes_load_book_raise(tmp_path: Path, document: Any,
                                                   as_text: bool) -> None:
    load_book_survives(tmp_path, document, as_text)


def load_book_survives(tmp_path: Path, document: Any, as_text: bool) -> None:
    env = env_for(tmp_path)
    root = Path(env["GLMKIT_HOME"]) / "recipes"
    if not root.exists():  # a synced copy of one recipe: each example parses one file
        folder = tmp_path / "one"
        (folder / "models/zai-org").mkdir(parents=True)
        (folder / "models/zai-org/GLM-4.6.yaml").write_text(yaml.safe_dump(glm46()))
        sync(str(folder), env)
    text = yaml.safe_dump(document, allow_unicode=True)
    if as_text:  # YAML-ish text, not always valid YAML
        text = text.replace("'", "").replace("- ", "-").replace(": ", ":", 1)
    plant(env, "models/zai-org/GLM-4.6.yaml", text)
    book = load_book(env)  # must not raise
    EXAMPLES["documents"] += 1
    recipe = book.recipes["zai-org/GLM-4.6"]
    if recipe.source.kind == "synced":
        EXAMPLES["loaded"] += 1
        # What the rest of glmkit reads works on whatever was loaded.
        hw = target_for(book, "h100", 8)
        for key in recipe.variants:
            try:
                spec_from_recipe(recipe, key)
                resolve(book, recipe, key, "single_node_tp", hw, default_features(recipe))
            except GlmkitError:
                pass
    else:
        EXAMPLES["skipped"] += 1
        if book.notes:
            skipped(book, "GLM-4.6.yaml")


def test_the_property_test_saw_both_outcomes() -> None:
    if EXAMPLES["documents"] == 0:
        pytest.skip("the property test did not run first")
    print(EXAMPLES)
    assert EXAMPLES["loaded"] > 0 and EXAMPLES["skipped"] > 0
