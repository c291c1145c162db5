"""builtin:pocket's checker as the studio's scorers know it (studio.scorers): a base whose folder ships
checker/classifier.safetensors is judged by PocketChecker."""

from __future__ import annotations

from pathlib import Path

from studio.scorers import CheckerKind, register_checker

CLASSIFIER = "classifier.safetensors"


def _folder(base: Path) -> Path | None:
    folder = base / "checker"
    return folder if (folder / CLASSIFIER).is_file() else None


def _wrap(classifier):
    from studio.pocket.checker import PocketChecker

    return PocketChecker(classifier)


register_checker(CheckerKind(
    "pocket", _folder, _wrap,
    note="Pocket checker: every variant is drawn by builtin:pocket, so each picture gets the label its checker sees "
         "(a shape, or a human or dog face) and its colour, against what the prompt names."))
