"""The Face to animal tab: listed after Generate, /animal through gradio_client, the no-face preview offering canny."""

from __future__ import annotations

import pytest

from fixtures_faces import astronaut
from served import free_port, studio_settings


@pytest.fixture(scope="module")
def animal_app(tmp_path_factory, shared_models_dir):
    import gradio as gr

    from studio.context import Studio
    from studio.ui import animal_tab
    from studio.ui.common import TabContext

    studio = Studio.open(studio_settings(tmp_path_factory.mktemp("animal_ui"), shared_models_dir))
    with gr.Blocks() as app:
        animal_tab.build(TabContext(studio))
    return studio, app


def test_tab_is_listed_after_generate():
    from studio.ui import TABS

    modules = [module for _, module in TABS]
    assert modules.index("animal_tab") == modules.index("generate_tab") + 1


def test_no_face_preview_shows_the_photo_and_offers_canny(animal_app):
    from PIL import Image
    from skimage import data

    from types import SimpleNamespace

    from studio.ui.animal_tab import preview
    from studio.ui.common import TabContext

    studio, app = animal_app
    coffee = Image.fromarray(data.coffee())
    shown = preview(TabContext(studio), SimpleNamespace(**{**_widget_defaults(app), "image": coffee}))
    gallery, message = shown["controls"], shown["status"]
    assert gallery[0][0].size == coffee.size and gallery[0][1] == "no face found"
    assert "no face found" in message and "Canny is selected instead" in message
    enabled = [shown[f"use_{m}"]["value"] for m in ("mediapipe_face", "openpose_face", "canny")]
    assert enabled == [False, False, True]


def _widget_defaults(app) -> dict:
    """The /animal endpoint's parameter defaults, by name, as the page starts."""
    info = app.get_api_info()["named_endpoints"]["/animal"]
    return {p["parameter_name"]: p.get("parameter_default") for p in info["parameters"]}


def test_gradio_client_animal(animal_app, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image
    from skimage import data

    studio, app = animal_app
    photo = tmp_path / "astronaut.png"
    astronaut().save(photo)
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.png")
    app.launch(prevent_thread_lock=True, server_port=free_port(), show_error=True)
    try:
        client = Client(app.local_url, verbose=False)
        controls, sheet, results, parameters, status = client.predict(
            image=handle_file(str(photo)), animal="fox", breed="arctic", openpose_face=True, openpose_face_weight=0.5,
            seed=3, n_seeds=2, steps=2, size=64, api_name="/animal")
        assert [c["caption"] for c in controls] == ["mediapipe_face", "openpose_face"]
        assert [r["caption"] for r in results] == ["seed 3", "seed 4"]
        assert parameters.startswith("arctic fox, close up, face portrait\n")
        assert 'ControlNet 1: "Module: openpose_face, Model: builtin:tiny-controlnet, Weight: 0.5' in parameters
        assert "2 result(s)" in status and sheet.endswith(".png")
        assert len(list(studio.settings.outputs_dir.rglob("*.png"))) == 3  # two results and the sheet
        with pytest.raises(Exception, match="no face found"):
            client.predict(image=handle_file(str(tmp_path / "coffee.png")), size=64, steps=2, api_name="/animal")
    finally:
        app.close()


def test_offline_demo_turns_the_cartoon_face_into_dogs(animal_app):
    # Issue 6, item 5: the tab's offline demo, through the tab's own widget-to-request path, on builtin:pocket.
    import gradio as gr
    from PIL import Image

    from studio.generate.animal import face_to_animal
    from studio.pocket import CHECKER_DIR
    from studio.pocket.checker import PocketChecker
    from studio.ui.animal_tab import POCKET_DEMO, request_from_widgets

    studio, app = animal_app
    examples = [b for b in app.blocks.values() if isinstance(b, gr.Dataset)]  # what gr.Examples puts on the page
    # one example, shown as its label (a button), not as a table of its eleven values
    assert len(examples) == 1 and examples[0].sample_labels == ["A cartoon face into a dog on builtin:pocket"]
    values = {**_widget_defaults(app), **POCKET_DEMO, "image": Image.open(POCKET_DEMO["image"]).convert("RGB")}
    checker = PocketChecker(studio.store.load_checker(str(CHECKER_DIR)))
    assert checker.labels([values["image"].resize((64, 64))])[0][0] == "human"
    result = face_to_animal(studio, request_from_widgets(values))
    labels = [label for label, _ in checker.labels([a.image.resize((64, 64), Image.LANCZOS) for a in result.images])]
    assert len(labels) == 4 and labels.count("dog") >= 3, labels
    assert "Model: pocket, Denoising strength: 0.75" in result.images[0].parameters
    assert "ControlNet" not in result.images[0].parameters  # pocket has none: canny is previewed, img2img draws
