"""The Generate tab's Clean-up accordion: the endpoints take their requests' field names, the callbacks turn the
painter's value into requests, and a dropped PNG restores the clean-up settings."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from served import studio_settings
from studio.ui.common import TabContext


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


def test_the_endpoints_take_their_requests_field_names(generate_app):
    _, app = generate_app
    endpoints = app.get_api_info()["named_endpoints"]

    def names(endpoint):
        return {p["parameter_name"] for p in endpoints[endpoint]["parameters"]}

    txt2img = {"prompt", "negative_prompt", "model", "seed", "sampler", "steps", "cfg", "width", "height", "styles",
               "batch_size", "loras", "embeddings", "distilled_cfg", "max_sequence_length"}
    hires = {"hires_scale", "hires_steps", "hires_upscaler", "hires_strength"}
    inpaint = {"init_image", "strength", "mask_blur", "inpaint_area", "inpaint_padding"}
    assert names("/generate") == txt2img | hires | {"init_image", "strength"}  # img2img: its own picture
    assert names("/inpaint") == txt2img | inpaint | {"inpaint_model"}  # a dedicated inpainting model beside `model`
    assert names("/upscale") == {"image", "upscaler", "scale", "tile", "tile_overlap"}
    assert names("/fix_faces") == {"image", "prompt", "negative_prompt", "model", "loras", "embeddings", "seed", "steps",
                                   "cfg", "sampler", "strength", "confidence", "dilate", "mask_blur", "only_masked",
                                   "padding", "size", "max_faces", "inpaint_model", "reference"}


def test_inpaint_callback_repaints_the_stroke_only(generate_app):
    from studio.ui.cleanup import inpaint

    studio, app = generate_app
    value = painted()
    v = SimpleNamespace(**{**defaults(app, "/inpaint"), "prompt": "a dog", "model": "builtin:tiny",
                           "steps": 4, "seed": 3, "mask_blur": 0, "loras": [], "init_image": value})
    out = inpaint(TabContext(studio), v, None, no_progress)
    result = np.asarray(Image.open(out["gallery"][0][0]).convert("RGB"), dtype=np.int16)
    original = np.asarray(value["background"].convert("RGB"), dtype=np.int16)
    keep = np.ones((64, 96), dtype=bool)
    keep[10:40, 20:50] = False
    assert np.array_equal(result[keep], original[keep]) and not np.array_equal(result[~keep], original[~keep])
    assert out["seed"] == 3 and "Denoising strength: 0.75" in out["parameters"]
    v.init_image = {**value, "layers": []}
    with pytest.raises(ValueError, match="`init_image` has no mask painted on it"):
        inpaint(TabContext(studio), v, None, no_progress)


def test_face_fix_callback_says_when_there_is_no_face(generate_app):
    from skimage import data

    from studio.ui.cleanup import run_fix_faces

    studio, app = generate_app
    coffee = Image.fromarray(data.coffee())
    v = SimpleNamespace(**{**defaults(app, "/fix_faces"), "model": "builtin:tiny", "prompt": "a face", "loras": [],
                           "image": {"background": coffee, "layers": [], "composite": coffee},
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
    assert (got["gen.hires_scale"], got["gen.hires_steps"], got["gen.hires_upscaler"], got["gen.hires_strength"]) == (
        2.0, 10, "4x-UltraSharp", 0.55)
    assert (got["face.confidence"], got["face.dilate"], got["face.mask_blur"], got["face.strength"],
            got["face.padding"]) == (0.5, 8, 6, 0.35, 40)
    # A picture made without hires fix turns it off again; inpaint keys come back from an inpainted one.
    inpainted = png("a door\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
                    "Denoising strength: 0.6, Mask blur: 8, Inpaint area: Only masked, Masked area padding: 48")
    got = restore_cleanup(TabContext(studio), SimpleNamespace(path=inpainted))
    assert got["gen.hires_scale"] == 1.0 and got["gen.hires_steps"] == 0
    assert (got["gen.strength"], got["gen.mask_blur"], got["gen.inpaint_area"], got["gen.inpaint_padding"]) == (
        0.6, 8, "only masked", 48)


def test_generate_starts_from_a_picture_and_send_to_puts_the_selected_one_where_asked(generate_app, tmp_path):
    from skimage import data

    from studio.ui import generate_tab, send_to

    studio, app = generate_app
    ctx = TabContext(studio)
    start = Image.fromarray(data.astronaut()).resize((64, 64))
    values = {**defaults(app, "/generate"), "prompt": "a dog", "steps": 4, "width": 64, "height": 64, "loras": [],
              "init_image": start, "strength": 0.5}
    out = generate_tab.run(ctx, SimpleNamespace(**values), None, no_progress)
    assert "Denoising strength: 0.5" in out["parameters"]  # img2img from Generate itself, at its strength
    drawn = generate_tab.run(ctx, SimpleNamespace(**{**values, "init_image": None}), None, no_progress)
    assert "Denoising strength" not in drawn["parameters"]  # no picture: from noise
    # the picture selected in the gallery goes where each button says
    paths = [item[0] for item in out["gallery"] + drawn["gallery"]]
    picked = SimpleNamespace(gallery_items=[(p, "seed") for p in paths], selected=1)
    sent = send_to.to_img2img(ctx, picked)
    assert sent["image"] == paths[1] and sent["said"].startswith("Picture 2 is the image to start from")
    painter = send_to.to_painter(ctx, picked, "upscale")
    assert painter["cleanup_image"] == paths[1] and painter["status"] == "Picture 2 is in the painter: press Upscale."
    assert painter["source_parameters"].startswith("a dog")  # the picture's own parameters come along
    first = SimpleNamespace(gallery_items=picked.gallery_items, selected=None)  # none clicked: the first
    assert send_to.to_animal(ctx, first)["photo"] == paths[0]
    with pytest.raises(ValueError, match="no picture to send yet"):
        send_to.to_img2img(ctx, SimpleNamespace(gallery_items=[], selected=0))


def test_the_outputs_browser_restores_a_past_picture_s_settings(generate_app):
    from studio.ui import generate_tab

    studio, app = generate_app
    ctx = TabContext(studio)
    values = {**defaults(app, "/generate"), "steps": 3, "width": 64, "height": 64, "loras": [], "init_image": None}
    for prompt, seed in (("an old castle", 11), ("a new bridge", 12)):
        generate_tab.run(ctx, SimpleNamespace(**{**values, "prompt": prompt, "seed": seed}), None, no_progress)
    shown = generate_tab.show_past(ctx, SimpleNamespace())
    assert [caption for _, caption in shown["past"]][:2] == [p.rsplit("/", 1)[-1] for p in shown["past_paths"][:2]]
    # the second newest picked: its own prompt and seed come back, and the page says so
    got = generate_tab.restore_past(ctx, SimpleNamespace(picked=1, paths=shown["past_paths"]))
    assert (got["prompt"], got["seed"], got["steps"]) == ("an old castle", 11, 3)
    assert got["said"].startswith("Restored prompt `an old castle`, seed 11")
    with pytest.raises(ValueError, match="no past picture picked"):
        generate_tab.restore_past(ctx, SimpleNamespace(picked=99, paths=shown["past_paths"]))
