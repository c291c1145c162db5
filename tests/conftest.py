"""Shared fixtures: a Studio on a temporary root whose builtin models are built once per test session."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest


def pytest_configure(config):
    # Set once for the session, before any test module imports torch or gradio: two CPU cores, so one thread per
    # process keeps parallel work (a launched app, a training child) from thrashing; no hub, no analytics.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # The served studio cleans its gradio cache by age and size: this session's own, never another run's on the machine
    # (and each pytest-xdist worker its own: a worker inherits the controller's, which the flag says is no user's)
    if "GRADIO_TEMP_DIR" not in os.environ or os.environ.get(_OWN_FLAG) == os.environ["GRADIO_TEMP_DIR"]:
        _OWN_GRADIO_DIR.append(tempfile.mkdtemp(prefix="pytest-gradio-"))
        os.environ["GRADIO_TEMP_DIR"] = os.environ[_OWN_FLAG] = _OWN_GRADIO_DIR[0]


def pytest_unconfigure(config):
    if _OWN_GRADIO_DIR:
        shutil.rmtree(_OWN_GRADIO_DIR[0], ignore_errors=True)


_OWN_GRADIO_DIR: list[str] = []
_OWN_FLAG = "STUDIO_TESTS_OWN_GRADIO_DIR"


@pytest.hookimpl(trylast=True)  # after -m has deselected: a file's deselected slow tests do not make it heavy
def pytest_collection_modifyitems(config, items):
    # Under pytest-xdist (./test.sh: a test file to each of two workers, in collection order) the files holding slow or
    # browser tests go first, so the two workers start on the long files and end on short ones; within a file the
    # order stays as written (its module fixtures are set up once). One process keeps the collection order.
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    heavy = {item.path for item in items if item.get_closest_marker("slow") or item.get_closest_marker("browser")}
    items.sort(key=lambda item: item.path not in heavy)


@pytest.fixture(scope="session")
def shared_models_dir(tmp_path_factory):
    """One models/ folder for the whole session, so builtin:tiny and friends are built once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def settings(tmp_path, shared_models_dir):
    from studio.settings import Settings

    return Settings(root=tmp_path, models_dir=shared_models_dir, workspace_dir=tmp_path / "workspace",
                    allow_downloads=False, default_model="builtin:tiny")


@pytest.fixture
def studio(settings):
    from studio.context import Studio

    return Studio.open(settings)


@pytest.fixture(scope="session")
def session_studio(tmp_path_factory, shared_models_dir):
    """A Studio shared by tests that only read (its cache stays warm across them)."""
    from studio.context import Studio
    from studio.settings import Settings

    root = tmp_path_factory.mktemp("studio")
    return Studio.open(Settings(root=root, models_dir=shared_models_dir, workspace_dir=root / "workspace",
                                allow_downloads=False, default_model="builtin:tiny"))
