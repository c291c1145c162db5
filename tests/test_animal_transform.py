"""Face to animal end to end on the CPU: builtin:tiny with builtin:tiny-controlnet, real photos, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut, two_faces
from studio.generate.animal import (ANIMALS, AnimalRequest, ControlChoice, NoFaceFound, animal_prompt,
                                    default_controlnet, face_to_animal, preview_controls)
from studio.generate.parameters import parse_control_units, parse_parameters, read_png_parameters


def _coffee() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee())


def _request(**changes) -> AnimalRequest:
    fields = dict(image=astronaut(), model="builtin:tiny", size=64, steps=3, seed=5)
    return AnimalRequest(**{**fields, **changes})


def test_presets_follow_seed_003():
    assert {"dog", "cat", "fox", "bear", "rabbit", "lion"} <= set(ANIMALS)
    assert animal_prompt("dog") == ("dog, close up, face portrait", ANIMALS["dog"].negative_prompt)
    assert animal_prompt("dog", "golden retriever")[0] == "golden retriever dog, close up, face portrait"
    assert len(ANIMALS["dog"].breeds) >= 10 and all(p.breeds for p in ANIMALS.values())
    d = AnimalRequest(image=None)
    assert (d.steps, d.strength) == (20, 0.75)
    assert d.size is None and d.sampler is None and d.cfg is None  # the model's: seed 003's 512 px, DPM++ 2S a, 7 on SD
    with pytest.raises(ValueError, match="`animal` 'unicorn' is unknown; valid animals are: dog, cat"):
        animal_prompt("unicorn")


def test_transform_over_seeds_saves_pngs_with_every_controlnet_setting(studio):
    controls = [ControlChoice("mediapipe_face", weight=1.25), ControlChoice("openpose_face", weight=0.5,
                                                                            guidance_end=0.8)]
    progress = []
    result = face_to_animal(studio, _request(controls=controls, breed="pug", n_seeds=2),
                            progress=lambda f, m: progress.append(f))
    # 1. One result per seed, the model's size, saved with parameters under workspace/outputs/.
    assert [a.seed for a in result.images] == [5, 6]
    assert all(a.image.size == (64, 64) for a in result.images)
    assert result.prompt == "pug dog, close up, face portrait"
    for item in result.images:
        assert item.path.parent.parent == studio.settings.outputs_dir
        assert read_png_parameters(item.path) == item.parameters
    parsed = parse_parameters(result.images[1].parameters)
    assert parsed["Seed"] == "6" and parsed["Sampler"] == "DPM++ 2S a" and parsed["Denoising strength"] == "0.75"
    units = parse_control_units(parsed)
    assert units[0] == {"Module": "mediapipe_face", "Model": "builtin:tiny-controlnet", "Weight": "1.25",
                        "Resize Mode": "Just Resize", "Processor Res": "512", "Threshold A": "1", "Threshold B": "0.5",
                        "Guidance Start": "0", "Guidance End": "1", "Control Mode": "ControlNet is more important"}
    assert units[1]["Module"] == "openpose_face" and units[1]["Guidance End"] == "0.8"
    # 2. Original | two controls | two results, side by side, also saved.
    assert result.sheet.size[1] == 256 and result.sheet.size[0] >= 5 * 256  # 64 px pictures scaled up to be seen
    assert result.sheet_path.is_file()
    assert progress[-1] == 1.0 and progress == sorted(progress)


def test_an_sd_model_gets_seed_003s_sampler_and_cfg(session_studio):
    result = face_to_animal(session_studio, _request(controls=[ControlChoice("canny", model="none")], save=False))
    parsed = parse_parameters(result.images[0].parameters)
    assert (parsed["Sampler"], parsed["CFG scale"]) == ("DPM++ 2S a", "7")


def test_same_seed_same_animal_other_seed_other_animal(session_studio):
    first = face_to_animal(session_studio, _request(controls=[ControlChoice("canny")], n_seeds=2, save=False))
    # size None: builtin:tiny's native 64 px, the size the first run asked for.
    again = face_to_animal(session_studio, _request(controls=[ControlChoice("canny")], seed=6, size=None, save=False))
    raw = [np.asarray(a.raw, dtype=np.float64) for a in first.images]
    np.testing.assert_array_equal(np.asarray(again.images[0].raw, dtype=np.float64), raw[1])
    assert np.abs(raw[0] - raw[1]).mean() > 1.0
    assert first.images[0].path is None and first.sheet_path is None


def test_crop_to_face_and_paste_back(session_studio):
    photo = astronaut()
    result = face_to_animal(session_studio, _request(controls=[ControlChoice("openpose_face")], crop_to_face=True,
                                                     save=False))
    preview = result.preview
    (item,) = result.images
    left, top, right, bottom = preview.crop_box
    face = preview.face.box
    assert right - left == bottom - top and left <= face[0] and right >= face[2] and top <= face[1]
    assert item.raw.size == (64, 64) and item.image.size == photo.size
    before, after = np.asarray(photo, dtype=np.int16), np.asarray(item.image, dtype=np.int16)
    outside = np.ones(before.shape[:2], dtype=bool)
    outside[top:bottom, left:right] = False
    assert (before[outside] == after[outside]).all()  # the rest of the photo is untouched
    inner = (slice(top + 20, bottom - 20), slice(left + 20, right - 20))
    assert np.abs(before[inner] - after[inner]).mean() > 10  # the face was replaced


def test_no_face_says_so_and_canny_still_works(session_studio):
    with pytest.raises(NoFaceFound, match="no face found.*mediapipe_face needs one; use the canny control") as info:
        preview_controls(_request(image=_coffee()))
    assert info.value.photo.size == _coffee().size
    with pytest.raises(NoFaceFound, match="crop to face"):
        preview_controls(_request(image=_coffee(), controls=[ControlChoice("canny")], crop_to_face=True))
    result = face_to_animal(session_studio, _request(image=_coffee(), controls=[ControlChoice("canny")], save=False))
    assert result.images[0].image.size == (96, 64)  # coffee is 600x400: the aspect kept, 64 px at least


def test_several_faces_largest_by_default_or_the_chosen_index():
    photo = two_faces()  # the astronaut at x < 512, Grace Hopper to the right
    default = preview_controls(_request(image=photo, controls=[ControlChoice("openpose_face")], crop_to_face=True))
    chosen = preview_controls(_request(image=photo, controls=[ControlChoice("openpose_face")], crop_to_face=True,
                                       face_index=1))
    assert len(default.faces) == 2 and default.face.area >= chosen.face.area
    assert {default.face.center[0] < 512, chosen.face.center[0] < 512} == {True, False}
    assert "2 faces found" in default.notes[0]
    with pytest.raises(ValueError, match="`face_index` is 2 but only 2 face"):
        preview_controls(_request(image=photo, controls=[ControlChoice("openpose_face")], face_index=2))


def test_huge_photo_is_scaled_down_first():
    huge = astronaut().resize((3000, 3000))
    preview = preview_controls(_request(image=huge, controls=[ControlChoice("canny")], max_input_side=1024))
    assert preview.photo.size == (1024, 1024) and preview.work.size == (64, 64)
    assert "scaled down from 3000x3000 to 1024x1024" in preview.notes[0]


def test_preview_only_controlnet_is_plain_img2img(session_studio):
    result = face_to_animal(session_studio, _request(controls=[ControlChoice("canny", model="none")], save=False))
    assert "ControlNet 0" not in result.images[0].parameters
    with pytest.raises(ValueError, match="txt2img needs a ControlNet"):
        face_to_animal(session_studio, _request(controls=[ControlChoice("canny", model="none")], task="txt2img"))


def test_models_no_controlnet_fits_say_so_and_run_img2img(session_studio, tmp_path):
    flux = face_to_animal(session_studio, _request(model="builtin:tiny-flux", controls=[ControlChoice("canny")],
                                                   save=False))
    parsed = parse_parameters(flux.images[0].parameters)
    assert "ControlNet 0" not in parsed and parsed["Sampler"] == "Euler" and parsed["CFG scale"] == "1"
    assert any("no canny ControlNet fits builtin:tiny-flux" in n for n in flux.notes)
    with pytest.raises(ValueError, match="txt2img needs a ControlNet, and none is used \\(no canny ControlNet fits"):
        face_to_animal(session_studio, _request(model="builtin:tiny-flux", controls=[ControlChoice("canny")],
                                                task="txt2img"))
    # what a real model of each family gets by default, told from its folder without loading it
    for family, module, expected in [("sdxl", "canny", "diffusers/controlnet-canny-sdxl-1.0"),
                                     ("sdxl", "mediapipe_face", "none"),
                                     ("sd1", "mediapipe_face", "CrucibleAI/ControlNetMediaPipeFace/diffusion_sd15")]:
        folder = tmp_path / f"{family}-{module}"
        folder.mkdir()
        (folder / "model_index.json").write_text(
            '{"_class_name": "%s"}' % ("StableDiffusionXLPipeline" if family == "sdxl" else "StableDiffusionPipeline"))
        assert default_controlnet(session_studio, str(folder), module) == expected


def test_txt2img_with_controlnet_has_no_denoising_strength(session_studio):
    result = face_to_animal(session_studio, _request(controls=[ControlChoice("canny")], task="txt2img", save=False))
    parsed = parse_parameters(result.images[0].parameters)
    assert "Denoising strength" not in parsed and parse_control_units(parsed)[0]["Module"] == "canny"


@pytest.mark.parametrize("changes, message", [
    (dict(controls=[]), "`controls` is empty"),
    (dict(n_seeds=0), "`n_seeds` must be between 1 and 16 but is 0"),
    (dict(size=32), "`size` must be between 64 and 2048 but is 32"),
    (dict(task="inpaint"), "`task` must be img2img or txt2img but is 'inpaint'"),
    (dict(image="photo.jpg"), "`image` must be a picture but is str"),
])
def test_bad_requests_name_the_argument(changes, message):
    with pytest.raises(ValueError, match=message):
        _request(**changes).check()


def test_command_line(studio, tmp_path, capsys):
    from studio.cli import main

    photo = tmp_path / "astronaut.png"
    astronaut().save(photo)
    common = ["--root", str(tmp_path), "--models-dir", str(studio.settings.models_dir), "--offline", "animal",
              "--model", "builtin:tiny", "--size", "64", "--steps", "2", "--out", str(tmp_path / "out")]
    code = main(common + ["--image", str(photo), "--animal", "cat", "--breed", "siamese", "--control", "openpose_face",
                          "--control", "canny", "--control-scale", "0.8", "--control-scale", "0.6", "--seed", "9",
                          "--n-seeds", "2", "--strength", "0.6"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 3 and lines[0].endswith("seed=9") and lines[2].endswith("side by side")
    parsed = parse_parameters(read_png_parameters(lines[1].split("\t")[0]))
    assert parsed["prompt"] == "siamese cat, close up, face portrait" and parsed["Denoising strength"] == "0.6"
    assert [u["Weight"] for u in parse_control_units(parsed)] == ["0.8", "0.6"]
    # Bad input: one line on stderr and exit code 2.
    _coffee().save(tmp_path / "coffee.png")
    assert main(common + ["--image", str(tmp_path / "coffee.png")]) == 2
    assert "no face found" in capsys.readouterr().err
    assert main(common + ["--image", str(photo), "--control", "canny", "--controlnet", "builtin:tiny-controlnet",
                          "--model", "builtin:tiny-xl"]) == 2
    assert "made for another family" in capsys.readouterr().err
