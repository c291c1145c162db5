"""How long tasks report progress and learn they were cancelled: a callback and an exception, shared by every tab."""

from __future__ import annotations

from typing import Callable

# progress(fraction done in [0, 1], short description)
ProgressFn = Callable[[float, str], None]
# should_stop() -> True once the user asked to cancel
StopFn = Callable[[], bool]


class Cancelled(Exception):
    """The user cancelled; whatever was complete before is kept."""


def no_progress(fraction: float, message: str) -> None:
    return None


def never_stop() -> bool:
    return False
