"""Control images from a face photo: mediapipe face mesh, OpenPose-style face keypoints, canny edges."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from studio.faces.detect import Face
from studio.fields import setting

CONTROL_MODULES = ("mediapipe_face", "openpose_face", "canny")
FACE_MODULES = ("mediapipe_face", "openpose_face")  # these need a face in the picture; canny works on anything

# The OpenPose ControlNet was trained on keypoints drawn at 512 px as filled circles of radius 3.
_OPENPOSE_SIDE = 512
_OPENPOSE_RADIUS = 3


@dataclass
class ControlOptions:
    """How the preprocessors run; A1111 records the first three as Processor Res, Threshold A and Threshold B."""

    processor_res: int = setting(512, label="Preprocessor resolution", advanced=True,
                                 help="the picture's shorter side while a preprocessor looks at it")
    max_faces: int = setting(1, label="Max faces", span=(1, 10, 1),
                             help="mediapipe_face / openpose_face: how many faces are drawn")
    min_confidence: float = setting(0.5, label="Min confidence (mediapipe)", span=(0.05, 1, 0.05),
                                    help="mediapipe_face: detection confidence below which a face is ignored")
    canny_low: int = setting(100, label="Canny low", span=(1, 254, 1),
                             help="canny: hysteresis thresholds on the gradient, 1..255")
    canny_high: int = setting(200, label="Canny high", span=(2, 255, 1))

    def check(self) -> "ControlOptions":
        if not 64 <= self.processor_res <= 2048:
            raise ValueError(f"`processor_res` must be between 64 and 2048 but is {self.processor_res}")
        if not 1 <= self.max_faces <= 10:
            raise ValueError(f"`max_faces` must be between 1 and 10 but is {self.max_faces}")
        if not 0.01 <= self.min_confidence <= 1:
            raise ValueError(f"`min_confidence` must be between 0.01 and 1 but is {self.min_confidence}")
        if not 1 <= self.canny_low < self.canny_high <= 255:
            raise ValueError(f"canny thresholds must satisfy 1 <= low < high <= 255 but are {self.canny_low} and "
                             f"{self.canny_high}")
        return self

    def thresholds(self, module: str) -> tuple[float | None, float | None]:
        """A1111's Threshold A and B for `module`."""
        if module == "canny":
            return float(self.canny_low), float(self.canny_high)
        if module == "mediapipe_face":
            return float(self.max_faces), float(self.min_confidence)
        return None, None


def check_module(module: str) -> str:
    if module not in CONTROL_MODULES:
        raise ValueError(f"control module {module!r} is unknown; valid modules are: {', '.join(CONTROL_MODULES)}")
    return module


def control_image(module: str, image: Image.Image, faces: list[Face], size: tuple[int, int],
                  options: ControlOptions | None = None) -> Image.Image:
    """The control image `module` makes from `image`, at `size` (width, height).

    faces: the faces of `image` in its own pixel coordinates, the one to draw first (openpose_face draws up to
           options.max_faces of them; the other modules find their own).
    """
    options = (options or ControlOptions()).check()
    check_module(module)
    if module == "mediapipe_face":
        if not faces:
            return mediapipe_face(image, size, max_faces=options.max_faces, min_confidence=options.min_confidence,
                                  processor_res=options.processor_res)
        # MediaPipe picks faces in its own order; let it find them all, then keep the ones dlib's list chose.
        drawn = mediapipe_face(image, size, max_faces=min(10, max(len(faces), options.max_faces)),
                               min_confidence=options.min_confidence, processor_res=options.processor_res)
        factor = (size[0] / image.width, size[1] / image.height)
        return _keep_around(drawn, [_scaled(f, factor) for f in faces[:options.max_faces]])
    if module == "openpose_face":
        factor = (size[0] / image.width, size[1] / image.height)
        return openpose_face([_scaled(f, factor) for f in faces[:options.max_faces]], size)
    return canny(image, size, low=options.canny_low, high=options.canny_high, processor_res=options.processor_res)


