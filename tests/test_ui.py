"""The web studio: build_app() without launching, one gradio_client call, and the Generate tab in headless Chromium."""

from __future__ import annotations

import re
import shutil

import pytest

from served import serve_studio
from studio.context import Studio


def test_build_app_builds_every_tab_without_launching(settings):
    import gradio as gr

    from studio.ui import build_app

    app = build_app(settings)
    assert isinstance(app, gr.Blocks)
    tabs = [b for b in app.blocks.values() if isinstance(b, gr.Tab)]
    assert [t.label for t in tabs] == ["Dataset", "Mine", "Train", "Generate", "Face to animal", "Evaluate",
                                        "Models"]
    assert all(t.children for t in tabs)  # each tab's module put its widgets in it
    api = {d.get("api_name") for d in app.config["dependencies"]}
    # the endpoints README promises to scripts
    assert {"generate", "dataset_prepare", "dataset_check", "train_start", "train_status", "train_cancel", "animal",
            "evaluate", "inpaint", "upscale", "fix_faces", "mine_start", "mine_status", "mine_cancel",
            "mine_to_dataset"} <= api


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_models_dir):
    studio, app, url = serve_studio(tmp_path_factory.mktemp("served"), shared_models_dir)
    yield studio, url
    app.close()


def test_gradio_client_generate(served):
    from gradio_client import Client

    studio, url = served
    client = Client(url, verbose=False)
    images, parameters, seed = client.predict(prompt="a photo of a dog", negative_prompt="", model="builtin:tiny",
                                              seed=42, steps=2, api_name="/generate")
    assert seed == 42 and "Seed: 42," in parameters and len(images) == 1
    saved = list(studio.settings.outputs_dir.rglob("*.png"))
    assert len(saved) == 1
    with pytest.raises(Exception, match="divisible by 8"):
        client.predict(prompt="a dog", negative_prompt="", width=100, steps=2, api_name="/generate")

    # FLUX.1 by API: its sampler and guidance; an SD model refuses FLUX.1's, naming the field
    images, parameters, seed = client.predict(prompt="a dog", negative_prompt="", model="builtin:tiny-flux",
                                              seed=3, steps=2, sampler="Euler", cfg=1,
                                              distilled_cfg=2.5, api_name="/generate")
    assert "Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 2.5" in parameters
    with pytest.raises(Exception, match="`distilled_cfg` is FLUX.1-dev's guidance input"):
        client.predict(prompt="a dog", model="builtin:tiny", seed=3, steps=2, distilled_cfg=2.5, api_name="/generate")
    images, parameters, seed = client.predict(prompt="a dog", model="builtin:tiny", seed=3, steps=2, distilled_cfg=0,
                                              max_sequence_length=0, api_name="/generate")  # 0: the default
    assert "Distilled" not in parameters and "Sampler: Euler a" in parameters


def test_picking_a_model_shows_its_familys_samplers_and_guidance(settings):
    from types import SimpleNamespace

    from studio.context import Studio
    from studio.ui.common import FAMILY_SAMPLER, TabContext
    from studio.ui.generate_tab import model_picked

    ctx = TabContext(Studio.open(settings))
    flux = model_picked(ctx, SimpleNamespace(model="builtin:tiny-flux", sampler="DPM++ 2M Karras"))
    assert flux["sampler"]["value"] == FAMILY_SAMPLER and "Euler Beta" in flux["sampler"]["choices"]
    assert flux["cfg"] == 1.0 and flux["flux_row"]["visible"] and flux["distilled"]["interactive"]
    assert "value" not in flux["distilled"] and "sequence" not in flux  # FLUX.1-dev takes both: the user's stay
    schnell = model_picked(ctx, SimpleNamespace(model="builtin:tiny-flux-schnell", sampler="Euler Beta"))
    assert "value" not in schnell["sampler"] and schnell["cfg"] == 1.0  # same family: the user's sampler stays
    assert schnell["flux_row"]["visible"] and not schnell["distilled"]["interactive"]
    assert schnell["distilled"]["value"] == 0  # schnell takes no distilled guidance: back to 0, "none given"
    sd = model_picked(ctx, SimpleNamespace(model="builtin:tiny", sampler="Euler Beta"))
    assert sd["sampler"]["value"] == FAMILY_SAMPLER and sd["cfg"] == 7.0 and not sd["flux_row"]["visible"]
    assert sd["distilled"]["value"] == 0 and sd["sequence"] == 0  # an SD model takes neither
    pocket = model_picked(ctx, SimpleNamespace(model="builtin:pocket", sampler="Euler a"))
    assert pocket["cfg"] == 4.0 and pocket["prompt"]["placeholder"].startswith("a red circle on a white background")
    assert model_picked(ctx, SimpleNamespace(model="no/such-model-here", sampler="Euler a")) == {}  # told on Generate

