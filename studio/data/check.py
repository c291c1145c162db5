"""The identity check of a stored dataset (seed 000's sim-score): a table of who may not be the subject, and dropping them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.data.library import Dataset, drop_images, load_dataset, save_dataset
from studio.faces.identity import DEFAULT_TOLERANCE, check_identity, encode_reference

IDENTITY_FLAGS = ("no face", "several faces", "far from set", "far from reference")
# What "drop flagged" removes unless told otherwise: pictures that may not show the subject at all.
DROP_FLAGS = ("no face", "far from set", "far from reference")


@dataclass(frozen=True)
class CheckRequest:
    name: str
    tolerance: float = DEFAULT_TOLERANCE
    reference: tuple[Path, ...] = ()  # pictures or folders of the subject; none: keep the dataset's own reference

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference", tuple(Path(p) for p in self.reference))
        if not 0.0 < self.tolerance < 2.0:
            raise ValueError(f"`tolerance` must be between 0 and 2 but is {self.tolerance}")


@dataclass(frozen=True)
class CheckRow:
    file_name: str
    path: Path
    source: str
    score: float | None  # distance to the reference when there is one, else to the rest of the set
    to_set: float | None
    to_reference: float | None
    faces: int  # faces the detector is sure of
    weak: int  # weak detections besides (a faint face, or a face-like pattern: a badge, a clock)
    flags: tuple[str, ...]

    @property
    def faces_text(self) -> str:
        return f"{self.faces}" + (f" (+{self.weak} weak)" if self.weak else "")


@dataclass
class CheckResult:
    dataset: Dataset
    rows: list[CheckRow]  # worst first: no face, then by descending score

    @property
    def has_reference(self) -> bool:
        return len(self.dataset.reference) > 0

    def summary(self) -> str:
        """What the check found, in a line or two: how many flagged, and against what the distances are."""
        against = ("the reference (sim-score) and the rest of the set" if self.has_reference else
                   "the rest of the set (median face distance; no reference given)")
        flagged = self.flagged
        head = f"{len(flagged)} of {len(self.rows)} photos flagged"
        named = "; ".join(f"{r.file_name} ({r.source}): {', '.join(r.flags)}" for r in flagged[:5])
        more = f"; and {len(flagged) - 5} more" if len(flagged) > 5 else ""
        return f"{head}" + (f": {named}{more}" if flagged else "") + f". Distances to {against}."

    @property
    def flagged(self) -> list[CheckRow]:
        return [r for r in self.rows if any(f.startswith(IDENTITY_FLAGS) for f in r.flags)]


def check_dataset(settings, request: CheckRequest) -> CheckResult:
    """Recompute distances and flags from the stored face encodings (no detection runs) and save them."""
    # 1. The dataset and, when given, a new reference
    dataset = load_dataset(settings, request.name)
    if request.reference:
        dataset.reference = encode_reference(list(request.reference))
    reference = dataset.reference if len(dataset.reference) else None

    # 2. Distances and flags; the subject chosen at preparation stays (the crop was centred on it)
    rows = check_identity([im.faces for im in dataset.images], reference, request.tolerance)
    for im, row in zip(dataset.images, rows):
        im.to_set, im.to_reference = row.to_set, row.to_reference
        other = [f for f in im.flags if not f.startswith(IDENTITY_FLAGS)]
        centred = any(f.startswith("no face found") for f in other)
        im.flags = [f for f in row.flags if not (centred and f == "no face")] + other
    dataset.settings["tolerance"] = request.tolerance
    save_dataset(dataset)

    # 3. The table, worst first
    table = [CheckRow(im.file_name, dataset.path(im), im.source, row.score, row.to_set, row.to_reference,
                      row.candidates, len(im.faces) - row.candidates, tuple(im.flags))
             for im, row in zip(dataset.images, rows)]
    table.sort(key=lambda r: (r.score is not None, -(r.score or 0.0), r.file_name))
    return CheckResult(dataset, table)


def drop_flagged(settings, name: str, flags: tuple[str, ...] = DROP_FLAGS) -> list[str]:
    """Remove the pictures carrying any of `flags` (as last checked); returns their file names."""
    unknown = [f for f in flags if f not in IDENTITY_FLAGS]
    if unknown:
        raise ValueError(f"`flags` may hold {', '.join(IDENTITY_FLAGS)} but holds {', '.join(unknown)}")
    dataset = load_dataset(settings, name)
    names = [im.file_name for im in dataset.images if any(f.startswith(flags) for f in im.flags)]
    if names:
        drop_images(settings, name, names)
    return names
