"""Face detection, distances and the identity check on real photos (skimage's astronaut, matplotlib's Grace Hopper)."""

import numpy as np
import pytest

from fixtures_faces import astronaut, astronaut_variants, hopper, two_faces
from studio.faces import check_identity, detect_faces, encode_reference, face_distance, main_face, sim_scores


def test_detects_the_astronaut_with_landmarks_and_encoding():
    faces = detect_faces(astronaut())
    face = main_face(faces)
    left, top, right, bottom = face.box
    assert 150 < left < right < 290 and 50 < top < bottom < 190  # her face, not the mission patch lower down
    assert face.landmarks.shape == (68, 2) and face.encoding.shape == (128,)
    eyes = face.landmark_groups()["left_eye"]
    assert all(left <= x <= right and top <= y <= bottom for x, y in eyes)
    assert face.css == (top, right, bottom, left)


def test_large_images_are_shrunk_for_detection_and_boxes_mapped_back():
    big = astronaut().resize((2048, 2048))
    face = main_face(detect_faces(big, max_side=512))
    small = main_face(detect_faces(astronaut()))
    assert np.allclose(np.array(face.box) / 4, small.box, atol=6)


def test_no_face_in_a_plain_picture():
    from PIL import Image

    assert detect_faces(Image.new("RGB", (256, 256), (120, 130, 140))) == []


def test_distances_tell_two_people_apart():
    a = main_face(detect_faces(astronaut())).encoding
    h = main_face(detect_faces(hopper())).encoding
    variant = main_face(detect_faces(astronaut_variants(2)[1])).encoding
    same, other = face_distance(np.stack([variant, h]), a)
    assert same < 0.3 and other > 0.6


def test_reference_and_sim_scores():
    ref = encode_reference([astronaut_variants(1)[0]])
    from PIL import Image

    scores = sim_scores([astronaut(), hopper(), two_faces(), Image.new("RGB", (128, 128), (40, 40, 40))], ref)
    assert scores[0] < 0.4 and scores[1] > 0.6
    assert scores[2] < 0.4  # the composite holds the astronaut too: the closest face counts
    assert scores[3] is None  # no face found


def test_encode_reference_without_faces_names_the_argument():
    from PIL import Image

    with pytest.raises(ValueError, match="reference"):
        encode_reference([Image.new("RGB", (128, 128))])


def test_identity_check_flags_the_outlier_and_the_faceless():
    from PIL import Image

    images = astronaut_variants(4) + [hopper(), Image.new("RGB", (200, 200), (90, 90, 90))]
    rows = check_identity([detect_faces(im) for im in images], tolerance=0.4)
    assert [r.flags for r in rows[:4]] == [[], [], [], []]
    assert rows[4].flags == ["far from set"] and rows[4].to_set > 0.6
    assert rows[5].flags == ["no face"] and rows[5].score is None


def test_identity_check_with_a_reference_picks_the_subject_in_a_group_photo():
    ref = encode_reference([astronaut()])
    faces = detect_faces(two_faces())
    rows = check_identity([faces], reference=ref)
    subject = faces[rows[0].subject]
    assert subject.center[0] < 512  # the astronaut on the left, though Grace Hopper's face is larger
    assert "several faces" in rows[0].flags and rows[0].to_reference < 0.1


def test_tolerance_is_checked():
    with pytest.raises(ValueError, match="tolerance"):
        check_identity([], tolerance=0)
