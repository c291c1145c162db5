"""Is it the same person: face distance, the sim-score of seed 000, picking the subject's face, and the set check."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from studio.faces.detect import Face, detect_faces, main_face

# Seed 000: face_recognition's own 0.6 let different people through; 0.40 matched what the eye calls "same person".
DEFAULT_TOLERANCE = 0.40


def face_distance(encodings: np.ndarray, encoding: np.ndarray) -> np.ndarray:
    """Euclidean distance from each of `encodings` (N, 128) to one `encoding` (128,): 0 is identical,
    below ~0.4 the same person (seed 000), above ~0.6 someone else. Returns shape (N,)."""
    encodings = np.asarray(encodings, dtype=np.float64).reshape(-1, 128)
    return np.linalg.norm(encodings - np.asarray(encoding, dtype=np.float64).reshape(1, 128), axis=1)


def sim_score(encoding: np.ndarray, reference: np.ndarray) -> float:
    """Seed 000's sim-score: the mean face distance from one face to a reference set (lower is more alike)."""
    reference = np.asarray(reference, dtype=np.float64).reshape(-1, 128)
    if len(reference) == 0:
        raise ValueError("`reference` holds no encodings: the reference images have no face")
    return float(face_distance(reference, encoding).mean())


def _open(item) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    path = Path(item)
    if not path.is_file():
        raise ValueError(f"reference image {str(path)!r} is not a file")
    with Image.open(path) as im:
        from PIL import ImageOps

        return ImageOps.exif_transpose(im).convert("RGB")


def encode_reference(paths_or_images) -> np.ndarray:
    """The subject's encodings from reference pictures (paths, a folder, or PIL images): one (128,) row per
    picture with a face, its main face (largest). Raises ValueError when no picture has a face."""
    items = list(paths_or_images) if not isinstance(paths_or_images, (str, Path)) else [paths_or_images]
    expanded = []
    for item in items:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            expanded += sorted(p for p in Path(item).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        else:
            expanded.append(item)
    rows = []
    for item in expanded:
        face = main_face(detect_faces(_open(item)))
        if face is not None:
            rows.append(face.encoding)
    if not rows:
        raise ValueError(f"`reference` has no picture with a face ({len(expanded)} pictures looked at)")
    return np.stack(rows)


def sim_scores(images, reference_encodings: np.ndarray) -> list[float | None]:
    """Sim-score of each image (path or PIL image) against `reference_encodings`; None when no face is found.
    When an image holds several faces, the one most like the reference counts."""
    reference = np.asarray(reference_encodings, dtype=np.float64).reshape(-1, 128)
    scores: list[float | None] = []
    for item in images:
        faces = detect_faces(_open(item))
        scores.append(min((sim_score(f.encoding, reference) for f in faces), default=None))
    return scores


def pick_subject(faces: list[Face], anchor: np.ndarray | None) -> int | None:
    """Index of the subject's face among `faces`: the one closest (sim-score) to `anchor` encodings when given,
    else the main face. None when there is no face."""
    if not faces:
        return None
    if anchor is not None and len(anchor):
        return int(np.argmin([sim_score(f.encoding, anchor) for f in faces]))
    return faces.index(main_face(faces))


@dataclass
class IdentityRow:
    """The identity check of one image of a set."""

    index: int
    subject: int | None  # index into that image's faces; None when no face
    candidates: int  # faces the detector is sure of (see detect.CANDIDATE_SCORE)
    to_set: float | None  # median face distance to the other images' subjects
    to_reference: float | None  # sim-score against the reference set, when one is given
    flags: list[str] = field(default_factory=list)  # "no face", "several faces", "far from set", "far from reference"

    @property
    def score(self) -> float | None:
        """What the table sorts by: distance to the reference when there is one, else to the set."""
        return self.to_reference if self.to_reference is not None else self.to_set


def check_identity(faces_per_image: list[list[Face]], reference: np.ndarray | None = None,
                   tolerance: float = DEFAULT_TOLERANCE) -> list[IdentityRow]:
    """Which images of a set may not show the same person.

    The subject of each image is its face closest to the reference (when given) or else closest to the set's
    main faces. An image's distance to the set is the median distance to the other images' subjects (the median,
    so a few outliers do not make every good image look bad).
    """
    # 1. Check inputs
    if not 0.0 < tolerance < 2.0:
        raise ValueError(f"`tolerance` must be between 0 and 2 but is {tolerance}")
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float64).reshape(-1, 128)
        if len(reference) == 0:
            raise ValueError("`reference` holds no encodings: the reference images have no face")

    # 2. A first guess (main faces) anchors the choice of each image's subject
    first = [main_face(faces) for faces in faces_per_image]
    anchor = reference
    if anchor is None and sum(f is not None for f in first) > 1:  # one image alone cannot outvote its main face
        anchor = np.array([f.encoding for f in first if f is not None])
    subjects = [pick_subject(faces, anchor) for faces in faces_per_image]
    encodings = [faces[s].encoding if s is not None else None for faces, s in zip(faces_per_image, subjects)]

    # 3. Distances and flags
    rows = []
    for i, (faces, subject) in enumerate(zip(faces_per_image, subjects)):
        candidates = sum(f.is_candidate for f in faces)
        others = [e for j, e in enumerate(encodings) if j != i and e is not None]
        to_set = to_ref = None
        flags = []
        if subject is None:
            flags.append("no face")
        else:
            if others:
                to_set = float(np.median(face_distance(np.stack(others), encodings[i])))
            if reference is not None:
                to_ref = sim_score(encodings[i], reference)
            if candidates > 1:
                flags.append("several faces")
            if to_set is not None and to_set > tolerance:
                flags.append("far from set")
            if to_ref is not None and to_ref > tolerance:
                flags.append("far from reference")
        rows.append(IdentityRow(i, subject, candidates, to_set, to_ref, flags))
    return rows
