"""Crop geometry: square around the face with margin, clamped to the picture; aspect buckets; no upscaling."""

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut
from studio.data.crop import CropSettings, blur_faces, bucket, frame
from studio.faces import detect_faces, main_face


@pytest.fixture(scope="module")
def canvas_and_face():
    """The astronaut pasted off-centre into a big canvas, and her face as detected there."""
    canvas = Image.new("RGB", (1600, 1200), (90, 110, 130))
    canvas.paste(astronaut(), (900, 300))
    return canvas, main_face(detect_faces(canvas))


def test_square_is_centred_on_the_face_with_margin(canvas_and_face):
    canvas, face = canvas_and_face
    framed = frame(canvas, face, CropSettings(512, "face", margin=2.0))
    left, top, right, bottom = framed.box
    side = right - left
    assert side == bottom - top == max(512, round(max(face.width, face.height) * 5))
    assert abs((left + right) / 2 - face.center[0]) <= 1 and abs((top + bottom) / 2 - face.center[1]) <= 1
    assert framed.image.size == (512, 512) and framed.flags == []


def test_crop_is_moved_inside_the_picture(canvas_and_face):
    canvas, face = canvas_and_face
    framed = frame(canvas, face, CropSettings(1024, "face", margin=8.0))
    left, top, right, bottom = framed.box
    assert right - left == bottom - top == 1200 and top == 0 and right <= 1600
    assert framed.image.size == (1024, 1024)


def test_small_pictures_are_flagged_not_upscaled():
    framed = frame(astronaut().resize((300, 400)), None, CropSettings(512, "center"))
    assert framed.image.size == (300, 300) and framed.flags[0].startswith("small")


def test_keep_aspect_buckets():
    assert bucket(768, 512, 512) == (640, 384)
    assert bucket(512, 512, 1024) == (1024, 1024)
    w, h = bucket(3000, 1000, 512)
    assert w % 64 == h % 64 == 0 and w * h <= 512 * 512 and abs(w / h - 2.0) < 0.25
    framed = frame(Image.new("RGB", (1536, 1024)), None, CropSettings(512, "keep-aspect"))
    assert framed.image.size == (640, 384) and framed.box == (0, 51, 1536, 973)


def test_blur_changes_only_the_face(canvas_and_face):
    canvas, face = canvas_and_face
    out = np.asarray(blur_faces(canvas, [face]), float)
    before = np.asarray(canvas, float)
    left, top, right, bottom = face.box
    assert np.abs(out[top:bottom, left:right] - before[top:bottom, left:right]).mean() > 10
    assert np.array_equal(out[:, :800], before[:, :800])
    assert detect_faces(Image.fromarray(out.astype(np.uint8))) == [] or all(
        f.score < 0.3 for f in detect_faces(Image.fromarray(out.astype(np.uint8))))
