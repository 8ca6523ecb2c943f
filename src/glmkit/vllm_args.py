"""vLLM argument lists: read a flag's value, drop a flag, keep each flag's last setting.

Plain helpers over argv words that the recipes, the resolver, the plans and the results
all use; `glmkit.policy` decides which words may be there at all.
"""

from __future__ import annotations

from collections.abc import Sequence


def dedupe_flags(args: Sequence[str]) -> list[str]:
    """Keep each flag's last occurrence with its value: later layers override earlier ones."""
    units: list[tuple[str | None, list[str]]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            flag = arg.split("=", 1)[0] if "=" in arg else arg
            if "=" not in arg and i + 1 < len(args) and not args[i + 1].startswith("-"):
                units.append((flag, [arg, args[i + 1]]))
                i += 2
                continue
            units.append((flag, [arg]))
        else:
            units.append((None, [arg]))
        i += 1
    seen: set[str] = set()
    keep: list[list[str]] = []
    for name, tokens in reversed(units):
        if name is not None:
            if name in seen:
                continue
            seen.add(name)
        keep.append(tokens)
    return [token for tokens in reversed(keep) for token in tokens]


def flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value the last `--flag value` or `--flag=value` in `args` gives (vLLM's
    parser keeps the last); None when the flag is absent or has no value."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(f"{flag}="):
            value = arg.split("=", 1)[1]
    return value


def drop_flags(args: Sequence[str], *flags: str) -> list[str]:
    """`args` without each of `flags` and its value (`--flag value` or `--flag=value`)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            skip = "=" not in arg and i + 1 < len(args) and not args[i + 1].startswith("-")
            continue
        out.append(arg)
    return out
