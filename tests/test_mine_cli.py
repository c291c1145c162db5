"""`python -m studio mine`: a prompt on builtin:tiny in a child, a folder to a target, --resume, --to-dataset, Ctrl-C,
and one-line errors with exit code 2."""

from __future__ import annotations

import pytest

from fixtures_faces import astronaut_variants, hopper
from studio.cli import main


def cli(settings, *args):
    return ["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--offline", "mine", *args]


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, im in enumerate(astronaut_variants(3)):
        im.save(folder / f"astro-{i}.jpg", quality=90)
    hopper().save(folder / "hopper.jpg", quality=90)
    return folder


def test_a_prompt_is_mined_in_a_child_and_faces_not_found_are_counted(settings, capsys):
    code = main(cli(settings, "--name", "amari", "--prompt", "a photo of a young woman, portrait", "--model",
                    "builtin:tiny", "--steps", "2", "--tolerance", "0.4", "--target", "300", "--max-candidates", "3"))
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"mining amari: {settings.workspace_dir / 'mining' / 'amari'}" in out
    assert "finished: candidate budget spent: 3 candidates" in out
    assert "amari: done, 3 candidates" in out and "no face 3" in out


def test_a_folder_to_a_target_resumed_then_made_a_dataset(settings, photos, capsys):
    from studio.data import load_dataset

    assert main(cli(settings, "--name", "folder", "--candidates", str(photos), "--target", "2")) == 0
    out = capsys.readouterr().out
    assert "seed astro-0.jpg: group 1" in out and "admitted astro-1.jpg at 0.1" in out
    assert "finished: target reached: 2 members" in out
    assert main(cli(settings, "--name", "folder", "--resume", "--target", "10")) == 0
    out = capsys.readouterr().out
    assert "admitted astro-2.jpg" in out and "astro-0" not in out  # goes on after the last decided candidate
    assert "folder: done, 4 candidates" in out and "rejected 1" in out
    assert main(cli(settings, "--name", "folder", "--to-dataset", "folder-set", "--trigger", "ohwx")) == 0
    assert capsys.readouterr().out.startswith("dataset folder-set: 3 kept, 0 refused")
    assert [im.caption for im in load_dataset(settings, "folder-set").images] == ["ohwx person, a photo"] * 3


def test_ctrl_c_stops_the_child_and_exits_130(settings, photos, monkeypatch, capsys):
    from studio.cli import mine as mine_verb
    from studio.context import Studio
    from studio.mine import mining_status

    def interrupted(status):  # Ctrl-C while the command shows the job
        raise KeyboardInterrupt

    monkeypatch.setattr(mine_verb, "_shower", lambda since: interrupted)
    assert main(cli(settings, "--name", "stopped", "--candidates", str(photos))) == 130
    assert "stopping" in capsys.readouterr().out
    status = mining_status(Studio.open(settings), "stopped")
    assert status.state == "cancelled" and not status.active


@pytest.mark.parametrize("args, message", [
    (["--name", "x"], "give either `prompt`"),
    (["--name", "x", "--prompt", "a", "--candidates", "d"], "or `candidates` (a folder of images), not both"),
    (["--name", "x", "--prompt", "a", "--near-miss", "0.3"], "`near_miss` must be at least the tolerance"),
    (["--name", "x", "--to-dataset", "d"], "`--trigger` is required with --to-dataset"),
    (["--name", "x", "--to-dataset", "d", "--trigger", "ohwx", "--prompt", "a"], "it takes no --prompt"),
    (["--name", "x", "--prompt", "a", "--trigger", "ohwx"], "`--trigger` and `--size` go with --to-dataset"),
    (["--name", "x", "--resume", "--tolerance", "0.5"], "only --target, --max-candidates and --max-minutes can "
                                                         "change, not --tolerance"),
    (["--name", "nothing", "--resume"], "has no mining job to continue"),
    (["--name", "x", "--prompt", "a", "--steps", "many"], "invalid int value"),
])
def test_bad_input_exits_2_with_one_line(settings, capsys, args, message):
    try:
        code = main(cli(settings, *args))
    except SystemExit as e:  # argparse's own errors leave through exit()
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
