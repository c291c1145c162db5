"""Find faces in a picture: boxes, 68-point landmarks and 128-d identity encodings (dlib via face_recognition)."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

# dlib's HOG score of a real frontal face is about 1; false positives (the mission patch on the astronaut's
# suit in skimage.data.astronaut) score about 0.1. Weaker detections are still reported (and blurred as
# bystanders, where a false positive costs nothing) but they do not count as candidate subjects.
CANDIDATE_SCORE = 0.3

# The 68 landmark points by facial feature, in dlib's (iBUG 300-W) order, as face_recognition names them.
LANDMARK_GROUPS = {
    "chin": range(0, 17),
    "left_eyebrow": range(17, 22),
    "right_eyebrow": range(22, 27),
    "nose_bridge": range(27, 31),
    "nose_tip": range(31, 36),
    "left_eye": range(36, 42),
    "right_eye": range(42, 48),
    "top_lip": [48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60],
    "bottom_lip": [54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64],
}

_LOCK = threading.Lock()  # dlib's models are not documented as thread-safe; the UI may call from several threads


@dataclass
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    box: (left, top, right, bottom) in pixels, PIL's crop order (x0, y0, x1, y1); right and bottom are exclusive.
         face_recognition's (top, right, bottom, left) order is `css`.
    landmarks: (68, 2) float array of (x, y) points in dlib's 68-point order (see LANDMARK_GROUPS).
    encoding: (128,) float64 identity vector; face_distance() of two encodings below ~0.4-0.6 means the same person.
    score: dlib HOG detection score (higher is surer; see CANDIDATE_SCORE).
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray = field(repr=False)
    encoding: np.ndarray = field(repr=False)
    score: float = 0.0

    @property
    def css(self) -> tuple[int, int, int, int]:
        left, top, right, bottom = self.box
        return top, right, bottom, left

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        left, top, right, bottom = self.box
        return (left + right) / 2, (top + bottom) / 2

    @property
    def is_candidate(self) -> bool:
        return self.score >= CANDIDATE_SCORE

    def landmark_groups(self) -> dict[str, list[tuple[float, float]]]:
        """The landmarks as face_recognition.face_landmarks() names them: {"chin": [(x, y), ...], ...}."""
        return {name: [tuple(map(float, self.landmarks[i])) for i in idx] for name, idx in LANDMARK_GROUPS.items()}

    def scaled(self, factor: float, offset: tuple[float, float] = (0.0, 0.0)) -> "Face":
        """This face in another image's coordinates: multiply by `factor`, then subtract `offset` (x, y)."""
        ox, oy = offset
        left, top, right, bottom = self.box
        box = (round(left * factor - ox), round(top * factor - oy), round(right * factor - ox), round(bottom * factor - oy))
        points = self.landmarks * factor - np.array([ox, oy])
        return Face(box, points, self.encoding, self.score)

    def to_json(self) -> dict:
        return {"box": list(self.box), "score": round(float(self.score), 4),
                "landmarks": np.round(self.landmarks, 1).tolist(), "encoding": [float(v) for v in self.encoding]}

    @classmethod
    def from_json(cls, obj: dict) -> "Face":
        return cls(tuple(int(v) for v in obj["box"]), np.asarray(obj["landmarks"], dtype=np.float64).reshape(68, 2),
                   np.asarray(obj["encoding"], dtype=np.float64), float(obj["score"]))


@functools.lru_cache(maxsize=1)
def _models():
    """dlib's detector, landmark predictors and encoder, loaded on first use (face_recognition loads them on import)."""
    from PIL import ImageFile

    # face_recognition sets PIL's LOAD_TRUNCATED_IMAGES on import, which would let truncated uploads through ingest
    truncated_ok = ImageFile.LOAD_TRUNCATED_IMAGES
    import face_recognition.api as fr

    ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok
    return fr.face_detector, fr.pose_predictor_68_point, fr.pose_predictor_5_point, fr.face_encoder


def detect_faces(image: Image.Image, *, upsample: int = 1, max_side: int = 1024, min_score: float = 0.0,
                 encode: bool = True) -> list[Face]:
    """Every face dlib's HOG detector finds in `image`, largest first, in `image`'s pixel coordinates.

    upsample: times the detector doubles the image; 1 finds faces down to about 40 px (of the resized image).
    max_side: the image is shrunk so its longer side is at most this before detection (speed); boxes, landmarks
              are mapped back to the original size.
    min_score: drop detections scoring below this (dlib's own default threshold is 0).
    encode: compute the 128-d encodings (the slow part); when False, `encoding` is an empty array.
    """
    # 1. Check inputs
    if upsample < 0 or upsample > 3:
        raise ValueError(f"`upsample` must be between 0 and 3 but is {upsample}")
    if max_side < 64:
        raise ValueError(f"`max_side` must be at least 64 but is {max_side}")
    import dlib

    # 2. Work on an 8-bit RGB copy no larger than max_side
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    scale = min(1.0, max_side / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BILINEAR)
    pixels = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))
    detector, predictor_68, predictor_5, encoder = _models()

    # 3. Detect, then landmarks and encodings for each face
    faces = []
    with _LOCK:
        rects, scores, _ = detector.run(pixels, upsample, min_score)
        for rect, score in zip(rects, scores):
            rect = dlib.rectangle(max(rect.left(), 0), max(rect.top(), 0),
                                  min(rect.right(), pixels.shape[1] - 1), min(rect.bottom(), pixels.shape[0] - 1))
            shape = predictor_68(pixels, rect)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            if encode:  # face_recognition's default: the 5-point alignment its distance tolerances were tuned with
                encoding = np.array(encoder.compute_face_descriptor(pixels, predictor_5(pixels, rect), 1))
            else:
                encoding = np.zeros(0)
            box = (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)
            faces.append(Face(box, points, encoding, float(score)))

    # 4. Back to the caller's coordinates, largest first
    if scale < 1.0:
        faces = [f.scaled(1 / scale) for f in faces]
        faces = [Face(_clip(f.box, image.size), f.landmarks, f.encoding, f.score) for f in faces]
    return sorted(faces, key=lambda f: (-f.area, -f.score))


def encode_face(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    """The (128,) identity encoding of whatever is at `box` (left, top, right, bottom) in `image`, found or not:
    landmarks and encoding as detect_faces computes them for a face it found there. For comparing one place of a
    picture before and after an edit, even when the edit leaves no face the detector would find."""
    import dlib

    left, top, right, bottom = box
    if not (0 <= left < right <= image.width and 0 <= top < bottom <= image.height):
        raise ValueError(f"`box` {box} is not inside the {image.width}x{image.height} picture")
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    _, _, predictor_5, encoder = _models()
    with _LOCK:
        rect = dlib.rectangle(left, top, right - 1, bottom - 1)
        return np.array(encoder.compute_face_descriptor(pixels, predictor_5(pixels, rect), 1))


def _clip(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    return max(0, left), max(0, top), min(size[0], right), min(size[1], bottom)


def main_face(faces: list[Face]) -> Face | None:
    """The face a portrait is about when nothing else tells: the largest candidate; among candidates within
    80% of the largest one's area, the one the detector is surest of. None when there is no face."""
    if not faces:
        return None
    pool = [f for f in faces if f.is_candidate] or faces
    biggest = max(f.area for f in pool)
    return max((f for f in pool if f.area >= 0.8 * biggest), key=lambda f: f.score)