def mediapipe_face(image: Image.Image, size: tuple[int, int], *, max_faces: int = 1, min_confidence: float = 0.5,
                   processor_res: int = 512) -> Image.Image:
    """MediaPipe's face mesh (contours, eyes, brows, lips, pupils in colour on black), as controlnet_aux draws it
    for the MediaPipe face ControlNet. All black when MediaPipe finds no face (see is_blank)."""
    from controlnet_aux.mediapipe_face import MediapipeFaceDetector

    from studio.quiet import native_stderr_quiet

    # controlnet_aux prints a line when it finds no face; the caller learns it from the blank image instead; MediaPipe
    # logs its graph's set-up from C++.
    with contextlib.redirect_stdout(io.StringIO()), native_stderr_quiet():
        drawn = MediapipeFaceDetector()(np.asarray(image.convert("RGB"), dtype=np.uint8), max_faces=max_faces,
                                        min_confidence=min_confidence, detect_resolution=processor_res,
                                        image_resolution=processor_res, output_type="pil")
    return drawn.resize(size, Image.Resampling.BILINEAR)


def openpose_face(faces: list[Face], size: tuple[int, int]) -> Image.Image:
    """OpenPose's 70 face keypoints (dlib's 68 plus the two pupils) as white dots on black, the way
    controlnet_aux's OpenPose draws faces: the input of the OpenPose ControlNet's face mode.

    faces: in the coordinates of a `size` picture.
    """
    import cv2

    width, height = size
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    radius = max(1, round(_OPENPOSE_RADIUS * min(width, height) / _OPENPOSE_SIDE))
    for face in faces:
        points = face.landmarks
        pupils = np.stack([points[36:42].mean(axis=0), points[42:48].mean(axis=0)])  # OpenPose points 68 and 69
        for x, y in np.concatenate([points, pupils]):
            if 0 <= x < width and 0 <= y < height:
                cv2.circle(canvas, (int(x), int(y)), radius, (255, 255, 255), thickness=-1)
    return Image.fromarray(canvas)


def canny(image: Image.Image, size: tuple[int, int], *, low: int = 100, high: int = 200,
          processor_res: int = 512) -> Image.Image:
    """Canny edges, white on black, found at `processor_res` as controlnet_aux's CannyDetector does."""
    import cv2

    rgb = image.convert("RGB")
    scale = processor_res / min(rgb.size)
    work = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.LANCZOS)
    edges = cv2.Canny(np.asarray(work, dtype=np.uint8), low, high)
    return Image.fromarray(edges).convert("RGB").resize(size, Image.Resampling.BILINEAR)


def is_blank(image: Image.Image) -> bool:
    """True when a control image has nothing drawn on it (a face module that found no face)."""
    return not np.asarray(image.convert("L")).any()


def _keep_around(image: Image.Image, faces: list[Face], margin: float = 0.4) -> Image.Image:
    """`image` blacked out except near `faces` (each box grown by `margin` of its size on every side)."""
    pixels = np.asarray(image).copy()
    keep = np.zeros(pixels.shape[:2], dtype=bool)
    for face in faces:
        left, top, right, bottom = face.box
        dx, dy = margin * (right - left), margin * (bottom - top)
        rows = slice(max(0, round(top - dy)), max(0, round(bottom + dy)))
        keep[rows, max(0, round(left - dx)):max(0, round(right + dx))] = True
    pixels[~keep] = 0
    return Image.fromarray(pixels)


def _scaled(face: Face, factor: tuple[float, float]) -> Face:
    fx, fy = factor
    left, top, right, bottom = face.box
    box = (round(left * fx), round(top * fy), round(right * fx), round(bottom * fy))
    return Face(box, face.landmarks * np.array([fx, fy]), face.encoding, face.score)
