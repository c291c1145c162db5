"""Which face is the subject: the face the user picked in one picture, the question asked when most pictures show
several faces and nothing says who the subject is, and the faces that are not the subject (bystanders)."""

from __future__ import annotations

import numpy as np

from studio.data.ingest import Limits, load_image
from studio.data.scan import Scanned
from studio.faces.detect import Face
from studio.faces.identity import face_distance, sim_score

SEVERAL_FACES_SHARE = 0.5  # above this share of pictures with several faces, no reference: ask who the subject is


class SubjectUnclear(ValueError):
    """Most pictures show several faces and nothing says which is the subject: the studio asks rather than taking
    the largest face (a bystander's portrait behind the subject would become the subject). `faces` are the choices
    in one picture: (the `subject_face` value that picks it, the face cut out of the picture)."""

    def __init__(self, message: str, source: str, faces: list[tuple[str, object]]):
        super().__init__(message)
        self.source, self.faces = source, faces


def picked_face(accepted: list[Scanned], pick: str):
    """The encoding (1, 128) of the face `pick` ("<source>#<n>", faces numbered from the left) names."""
    source, sep, number = pick.rpartition("#")
    item = next((a for a in accepted if a.source == source), None) if sep else None
    if item is None:
        raise ValueError(f"`subject_face` {pick!r} must be <picture>#<face number> of an uploaded picture "
                         f"(e.g. {accepted[0].source}#1)")
    faces = _numbered(item.faces)
    if not number.isdigit() or not 1 <= int(number) <= len(faces):
        raise ValueError(f"`subject_face` {pick!r}: {source} has {len(faces)} faces, numbered 1 to {len(faces)} "
                         f"from the left")
    return faces[int(number) - 1].encoding[None]


def _numbered(faces: list[Face]) -> list[Face]:
    """The faces one may pick as the subject, numbered from the left: those the detector is sure of."""
    return sorted((f for f in faces if f.is_candidate), key=lambda f: f.box[0])


def ask_for_the_subject(accepted: list[Scanned], by_name: dict, limits: Limits) -> None:
    """SubjectUnclear when most pictures with a face show several: the largest face would be a guess (a bystander's
    portrait behind the subject would become the subject), so the studio asks for a reference or a pick."""
    with_faces = [a for a in accepted if _numbered(a.faces)]
    several = [a for a in with_faces if len(_numbered(a.faces)) > 1]
    if not several or len(several) <= SEVERAL_FACES_SHARE * len(with_faces):
        return
    shown = max(several, key=lambda a: len(_numbered(a.faces)))
    picture = load_image(by_name[shown.source], limits).image
    faces = [(f"{shown.source}#{n}", picture.crop(f.box)) for n, f in enumerate(_numbered(shown.faces), start=1)]
    choices = ", ".join(f"{value!r} ({f.width} px wide)" for (value, _), f in zip(faces, _numbered(shown.faces)))
    raise SubjectUnclear(
        f"{len(several)} of {len(with_faces)} pictures show several faces and no reference photo says which is the "
        f"subject: give reference photos of the subject, or pick the subject's face in {shown.source} "
        f"(`subject_face`, numbered from the left: {choices}); nothing was written", shown.source, faces)


def find_bystanders(i: int, faces: list[Face], subject: int | None, rows, accepted, reference,
                    tolerance: float) -> list[Face]:
    """Faces in picture `i` that are not the subject: farther than `tolerance` from the reference (sim-score) or,
    without one, from the subjects of the other pictures (median distance), or from this picture's subject alone."""
    others = [a.faces[r.subject].encoding for j, (a, r) in enumerate(zip(accepted, rows))
              if j != i and r.subject is not None]
    out = []
    for k, face in enumerate(faces):
        if k == subject:
            continue
        if reference is not None:
            distance = sim_score(face.encoding, reference)
        elif others:
            distance = float(np.median(face_distance(np.stack(others), face.encoding)))
        else:
            distance = float(face_distance(faces[subject].encoding[None], face.encoding)[0])
        if distance > tolerance:
            out.append(face)
    return out
