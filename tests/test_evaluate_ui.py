"""The Evaluate tab: listed before Models, /evaluate and /evaluation through gradio_client on build_app, errors shown."""

from __future__ import annotations

import socket

import pytest

from fixtures_faces import astronaut


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tab_is_listed_before_models():
    from studio.ui import TABS

    modules = [module for _, module in TABS]
    assert modules.index("evaluate_tab") == modules.index("models_tab") - 1


def test_widgets_become_a_request():
    from studio.evaluate import Variant
    from studio.generate import LoraChoice
    from studio.ui.evaluate_tab import NO_CLIP, request_from_widgets

    request = request_from_widgets(" run ", "a photo of amari\n\n a side profile image of amari \n", "1, 2\n3",
                                   "control=\nmine@0.6=+lora:mine:0.6\n", "amari", NO_CLIP, "", "Euler a", 4, 7.5,
                                   0, 64, 0.4)
    assert request.name == "run" and request.prompts == ["a photo of amari", "a side profile image of amari"]
    assert request.seeds == [1, 2, 3] and request.clip_model == "" and (request.width, request.height) == (None, 64)
    assert request.variants == [Variant("control"), Variant("mine@0.6", "", [LoraChoice("mine", 0.6)])]
    with pytest.raises(ValueError, match="`seeds` must be whole numbers"):
        request_from_widgets("r", "p", "1, x", "a=\nb=", "amari", NO_CLIP, "", "Euler a", 4, 7.5, 0, 0, 0.4)


def test_clip_note_warns_about_the_tiny_clip():
    from studio.ui.evaluate_tab import NO_CLIP, _clip_note

    assert "mean nothing" in _clip_note("builtin:tiny-clip")
    assert "no CLIP column" in _clip_note(NO_CLIP)


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_models_dir):
    from studio.context import Studio
    from studio.settings import Settings
    from studio.ui import build_app

    root = tmp_path_factory.mktemp("evaluate_ui")
    studio = Studio.open(Settings(root=root, models_dir=shared_models_dir, workspace_dir=root / "workspace",
                                  allow_downloads=False, default_model="builtin:tiny"))
    app = build_app(studio)
    app.launch(prevent_thread_lock=True, server_port=_free_port(), allowed_paths=[str(studio.settings.workspace_dir)])
    yield studio, app
    app.close()


def test_gradio_client_evaluate_then_reopen(served, tmp_path):
    from gradio_client import Client

    studio, app = served
    reference = studio.settings.datasets_dir / "reference"  # the web takes dataset names, never server paths
    reference.mkdir(parents=True)
    astronaut().save(reference / "astronaut.png")
    client = Client(app.local_url, verbose=False)
    status, grid, charts, summary, images, past, files = client.predict(
        name="ui-run", prompts="a photo of a man\na dog", seeds="5, 6", variants="control=\nagain=builtin:tiny",
        reference="reference", clip_model="builtin:tiny-clip", steps=2, width=64, height=64,
        api_name="/evaluate")
    assert "**ui-run**: 8 image(s), 0 with a face, 8 with no face found" in status and "mean nothing" in status
    assert grid.endswith(".png") and len(charts) == 4
    assert [c["caption"] for c in charts][-1] == "CLIP score per variant"
    assert summary["headers"][-1] == "mean CLIP score"
    assert [row[:4] for row in summary["data"]] == [["control", 4, 0, 4], ["again", 4, 0, 4]]
    assert len(images["data"]) == 8 and images["data"][0][3] == "no face"
    assert sorted(f.rsplit("/", 1)[-1] for f in files) == ["report.csv", "report.json"]
    saved = studio.settings.workspace_dir / "evaluations" / "ui-run"
    assert (saved / "report.json").is_file()

    # The run is listed and reopened by name, as after a restart.
    status, grid, charts, summary, images, past, files = client.predict("ui-run", api_name="/evaluation")
    assert "Evaluation **ui-run**: 8 image(s)" in status and len(images["data"]) == 8

    with pytest.raises(Exception, match="`name` 'ui-run' is taken"):
        client.predict(name="ui-run", prompts="a dog", seeds="5", variants="a=\nb=", reference="reference",
                       steps=2, width=64, height=64, api_name="/evaluate")
