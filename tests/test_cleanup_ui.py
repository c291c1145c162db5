"""The Generate tab's Clean-up accordion: /generate keeps its parameters in order, the clean-up endpoints exist, the
callbacks turn the painter's value into requests, and a dropped PNG restores the clean-up settings."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from served import studio_settings
from studio.ui.common import TabContext

# /generate's parameters before this accordion existed: scripts call it positionally, so these stay first, in order.
GENERATE_PARAMETERS = ["prompt_text", "negative_prompt", "model_id", "seed_value", "sampler_name", "steps_value",
                       "cfg_scale", "width_px", "height_px", "batch_size", "lora_weights", "embedding_names"]


@pytest.fixture(scope="module")
def generate_app(tmp_path_factory, shared_models_dir):
    import gradio as gr

    from studio.context import Studio
    from studio.ui import generate_tab

    studio = Studio.open(studio_settings(tmp_path_factory.mktemp("cleanup_ui"), shared_models_dir))
    with gr.Blocks() as app:
        generate_tab.build(TabContext(studio))
    return studio, app


def defaults(app, endpoint: str) -> dict:
    """An endpoint's parameter defaults, by name, as the page starts."""
    info = app.get_api_info()["named_endpoints"][endpoint]
    return {p["parameter_name"]: p.get("parameter_default") for p in info["parameters"]}


def no_progress(fraction, desc=None):
    pass


def painted(size=(96, 64), box=(20, 10, 50, 40)) -> dict:
    """The painter's value: a photo and one layer with a white stroke where `box` is, transparent elsewhere."""
    from skimage import data

    picture = Image.fromarray(data.astronaut()).resize(size).convert("RGBA")
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), box)
    return {"background": picture, "layers": [layer], "composite": picture}


def test_generate_keeps_its_parameters_and_the_new_endpoints_exist(generate_app):
    _, app = generate_app
    endpoints = app.get_api_info()["named_endpoints"]
    names = [p["parameter_name"] for p in endpoints["/generate"]["parameters"]]
    assert names[:len(GENERATE_PARAMETERS)] == GENERATE_PARAMETERS
    assert names[len(GENERATE_PARAMETERS):] == ["hires_scale", "hires_steps", "hires_upscaler", "hires_strength",
                                                "distilled_cfg_scale", "t5_tokens"]  # FLUX.1's, appended after
    assert {"/inpaint", "/upscale", "/fix_faces"} <= set(endpoints)
    assert "cleanup_image" in [p["parameter_name"] for p in endpoints["/fix_faces"]["parameters"]]


def test_inpaint_callback_repaints_the_stroke_only(generate_app):
    from studio.ui.cleanup import inpaint

    studio, app = generate_app
    value = painted()
    v = SimpleNamespace(**{**defaults(app, "/inpaint"), "prompt_text": "a dog", "model_id": "builtin:tiny",
                           "steps_value": 4, "seed_value": 3, "mask_blur": 0, "lora_weights": [],
                           "cleanup_image": value})
    out = inpaint(TabContext(studio), v, None, no_progress)
    result = np.asarray(Image.open(out["gallery"][0][0]).convert("RGB"), dtype=np.int16)
    original = np.asarray(value["background"].convert("RGB"), dtype=np.int16)
    keep = np.ones((64, 96), dtype=bool)
    keep[10:40, 20:50] = False
    assert np.array_equal(result[keep], original[keep]) and not np.array_equal(result[~keep], original[~keep])
    assert out["seed"] == 3 and "Denoising strength: 0.75" in out["parameters"]
    v.cleanup_image = {**value, "layers": []}
    with pytest.raises(ValueError, match="`mask_image` is empty: paint"):
        inpaint(TabContext(studio), v, None, no_progress)


def test_face_fix_callback_says_when_there_is_no_face(generate_app):
    from skimage import data

    from studio.ui.cleanup import run_fix_faces

    studio, app = generate_app
    coffee = Image.fromarray(data.coffee())
    v = SimpleNamespace(**{**defaults(app, "/fix_faces"), "model_id": "builtin:tiny", "facefix_prompt": "a face",
                           "lora_weights": [],
                           "cleanup_image": {"background": coffee, "layers": [], "composite": coffee},
                           "source_parameters": ""})
    out = run_fix_faces(TabContext(studio), v, None, no_progress)
    assert out["faces"] == [] and out["status"].startswith("no face found") and "gallery" not in out


def test_a_dropped_png_restores_the_clean_up_settings(generate_app, tmp_path):
    from studio.ui.cleanup import restore_cleanup

    studio, _ = generate_app

    def png(text: str):
        info = PngInfo()
        info.add_text("parameters", text)
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.png"
        Image.new("RGB", (8, 8)).save(path, pnginfo=info)
        return str(path)

    hires = png("a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, "
                "Denoising strength: 0.55, Hires upscale: 2, Hires steps: 10, Hires upscaler: 4x-UltraSharp, "
                "ADetailer model: face_yolov8n.pt, ADetailer confidence: 0.5, ADetailer dilate erode: 8, "
                "ADetailer mask blur: 6, ADetailer denoising strength: 0.35, ADetailer inpaint only masked: True, "
                "ADetailer inpaint padding: 40")
    got = restore_cleanup(TabContext(studio), SimpleNamespace(path=hires))
    assert got["cleanup_image"] == hires and got["source_parameters"].startswith("a castle")
    assert (got["hires_scale"], got["hires_steps"], got["hires_upscaler"], got["hires_strength"]) == (
        2.0, 10, "4x-UltraSharp", 0.55)
    assert (got["facefix_confidence"], got["facefix_dilate"], got["facefix_mask_blur"], got["facefix_strength"],
            got["facefix_padding"]) == (0.5, 8, 6, 0.35, 40)
    # A picture made without hires fix turns it off again; inpaint keys come back from an inpainted one.
    inpainted = png("a door\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
                    "Denoising strength: 0.6, Mask blur: 8, Inpaint area: Only masked, Masked area padding: 48")
    got = restore_cleanup(TabContext(studio), SimpleNamespace(path=inpainted))
    assert got["hires_scale"] == 1.0 and got["hires_steps"] == 0
    assert (got["inpaint_strength"], got["mask_blur"], got["inpaint_area"], got["inpaint_padding"]) == (
        0.6, 8, "only masked", 48)
