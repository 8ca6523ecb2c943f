"""The recipe book's property test at full count: 200 synced documents, any shape, none
makes load_book raise (the unit layer tries 40: tests/unit/test_recipe_trust.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings

from tests.unit.test_recipe_trust import ANY_DOCUMENT, PROPERTY, load_book_survives


@settings(max_examples=200, **PROPERTY)  # type: ignore[arg-type]
@given(**ANY_DOCUMENT)
def test_no_synced_document_makes_load_book_raise(tmp_path: Path, document: Any,
                                                   as_text: bool) -> None:
    load_book_survives(tmp_path, document, as_text)
