"""The clean-up commands: generate --mask and --hires-*, upscale, fix-faces; one printed line per file, exit 2 with
one line on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fixtures_faces import astronaut
from studio.cli import main
from studio.generate.parameters import read_png_parameters
from tests.weights_files import make_upscaler as tiny_upscaler


def cli(settings, *args):
    return ["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--offline", *args]


def run_cli(settings, capsys, *args):
    try:
        code = main(cli(settings, *args))
    except SystemExit as e:  # argparse's own errors leave through exit()
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err.strip()


def test_generate_inpaints_where_the_mask_is_white(settings, tmp_path, capsys):
    picture = astronaut().resize((96, 64))
    picture.save(tmp_path / "in.png")
    mask = Image.new("RGB", (96, 64), "black")
    mask.paste((255, 255, 255), (20, 10, 50, 40))
    mask.save(tmp_path / "mask.png")
    code, lines, _ = run_cli(settings, capsys, "generate", "--model", "builtin:tiny", "--prompt", "a dog",
                             "--steps", "2", "--seed", "4", "--init-image", str(tmp_path / "in.png"),
                             "--mask", str(tmp_path / "mask.png"), "--mask-blur", "0", "--inpaint-area", "only masked",
                             "--out", str(tmp_path / "out"))
    assert code == 0 and len(lines) == 1
    out = Image.open(lines[0].split("\t")[0])
    assert out.size == (96, 64)
    keep = np.ones((64, 96), dtype=bool)
    keep[10:40, 20:50] = False
    assert np.array_equal(np.asarray(out.convert("RGB"))[keep], np.asarray(picture)[keep])
    assert "Inpaint area: Only masked, Masked area padding: 32" in read_png_parameters(out)


def test_generate_with_hires_fix(settings, tmp_path, capsys):
    code, lines, _ = run_cli(settings, capsys, "generate", "--model", "builtin:tiny", "--prompt", "a dog",
                             "--steps", "2", "--seed", "4", "--hires-scale", "2", "--hires-strength", "0.5",
                             "--out", str(tmp_path / "out"))
    assert code == 0 and len(lines) == 1
    path = lines[0].split("\t")[0]
    assert Image.open(path).size == (128, 128)
    assert "Denoising strength: 0.5, Hires upscale: 2, Hires upscaler: Lanczos" in read_png_parameters(path)


def test_upscale_with_lanczos_and_a_tiled_model(settings, tmp_path, capsys):
    astronaut().resize((150, 100)).save(tmp_path / "in.png")
    code, lines, _ = run_cli(settings, capsys, "upscale", "--image", str(tmp_path / "in.png"), "--upscaler", "lanczos",
                             "--scale", "4", "--out", str(tmp_path / "out"))
    assert code == 0 and len(lines) == 1 and lines[0].endswith("\t600x400\tupscaler=Lanczos")
    assert Image.open(lines[0].split("\t")[0]).size == (600, 400)
    model, _ = tiny_upscaler(tmp_path / "4x-tiny.safetensors")
    code, lines, _ = run_cli(settings, capsys, "upscale", "--image", str(tmp_path / "in.png"), "--upscaler", str(model),
                             "--scale", "4", "--tile", "64", "--tile-overlap", "8", "--out", str(tmp_path / "out"))
    assert code == 0 and len(lines) == 1 and lines[0].endswith("\t600x400\tupscaler=4x-tiny\ttiles=64px")
    assert len(list((tmp_path / "out").glob("*.png"))) == 2


def test_fix_faces_prints_the_scores_and_says_when_there_is_no_face(settings, tmp_path, capsys):
    from skimage import data

    astronaut().save(tmp_path / "astronaut.png")
    code, lines, _ = run_cli(settings, capsys, "fix-faces", "--image", str(tmp_path / "astronaut.png"),
                             "--model", "builtin:tiny", "--prompt", "a photo of a woman", "--steps", "3",
                             "--seed", "1", "--out", str(tmp_path / "out"))
    assert code == 0 and len(lines) == 1
    path, scores = lines[0].split("\t")
    assert Image.open(path).size == (512, 512)
    assert scores.startswith("against the face before the fix: face 0: sim-score 0.000 -> ")
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.png")
    code, lines, err = run_cli(settings, capsys, "fix-faces", "--image", str(tmp_path / "coffee.png"),
                               "--model", "builtin:tiny", "--prompt", "x", "--out", str(tmp_path / "none"))
    assert code == 1 and lines == [] and "no face found in the 600x400 picture" in err
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("args, message", [
    (["generate", "--prompt", "x", "--mask", "m.png", "--out", "o"], "argument --mask: m.png does not exist"),
    (["generate", "--prompt", "x", "--hires-scale", "9", "--out", "o"], "`hires_scale` must be between 1"),
    (["generate", "--prompt", "x", "--inpaint-area", "all", "--out", "o"], "invalid choice: 'all'"),
    (["upscale", "--image", "/no/such.png", "--out", "o"], "argument --image: /no/such.png does not exist"),
    (["upscale", "--image", "{png}", "--upscaler", "nowhere", "--out", "o"], "upscaler 'nowhere' not found"),
    (["fix-faces", "--image", "{png}", "--strength", "2", "--out", "o"], "`strength` must be in (0, 1]"),
    (["fix-faces", "--out", "o"], "required: --image"),
])
def test_bad_arguments_exit_2_with_one_line(settings, tmp_path, capsys, args, message):
    Image.new("RGB", (64, 64)).save(tmp_path / "p.png")
    code, _, err = run_cli(settings, capsys, *[a.replace("{png}", str(tmp_path / "p.png")) for a in args])
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
