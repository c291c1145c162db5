"""Names of what a user makes (datasets, runs, evaluations, mining jobs): one rule, checked at every entry point,
so a name is always one folder below its parent, never a path (`../../etc`) and never has stray spaces."""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str | None, argument: str = "name") -> str:
    """`name` without surrounding spaces, or a ValueError naming `argument` and the value."""
    cleaned = (name or "").strip()
    if not _NAME.match(cleaned) or cleaned.endswith(".") or ".." in cleaned:
        raise ValueError(f"`{argument}` must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or "
                         f"digit, but is {name!r}")
    return cleaned
