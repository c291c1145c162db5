"""The command line: exit codes, one printed line per file, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from studio.cli import main
from studio.generate.parameters import read_png_parameters


def cli(settings, *args):
    return ["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--offline", *args]


def test_generate_writes_files_and_prints_one_line_each(settings, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(cli(settings, "generate", "--model", "builtin:tiny", "--prompt", "a dog", "--steps", "2",
                    "--seed", "9", "--batch", "2", "--sampler", "DDIM", "--out", str(out)))
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    files = sorted(out.glob("*.png"))
    assert [str(f) for f in files] == [line.split("\t")[0] for line in lines]
    assert "Seed: 10," in read_png_parameters(files[1]) and "Sampler: DDIM" in read_png_parameters(files[1])


@pytest.mark.parametrize("args, message", [
    (["generate", "--prompt", "x", "--width", "100", "--out", "o"], "divisible by 8"),
    (["generate", "--prompt", "x", "--sampler", "Fast", "--out", "o"], "valid samplers are"),
    (["generate", "--prompt", "x", "--model", "/no/such/model.safetensors", "--out", "o"], "not found"),
    (["generate", "--prompt", "x", "--init-image", "/no/such.png", "--out", "o"], "does not exist"),
    (["generate", "--prompt", "x"], "required: --out"),
    (["generate", "--prompt", "x", "--steps", "many", "--out", "o"], "invalid int value"),
    (["no-such-verb"], "invalid choice"),
])
def test_bad_arguments_exit_2_with_one_line(settings, capsys, args, message):
    try:
        code = main(cli(settings, *args))
    except SystemExit as e:  # argparse's own errors leave through exit()
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


def test_models_lists_the_store(settings, capsys):
    assert main(cli(settings, "models")) == 0
    out = capsys.readouterr().out
    assert "builtin:tiny" in out and "builtin:tiny-controlnet" in out


def test_python_dash_m_studio_runs_as_a_program(settings):
    done = subprocess.run([sys.executable, "-m", "studio", *cli(settings, "generate", "--prompt", "x",
                                                                "--width", "12", "--out", "o")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "`width` is 12" in done.stderr


def test_global_options_work_after_the_verb_too(settings, capsys):
    code = main(["models", "--root", str(settings.root), "--models-dir", str(settings.models_dir), "--dtype", "float64"])
    assert code == 2 and "`dtype` must be auto, float32, float16 or bfloat16 but is 'float64'" in capsys.readouterr().err
    assert main(["models", "--models-dir", str(settings.models_dir), "--offline"]) == 0
    assert f"models folder: {settings.models_dir}" in capsys.readouterr().out
    # ...and after a verb's own sub-command
    assert main(["dataset", "list", "--workspace", str(settings.root / "elsewhere")]) == 0
    assert f"no datasets in {settings.root / 'elsewhere' / 'datasets'}" in capsys.readouterr().out