def test_gradio_client_clean_up(served, tmp_path):
    """/inpaint and /upscale from a script: the painter takes {"background", "layers", "composite"} files."""
    import numpy as np
    from gradio_client import Client, handle_file
    from PIL import Image

    from fixtures_faces import astronaut

    _, url = served
    picture = astronaut().resize((96, 64))
    picture.save(tmp_path / "picture.png")
    layer = Image.new("RGBA", (96, 64), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (20, 10, 50, 40))
    layer.save(tmp_path / "stroke.png")
    client = Client(url, verbose=False)
    painter = {"background": handle_file(str(tmp_path / "picture.png")),
               "layers": [handle_file(str(tmp_path / "stroke.png"))], "composite": None}
    gallery, parameters, seed, status = client.predict(prompt="a dog", model="builtin:tiny", steps=4,
                                                       seed=3, mask_blur=0, init_image=painter,
                                                       api_name="/inpaint")
    result = np.asarray(Image.open(gallery[0]["image"]).convert("RGB"))
    keep = np.ones((64, 96), dtype=bool)
    keep[10:40, 20:50] = False
    assert seed == 3 and status == "Inpainted 1 picture(s) at 96x64."
    assert np.array_equal(result[keep], np.asarray(picture)[keep])
    gallery, parameters, status = client.predict(image={**painter, "layers": []}, upscaler="Lanczos",
                                                 scale=2, api_name="/upscale")
    assert Image.open(gallery[0]["image"]).size == (192, 128) and "Postprocess upscaler: Lanczos" in parameters


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs the system chromium (.ci/run installs it)")
def test_generate_tab_in_a_real_browser(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    _, url = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Generate").click()
        page.get_by_label(re.compile(r"^\s*Prompt(\s|$)")).fill("a photo of a red dog")
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.get_by_role("img", name=re.compile(r"^seed \d+$"))).to_be_visible(timeout=120_000)
        params = page.locator("#generate-parameters textarea")
        expect(params).to_have_value(re.compile(r"^a photo of a red dog\nSteps: 20, Sampler: Euler a"), timeout=30_000)
        page.screenshot(path=str(tmp_path / "generate.png"))
        browser.close()


def test_dropping_an_a1111_png_restores_its_settings(served, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a castle, <lora:old:0.5>\nNegative prompt: fog\nSteps: 31, Sampler: DPM++ 2M, "
                                "Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 640x448, Model: sd15")
    png = tmp_path / "from_a1111.png"
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    _, url = served
    restored = Client(url, verbose=False).predict(handle_file(str(png)), api_name="/restore_parameters")
    prompt, negative, seed, sampler, steps, cfg, width, height, text, said = restored
    assert (prompt, negative, seed, sampler, steps, cfg, width, height) == (
        "a castle, <lora:old:0.5>", "fog", 1234, "DPM++ 2M Karras", 31, 6.5, 640, 448)
    assert text.startswith("a castle")
    # the page says what it restored, where the PNG was dropped
    assert said == ('Restored prompt `a castle, <lora:old:0.5>`, seed 1234, sampler DPM++ 2M Karras, steps 31, '
                    'cfg 6.5, width 640, height 448.')


