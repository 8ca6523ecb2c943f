"""The one sanitizer for text glmkit shows: control and C1 characters become '?'.

Model ids, recipe keys, GPU names, labels, paths and error messages come from data
someone else wrote. An escape sequence among them would move the cursor, retitle the
window or plant an OSC 8 hyperlink in the terminal, so every line the kit prints passes
`printable` (glmkit.cli.views' console applies it to everything it renders), and
`one_line` flattens text for a one-line note.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F: a terminal
# reads U+009B as ESC [).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character but tab and newline shown as '?'."""
    return _CONTROL.sub("?", text)


def one_line(text: str, limit: int = 240) -> str:
    """`text` on one line of at most `limit` characters, control characters shown as '?'."""
    flat = " ".join(text.split())
    flat = "".join(c if c.isprintable() else "?" for c in flat)
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def validation_reason(err: ValidationError) -> str:
    """A pydantic error as one line: the first problem as `where: what`, and how many
    more there are (where the data came from, the caller says)."""
    problems = err.errors(include_url=False, include_input=False, include_context=False)
    first = problems[0]
    where = ".".join(one_line(str(part), 40) for part in first["loc"]) or "the document"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {first['msg'].removeprefix('Value error, ')}{more}"
