"""What scores generated pictures, as validation (studio.train) and evaluation (studio.evaluate) ask it: likeness
(face distance to a reference set: studio.faces), CLIP score (a CLIP model borrowed from the cache), and a base
model's own picture checker: a small classifier a base ships beside its weights (builtin:pocket's, in checker/),
which says what each picture shows and reads what a prompt asks for.

Checkers are registered here by the code of the model that ships one (studio/pocket/scoring.py), never imported by
the trainer or the evaluator. The plugins the studio ships are named in PLUGINS and imported on the first lookup,
so a training child, a command and the web studio all see them; another package registers its own with
register_checker.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

PLUGINS = ("studio.pocket.scoring",)  # modules that register checkers when imported


class PictureChecker(Protocol):
    """A base model's own checker of what its pictures show."""

    labels_known: tuple[str, ...]  # every label it tells apart, in one order (charts colour them alike)

    def labels(self, images: list) -> list[tuple[str, float]]:
        """The best label and its probability for each picture."""

    def color(self, image) -> str | None:
        """The named colour of what stands out in the picture, or None."""

    def asked_for(self, prompt: str, taught: dict[str, str]) -> tuple[str | None, str | None]:
        """(colour, label) a prompt asks for; `taught`: trigger word -> the label a LoRA's pictures show."""


@dataclass(frozen=True)
class CheckerKind:
    name: str
    folder: Callable[[Path], Path | None]  # a base's folder -> the checker folder it ships, or None
    wrap: Callable[[object], PictureChecker]  # the loaded classifier (store.load_checker) -> the checker
    note: str = ""  # what an evaluation's report says of it


@dataclass(frozen=True)
class FoundChecker:
    kind: CheckerKind
    folder: Path

    def load(self, store) -> PictureChecker:
        """Load it here (a training child holds its own copy)."""
        return self.kind.wrap(store.load_checker(str(self.folder)))


_KINDS: list[CheckerKind] = []
_loaded = False


def register_checker(kind: CheckerKind) -> None:
    if any(k.name == kind.name for k in _KINDS):
        raise ValueError(f"checker {kind.name!r} is registered twice")
    _KINDS.append(kind)


def find_checker(ref) -> FoundChecker | None:
    """The checker a base model (a ModelRef) ships, or None."""
    global _loaded
    if not _loaded:
        for module in PLUGINS:
            importlib.import_module(module)
        _loaded = True
    if ref.path is None or not ref.path.is_dir():
        return None
    for kind in _KINDS:
        folder = kind.folder(ref.path)
        if folder is not None:
            return FoundChecker(kind, folder)
    return None
