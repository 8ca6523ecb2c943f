"""How many checks the test suite makes: `assert` statements and `pytest.raises` blocks
per test folder, read from the source (ast), so a change that drops or weakens tests shows
as a smaller number.

    python scripts/count_assertions.py [tests]
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path


def counts(path: Path) -> Counter[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            found["assert"] += 1
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr == "raises" and isinstance(node.func.value, ast.Name) and \
                node.func.value.id == "pytest":
            found["pytest.raises"] += 1
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "tests")
    by_folder: dict[str, Counter[str]] = {}
    for path in sorted(root.rglob("*.py")):
        by_folder.setdefault(str(path.parent.relative_to(root.parent)), Counter()).update(
            counts(path))
    total: Counter[str] = Counter()
    for folder, found in by_folder.items():
        total.update(found)
        print(f"{folder:28} assert {found['assert']:5}  pytest.raises {found['pytest.raises']:4}")
    print(f"{'total':28} assert {total['assert']:5}  pytest.raises {total['pytest.raises']:4}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
