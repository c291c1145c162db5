"""`python -m studio evaluate`: one line per image, the summary table, files on disk, and exit code 2 for bad input."""

from __future__ import annotations

import pytest

from fixtures_faces import astronaut
from studio.cli import main


def _cli(settings, *args) -> list[str]:
    return ["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--workspace",
            str(settings.workspace_dir), "--device", "cpu", "--offline", "evaluate", *args]


@pytest.fixture
def reference(tmp_path):
    folder = tmp_path / "reference"
    folder.mkdir()
    astronaut().save(folder / "astronaut.png")
    return folder


def test_evaluate_prints_a_line_per_image_and_the_table(settings, reference, capsys):
    code = main(_cli(settings, "--name", "cli-run", "--prompt", "a photo of a man", "--prompt", "a dog",
                     "--n-seeds", "2", "--variant", "control=builtin:tiny", "--variant", "again=",
                     "--reference", str(reference), "--clip", "builtin:tiny-clip",
                     "--steps", "2", "--width", "64", "--height", "64"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    images = [line for line in lines if "\tvariant=" in line]
    assert len(images) == 8
    assert "variant=control\tseed=335728730\tsim=no face\tclip=" in images[0]
    assert images[0].split("\t")[0].endswith(".png")
    header = next(i for i, line in enumerate(lines) if line.startswith("variant "))
    assert lines[header + 1].split()[:5] == ["control", "4", "0", "4", "0"]
    assert lines[header + 2].split()[:5] == ["again", "4", "0", "4", "0"]
    assert "random weights for tests, the scores mean nothing" in captured.out
    assert "[100%] done" in captured.err
    folder = settings.workspace_dir / "evaluations" / "cli-run"
    assert (folder / "report.json").is_file() and (folder / "chart_clip_per_variant.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--variant", "only=builtin:tiny"], "`variants` must hold at least 2 variants to compare but holds 1"),
    (["--variant", "a=builtin:tiny", "--variant", "b=nope:model"], "model 'nope:model' not found"),
    (["--variant", "a=", "--variant", "b=", "--reference", "/no/such/folder"], "`reference` '/no/such/folder' not found"),
    (["--variant", "a=", "--variant", "b=", "--seeds", "1,1"], "distinct seeds"),
    (["--variant", "a=", "--variant", "b=", "--clip", "missing-clip"], "`clip_model` 'missing-clip' not found"),
    (["--variant", "a=", "--variant", "b=", "--seeds", "x,y"], "`seeds` must be a whole number but is 'x'"),
    (["--variant", "a=", "--variant", "b=", "--seeds", "1", "--n-seeds", "2"], "not allowed with argument"),
])
def test_bad_arguments_exit_2_with_one_line(settings, reference, capsys, args, message):
    argv = ["--name", "bad", "--prompt", "a dog", "--reference", str(reference), "--steps", "2", *args]
    try:
        code = main(_cli(settings, *argv))
    except SystemExit as e:  # argparse's own errors leave through exit()
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1] and err[-1].startswith("python -m studio evaluate")
    assert not (settings.workspace_dir / "evaluations" / "bad").exists()


def test_pocket_evaluation_needs_no_prompt_seeds_or_reference(settings, capsys):
    """builtin:pocket's own prompts and seeds are the defaults, and its checker says what was drawn."""
    code = main(_cli(settings, "--name", "pocket-cli", "--variant", "a=builtin:pocket", "--variant", "b=builtin:pocket",
                     "--steps", "4"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "defaults: the model's own prompts, 4 seeds and CFG 4" in captured.err
    images = [line for line in captured.out.splitlines() if "\tvariant=" in line]
    assert len(images) == 2 * 3 * 4 and "sim=" not in captured.out
    assert images[0].split("\t")[1:4] == ["variant=a", "seed=0", images[0].split("\t")[3]]
    assert images[0].split("\t")[3].startswith("drawn=") and images[0].endswith(
        "prompt='a red circle on a white background'")
    header = next(line for line in captured.out.splitlines() if line.startswith("variant "))
    assert header.split() == ["variant", "images", "drawn", "as", "asked", "shape", "right", "colour", "right",
                              "drawn", "(pocket", "checker)"]
    assert "No reference chosen: no likeness (sim-score)." in captured.out
    assert "No CLIP model chosen: no CLIP score." in captured.out
