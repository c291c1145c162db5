"""Where a person is in a picture: MediaPipe's selfie segmentation (its model ships inside the mediapipe wheel, so it
works offline), narrowed to the one person whose face is given."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image, ImageDraw

from studio.faces.detect import Face

_LOCK = threading.Lock()
PERSON_THRESHOLD = 0.5  # segmentation confidence above which a pixel is a person's


def people(image: Image.Image) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how sure the segmenter is that each pixel shows a person (anyone)."""
    import mediapipe as mp

    rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
    with _LOCK, mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as segmenter:
        found = segmenter.process(rgb).segmentation_mask
    if found is None:
        return np.zeros(rgb.shape[:2], np.float32)
    return np.clip(found.astype(np.float32), 0.0, 1.0)


def person_area(image: Image.Image, face: Face, others: list[Face] = ()) -> Image.Image:
    """An "L" picture (255 = this person): the segmented regions that touch `face`'s box, less the pixels nearer
    (in face widths) to one of the `others`' faces, so a neighbour who stands close is left out; the face itself is
    always in (the segmenter can miss a face that the detector found)."""
    from scipy import ndimage

    found = people(image) > PERSON_THRESHOLD
    labels, _ = ndimage.label(found)
    left, top, right, bottom = (max(0, v) for v in face.box)
    touching = np.unique(labels[top:bottom, left:right])
    area = np.isin(labels, touching[touching > 0])
    if others:
        ys, xs = np.mgrid[0:area.shape[0], 0:area.shape[1]].astype(np.float32)

        def reach(f: Face):  # distance from the face's centre in its own widths
            cx, cy = f.center
            return np.hypot(xs - cx, ys - cy) / max(1, f.width)

        mine = reach(face)
        for other in others:
            area &= mine <= reach(other)
    out = Image.fromarray((area * 255).astype(np.uint8), "L")
    ImageDraw.Draw(out).ellipse(face_area_box(face, image.size), fill=255)
    return out


def face_area_box(face: Face, size: tuple[int, int], grow: float = 0.5) -> tuple[int, int, int, int]:
    """The face's box grown by `grow` of its size on each side (hair, chin, ears), clipped to the picture."""
    dw, dh = face.width * grow, face.height * grow
    return (max(0, int(face.box[0] - dw)), max(0, int(face.box[1] - dh)),
            min(size[0], int(face.box[2] + dw)), min(size[1], int(face.box[3] + dh)))
