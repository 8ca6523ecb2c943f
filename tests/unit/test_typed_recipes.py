"""Recipes stay typed from the schema to the plan (#29): the schema's documents travel
on, and the modules that read recipe data ask their fields, never `.get(` on a dict that
was a recipe once (with `or default` beside it, the readers had drifted from the schema)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from glmkit.knowledge import recipe_schema as schema
from glmkit.knowledge.recipes import Recipe, load_book

SRC = Path(__file__).resolve().parents[2] / "src" / "glmkit"
# Every module that receives recipe data, with the receivers of `.get(` in it that are
# not recipe data (SYNCED.json, HTTP, the kit's own tables). A new `.get(` fails here.
RECIPE_READERS: dict[str, set[str]] = {
    "knowledge/recipes.py": {"info", "requests", "response.headers"},
    "knowledge/resolver.py": set(),
    "knowledge/catalog.py": {"by_lower"},
    "knowledge/images.py": {"VERSIONED_FLAGS"},
    "plan/serve.py": set(),
    "plan/pd.py": set(),
    "plan/advice.py": set(),
    "plan/cluster.py": set(),
    "cli/views.py": {"summary"},
}


def _get_receivers(path: Path) -> list[str]:
    """The receiver of each `.get(` call in `path`, as written; a dict literal (a table in
    the code) is not recipe data and is left out."""
    return [ast.unparse(node.func.value) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get" and not isinstance(node.func.value, ast.Dict)]


@pytest.mark.parametrize("module", sorted(RECIPE_READERS))
def test_no_get_on_recipe_data_outside_the_schema(module: str) -> None:
    found = [r for r in _get_receivers(SRC / module) if r not in RECIPE_READERS[module]]
    assert found == [], f"{module}: .get( on {found}; read the schema's typed fields"


def test_the_walk_sees_a_get_on_recipe_data(tmp_path: Path) -> None:
    """The check above fails on what the readers wrote before (the test can fail): the
    walk it uses, not a copy of it, finds the receiver."""
    old = tmp_path / "reader.py"
    old.write_text("def f(variant):\n    return variant.get('precision') or 'bf16'\n"
                   "TABLE = {'a': 1}.get('a')\n")
    assert _get_receivers(old) == ["variant"]


def test_the_book_holds_the_schemas_documents() -> None:
    book = load_book({}, synced=False)
    recipe = book.recipes["zai-org/GLM-4.6"]
    assert isinstance(recipe, Recipe) and isinstance(recipe.data, schema.RecipeDoc)
    assert isinstance(recipe.model, schema.ModelBlock)
    assert all(isinstance(v, schema.Variant) for v in recipe.variants.values())
    assert all(isinstance(f, schema.Feature) for f in recipe.features.values())
    assert all(isinstance(s, schema.StrategyDoc) for s in book.strategies.values())
    assert all(isinstance(h, schema.HardwareProfile) for h in book.hardware.values())
    # The typed blocks answer as the file wrote them: no dict methods to fall back on.
    assert not hasattr(recipe.data, "get") and not hasattr(recipe.model, "get")


def test_a_strategy_put_into_the_book_passes_the_schema() -> None:
    """Whoever puts a strategy into the book (a sync, a test), readers get a typed one."""
    book = load_book({}, synced=False)
    strategies = type(book.strategies)(book.strategies)
    strategies["odd"] = {"vllm_args": ["--x", 1], "router": {"policy": "random"}}
    assert isinstance(strategies["odd"], schema.StrategyDoc)
    assert strategies["odd"].vllm_args == ["--x", "1"]
    assert strategies["odd"].router is not None and strategies["odd"].router.policy == "random"
    with pytest.raises(schema.RecipeRefused):
        strategies["bad"] = {"vllm_args": "--not-a-list"}


def test_an_empty_block_reads_as_the_empty_mapping_it_was() -> None:
    """`or default` on a block keeps the recipes' meaning: `{}` in a file is falsy."""
    assert not schema.HardwareBlock.model_validate({})
    assert schema.HardwareBlock.model_validate({"args": []})
    assert schema.lookup({"a": None, "b": 1}, "a", "b") == 1
    assert schema.lookup(None, "a") is None
