"""Control images from real photos: mediapipe face mesh, OpenPose face keypoints and canny on skimage's astronaut."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut, two_faces
from studio.faces import detect_faces, main_face
from studio.faces.control import ControlOptions, control_image, is_blank, openpose_face


@pytest.fixture(scope="module")
def astronaut_faces():
    return [f for f in detect_faces(astronaut(), encode=False) if f.is_candidate]


def _drawn_box(image: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of everything drawn (non-black) on a control image."""
    ys, xs = np.nonzero(np.asarray(image.convert("L")))
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _inside(inner, outer, slack: float) -> bool:
    return (inner[0] >= outer[0] - slack and inner[1] >= outer[1] - slack and inner[2] <= outer[2] + slack
            and inner[3] <= outer[3] + slack)


def test_astronaut_has_one_face_with_68_landmarks(astronaut_faces):
    (face,) = astronaut_faces
    assert face.landmarks.shape == (68, 2)
    assert main_face(astronaut_faces) is face


def test_mediapipe_face_mesh_is_drawn_on_her_face(astronaut_faces):
    image = control_image("mediapipe_face", astronaut(), astronaut_faces, (256, 256))
    assert image.size == (256, 256) and image.mode == "RGB"
    assert not is_blank(image)
    pixels = np.asarray(image)
    assert 0.002 < (pixels.max(axis=2) > 0).mean() < 0.1  # thin lines, not a filled picture
    assert len({tuple(p) for p in pixels.reshape(-1, 3)[::7]}) > 3  # coloured by feature: eyes, brows, lips, oval
    (face,) = astronaut_faces
    box = tuple(v / 2 for v in face.box)  # the photo is 512 px, the control image 256 px
    assert _inside(_drawn_box(image), box, slack=20)


@pytest.mark.parametrize("module", ["mediapipe_face", "openpose_face"])
def test_with_two_faces_the_chosen_one_is_drawn(module):
    photo = two_faces()
    faces = [f for f in detect_faces(photo, encode=False) if f.is_candidate]
    assert len(faces) == 2
    for chosen in (faces, faces[::-1]):
        drawn = _drawn_box(control_image(module, photo, chosen, photo.size))
        assert _inside(drawn, chosen[0].box, slack=25)  # the chosen face only, not the other one


def test_openpose_face_draws_70_white_dots_inside_the_face(astronaut_faces):
    image = control_image("openpose_face", astronaut(), astronaut_faces, (512, 512))
    pixels = np.asarray(image)
    assert image.size == (512, 512)
    assert set(np.unique(pixels)) <= {0, 255}  # white dots on black, as OpenPose draws faces
    (face,) = astronaut_faces
    points = face.landmarks.astype(int)
    assert (pixels[points[:, 1], points[:, 0]] == 255).all()  # a dot on every landmark
    extent = (*points.min(axis=0), *(points.max(axis=0) + 1))
    assert _inside(_drawn_box(image), extent, slack=4)  # and nothing elsewhere (radius 3 at 512 px)
    import cv2

    count, _ = cv2.connectedComponents((pixels[..., 0] > 0).astype(np.uint8))
    assert 20 < count - 1 <= 70  # 68 landmarks + 2 pupils, some dots touching at this face size


def test_openpose_dots_scale_with_the_picture(astronaut_faces):
    small = openpose_face(astronaut_faces, (512, 512))
    big = openpose_face([f.scaled(2.0) for f in astronaut_faces], (1024, 1024))
    assert (np.asarray(big) > 0).sum() > 3 * (np.asarray(small) > 0).sum()


def test_canny_thresholds_change_the_edges():
    soft = control_image("canny", astronaut(), [], (128, 96), ControlOptions(canny_low=20, canny_high=60))
    hard = control_image("canny", astronaut(), [], (128, 96), ControlOptions(canny_low=200, canny_high=250))
    assert soft.size == (128, 96)
    assert (np.asarray(soft) > 0).mean() > 1.5 * (np.asarray(hard) > 0).mean() > 0


def test_a_photo_without_a_face():
    from skimage import data

    coffee = Image.fromarray(data.coffee())
    assert detect_faces(coffee, encode=False) == []
    assert is_blank(control_image("mediapipe_face", coffee, [], (64, 64)))
    assert is_blank(control_image("openpose_face", coffee, [], (64, 64)))
    assert not is_blank(control_image("canny", coffee, [], (64, 64)))


@pytest.mark.parametrize("options, message", [
    (ControlOptions(max_faces=0), "`max_faces` must be between 1 and 10 but is 0"),
    (ControlOptions(canny_low=200, canny_high=100), "canny thresholds .* 200 and 100"),
    (ControlOptions(min_confidence=0), "`min_confidence`"),
])
def test_bad_options_name_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        control_image("canny", astronaut(), [], (64, 64), options)


def test_unknown_module_lists_the_valid_ones():
    with pytest.raises(ValueError, match="control module 'depth' is unknown; valid modules are: mediapipe_face"):
        control_image("depth", astronaut(), [], (64, 64))
