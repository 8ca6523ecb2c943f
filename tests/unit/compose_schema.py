"""Compose data checked against the Compose specification's JSON schema, in-process.

data/compose-spec.json is compose-go v2.9.1's schema/compose-spec.json (commit
75fb1aba, Apache-2.0), the schema Docker Compose v2.40.3 embeds and checks every file
against before it loads it: the same bytes, bar a final newline, as the `compose_spec.json`
inside that binary. `docker compose config` itself, which also interpolates and
normalizes, is checked in tests/integration/test_compose_config.py.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from glmkit.render.compose import dump

SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"


@functools.cache
def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(data: dict[str, Any]) -> list[str]:
    """What the schema refuses in `data`, read back from the file text glmkit writes."""
    loaded = yaml.safe_load(dump(data))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in _validator().iter_errors(loaded)]


def check_compose(data: dict[str, Any]) -> dict[str, Any]:
    """`data` when the Compose schema accepts it; an AssertionError naming each refusal."""
    problems = schema_errors(data)
    assert not problems, problems
    return data
