"""Face fix on scikit-image's astronaut: only the face region is re-drawn, each face's sim-score is reported before and
after (against the face itself, or a reference set), ADetailer's keys are written and read back; no face is said."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut, astronaut_variants
from studio.generate.facefix import FaceFixRequest, face_fix_fields, fix_faces
from studio.generate.parameters import parse_parameters, read_png_parameters

# Where the astronaut's face is (dlib's box, left, top, right, bottom), looked up once by hand and written here.
FACE = (175, 76, 266, 167)


def quick(**kw):
    base = dict(image=astronaut(), prompt="a photo of a woman", model="builtin:tiny", steps=4, seed=1)
    return FaceFixRequest(**{**base, **kw})


def px(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_face_fix_redraws_the_face_only_and_reports_both_scores(studio):
    result = fix_faces(studio, quick())
    assert len(result.faces) == 1  # the mission patch (score about 0.1) is not a face at the default confidence
    face = result.faces[0]
    assert np.abs(np.array(face.box) - FACE).max() <= 3
    # 1. Every changed pixel lies in the face box grown by a quarter of its side, the 4 px dilation and the soft edge
    #    of the 4 px mask blur (under 12 px); pixels inside the face did change.
    changed = np.abs(px(result.image) - px(astronaut())).max(axis=2) > 0
    left, top, right, bottom = FACE
    margin = round(0.25 * (right - left)) + 4 + 12
    allowed = np.zeros_like(changed)
    allowed[top - margin:bottom + margin, left - margin:right + margin] = True
    assert changed.any() and not (changed & ~allowed).any()
    assert changed[top:bottom, left:right].mean() > 0.9
    # 2. Against itself the face scores 0 before; after, the distance the fix moved it (a random model: far).
    assert face.sim_before == 0.0 and face.sim_after > 0.2
    assert isinstance(face.found_after, bool)
    assert result.against == "the face before the fix" and "face 0: sim-score 0.000 -> " in result.message
    # 3. Saved with ADetailer's keys, which read back as the request's settings.
    parsed = parse_parameters(read_png_parameters(result.path))
    assert parsed["prompt"] == "a photo of a woman" and parsed["Size"] == "512x512" and parsed["Seed"] == "1"
    assert "Denoising strength" not in parsed  # the face crop's inpaint settings say nothing about the picture
    assert {k: v for k, v in parsed.items() if k.startswith("ADetailer")} == {
        "ADetailer model": "dlib_hog_face", "ADetailer prompt": "a photo of a woman", "ADetailer confidence": "0.3",
        "ADetailer dilate erode": "4", "ADetailer mask blur": "4", "ADetailer denoising strength": "0.4",
        "ADetailer inpaint only masked": "True", "ADetailer inpaint padding": "32"}
    assert face_fix_fields(parsed) == {"prompt": "a photo of a woman", "confidence": 0.3, "dilate": 4,
                                       "mask_blur": 4, "strength": 0.4, "padding": 32, "only_masked": True}


def test_scores_against_a_reference_set_and_the_pictures_own_prompt_and_seed(studio, tmp_path):
    from studio.faces import encode_reference

    folder = tmp_path / "me"
    folder.mkdir()
    for i, im in enumerate(astronaut_variants(2)):
        im.save(folder / f"{i}.jpg", quality=92)
    own = ("a portrait of an astronaut\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 77, "
           "Size: 512x512, Model: sd15, Version: v1.10.1")
    result = fix_faces(studio, quick(prompt="[PROMPT], detailed face", parameters=own,
                                     reference=encode_reference(folder), reference_name="folder me (2 faces)",
                                     strength=0.3, dilate=8, size=64, seed=-1))
    face = result.faces[0]
    assert face.sim_before < 0.4  # the astronaut is the reference's person
    assert face.sim_after > face.sim_before  # the random model drew someone (something) else
    assert result.against == "folder me (2 faces)"
    parsed = parse_parameters(result.parameters)
    assert parsed["prompt"] == "a portrait of an astronaut" and parsed["negative_prompt"] == "blurry"
    assert parsed["Seed"] == "77" and parsed["Model"] == "sd15"  # the picture's own settings, kept
    assert result.path.name.endswith("-77-facefix.png")  # seed -1: the faces were re-drawn with the picture's seed
    assert parsed["ADetailer prompt"] == "[PROMPT], detailed face"
    assert face_fix_fields(parsed)["size"] == 64 and face_fix_fields(parsed)["dilate"] == 8


def test_no_face_is_said_and_nothing_is_written(studio):
    from skimage import data

    coffee = Image.fromarray(data.coffee())
    result = fix_faces(studio, quick(image=coffee))
    assert result.faces == [] and result.path is None
    assert result.message.startswith("no face found in the 600x400 picture") and "nothing was changed" in result.message
    assert np.array_equal(px(result.image), px(coffee))
    assert not list(studio.settings.outputs_dir.rglob("*.png"))


@pytest.mark.parametrize("change, message", [
    (dict(prompt=""), "`prompt` is empty and the picture carries no prompt of its own"),
    (dict(strength=0), "`strength` must be in \\(0, 1\\] but is 0"),
    (dict(size=100), "`size` must be a multiple of 8 between 64 and 2048 but is 100"),
    (dict(image="face.png"), "`image` must be a picture but is str"),
])
def test_bad_face_fix_input_names_the_argument(session_studio, change, message):
    with pytest.raises(ValueError, match=message):
        fix_faces(session_studio, quick(**change))
