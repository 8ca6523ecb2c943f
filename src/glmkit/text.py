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
# reads U+009B as ESC [); then Unicode's format characters (category Cf, Unicode 15: the
# bidirectional overrides and isolates U+202A-U+202E and U+2066-U+2069, which make a
# terminal show text in another order than it is, zero-width ones such as U+200B, which
# hide a difference) and the line and paragraph separators U+2028/U+2029.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891"
    "\u08e2\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
    "\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")


def printable(text: str) -> str:
    """`text` with every control and format character but tab and newline shown as '?'."""
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
