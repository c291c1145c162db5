"""A second detector's look at dlib's weak detections: MediaPipe's face detector (its model ships inside the
mediapipe wheel, so it works offline) on a window around each one.

dlib's HOG detector scores round, face-sized patterns (a mission patch, a clock, a badge) as weak faces. Blurring
every weak detection as a bystander's face blurs those too; blurring none misses faint real faces. A weak detection
counts as a face when MediaPipe also finds one there: it is asked about a window three times the detection's size,
so a small face far from the camera fills its input as a near one would.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from studio.faces.detect import Face

_LOCK = threading.Lock()
WINDOW = 3.0  # the window around a weak detection, in its own widths
MIN_CONFIDENCE = 0.5  # MediaPipe's detection confidence for a second opinion


def confirmed(image: Image.Image, faces: list[Face]) -> list[bool]:
    """For each face: True when dlib is sure of it (a candidate) or MediaPipe finds a face whose centre lies inside
    its box in a window around it; False for a weak detection MediaPipe does not see as a face."""
    out = []
    for face in faces:
        out.append(face.is_candidate or _seen_by_mediapipe(image, face))
    return out


def _seen_by_mediapipe(image: Image.Image, face: Face) -> bool:
    import mediapipe as mp

    from studio.quiet import native_stderr_quiet

    cx, cy = face.center
    half = WINDOW * max(face.width, face.height) / 2
    window = (max(0, int(cx - half)), max(0, int(cy - half)), min(image.width, int(cx + half)),
              min(image.height, int(cy + half)))
    if window[2] - window[0] < 8 or window[3] - window[1] < 8:
        return False
    crop = np.ascontiguousarray(np.asarray(image.convert("RGB").crop(window)))
    height, width = crop.shape[:2]
    with _LOCK, native_stderr_quiet(), mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=MIN_CONFIDENCE) as detector:
        found = detector.process(crop).detections or []
    left, top, right, bottom = face.box
    for detection in found:
        box = detection.location_data.relative_bounding_box
        x = window[0] + (box.xmin + box.width / 2) * width
        y = window[1] + (box.ymin + box.height / 2) * height
        if left <= x <= right and top <= y <= bottom:
            return True
    return False