def test_opening_generate_lists_new_loras_and_keeps_chosen_weights(settings):
    import pandas as pd

    from types import SimpleNamespace

    from studio.ui.common import TabContext
    from studio.ui.generate_tab import refresh_lists
    from tests.weights_files import make_lora

    ctx = TabContext(Studio.open(settings))
    make_lora(Studio.open(settings), "builtin:tiny", settings.models_dir / "lora" / "fresh_one.safetensors", seed=4)
    current = pd.DataFrame([["kept_lora", 0.7]], columns=["LoRA", "weight"])
    table = refresh_lists(ctx, SimpleNamespace(loras=current))["loras"]
    assert ["fresh_one", 0.0] in table
    (settings.models_dir / "lora" / "kept_lora.safetensors").write_bytes(
        (settings.models_dir / "lora" / "fresh_one.safetensors").read_bytes())
    table = refresh_lists(ctx, SimpleNamespace(loras=current))["loras"]
    assert ["kept_lora", 0.7] in table


def test_train_and_evaluate_list_the_same_datasets(settings):
    from types import SimpleNamespace

    from fixtures_faces import astronaut
    from studio.ui import evaluate_tab, train_tab
    from studio.ui.common import TabContext

    plain = settings.datasets_dir / "plain-folder"  # pictures and kohya captions dropped in by hand
    plain.mkdir(parents=True)
    astronaut().save(plain / "a.png")
    (plain / "a.txt").write_text("sks, a photo")
    (settings.datasets_dir / ".half-built").mkdir()  # a dataset being written is never listed
    ctx = TabContext(Studio.open(settings))
    in_train = train_tab.refresh_lists(ctx, SimpleNamespace(run=None))["dataset"]["choices"]
    form = SimpleNamespace(variants="", prompts="", seeds="", reference=None, suggested=None)  # edited by the user
    in_evaluate = evaluate_tab.refresh_lists(ctx, form)["reference"]["choices"]
    assert in_train == ["plain-folder"] and [c for c in in_evaluate if c != evaluate_tab.NO_REFERENCE] == in_train


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs the system chromium (.ci/run installs it)")
def test_painting_a_mask_in_a_real_browser_inpaints_only_there(served, tmp_path):
    """Drop a photo on the Clean-up painter, paint one stroke with the mouse, inpaint "only masked": the picture keeps
    its size and every pixel away from the stroke keeps its bytes."""
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from fixtures_faces import astronaut

    studio, url = served
    astronaut().save(tmp_path / "astronaut.png")
    before = set(studio.settings.outputs_dir.rglob("*.png"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(url)
        page.get_by_role("tab", name="Generate").click()
        page.get_by_label(re.compile(r"^\s*Prompt(\s|$)")).fill("a photo of a woman")
        page.get_by_text("Clean-up: inpaint, upscale, face fix").click()
        with page.expect_file_chooser() as chooser:
            page.get_by_text("Upload an image").click()
        chooser.value.set_files(str(tmp_path / "astronaut.png"))
        expect(page.locator("#cleanup-status")).to_contain_text("carries no parameters", timeout=30_000)
        page.get_by_role("button", name="Brush", exact=True).click()
        box = page.locator("#cleanup-painter canvas").first.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x - 60, y)
        page.mouse.down()
        page.mouse.move(x + 60, y, steps=12)
        page.mouse.up()
        page.get_by_role("radio", name="Only masked").check()
        page.get_by_role("button", name="Inpaint", exact=True).click()
        expect(page.locator("#inpaint-status")).to_contain_text("Inpainted 1 picture", timeout=120_000)  # by its button
        browser.close()
    (made,) = set(studio.settings.outputs_dir.rglob("*.png")) - before
    result, original = np.asarray(Image.open(made).convert("RGB")), np.asarray(astronaut())
    assert result.shape == original.shape
    changed = np.abs(result.astype(int) - original).max(axis=2) > 0
    rows, cols = np.nonzero(changed)
    # One horizontal stroke across the middle: a band a few dozen pixels high, nowhere near the corners.
    assert 0 < rows.max() - rows.min() < 120 and cols.max() - cols.min() < 400
    assert not changed[:100].any() and not changed[-100:].any()
