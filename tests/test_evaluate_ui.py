"""The Evaluate tab: listed before Models, /evaluate and /evaluation through gradio_client on build_app, errors shown."""

from __future__ import annotations

import re
import shutil
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

    values = dict(name=" run ", prompts="a photo of amari\n\n a side profile image of amari \n", seeds="1, 2\n3",
                  variants="control=\nmine@0.6=+lora:mine:0.6\n", reference="amari", clip_model=NO_CLIP,
                  negative_prompt="", sampler="Euler a", steps=4, cfg=7.5, width=0, height=64, tolerance=0.4)
    request = request_from_widgets(values).check()
    assert request.name == "run" and request.prompts == ["a photo of amari", "a side profile image of amari"]
    assert request.seeds == [1, 2, 3] and request.clip_model == "" and (request.width, request.height) == (None, 64)
    assert request.variants == [Variant("control"), Variant("mine@0.6", "", [LoraChoice("mine", 0.6)])]
    with pytest.raises(ValueError, match="`seeds` must be a whole number but is 'x'"):
        request_from_widgets({**values, "seeds": "1, x"})


def test_clip_note_warns_about_the_tiny_clip():
    from studio.ui.evaluate_tab import NO_CLIP, _clip_note

    assert "mean nothing" in _clip_note("builtin:tiny-clip")
    assert "no CLIP column" in _clip_note(NO_CLIP)


def test_clip_choices_say_what_each_is(tmp_path):
    from dataclasses import replace

    from studio.settings import Settings
    from studio.ui.evaluate_tab import NO_CLIP, clip_choices

    settings = Settings(root=tmp_path, models_dir=tmp_path / "models", allow_downloads=False)
    assert clip_choices(settings) == [(NO_CLIP, NO_CLIP),
                                      ("builtin:tiny-clip (random weights, for tests: its scores mean nothing)",
                                       "builtin:tiny-clip")]
    folder = settings.models_dir / "clip" / "clip-vit-base-patch16"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    online = clip_choices(replace(settings, allow_downloads=True))
    assert [value for _, value in online] == [NO_CLIP, "clip-vit-base-patch16", "openai/clip-vit-base-patch16",
                                              "builtin:tiny-clip"]
    assert online[1][0] == "clip-vit-base-patch16 (on disk)" and "downloads" in online[2][0]


def test_the_form_follows_the_disk_until_the_user_edits_it(tmp_path):
    from types import SimpleNamespace

    from studio.context import Studio
    from studio.settings import Settings
    from studio.ui.common import TabContext
    from studio.ui.evaluate_tab import NO_REFERENCE, _start, refresh_lists, suggest

    studio = Studio.open(Settings(root=tmp_path, models_dir=tmp_path / "models", workspace_dir=tmp_path / "ws",
                                  allow_downloads=False, default_model="builtin:pocket"))
    ctx = TabContext(studio)
    first = _start(studio)  # what build() fills in: pocket alone, its own prompts
    assert first["variants"] == "control=" and first["seeds"] == "0, 1, 2, 3"
    assert first["prompts"].splitlines()[0] == "a red circle on a white background"
    assert first["reference"] == NO_REFERENCE
    # A LoRA appears (the demo finished): an untouched form takes it and its trigger word's prompts on tab open.
    # (Only its metadata is read here, so a file with no real weights does.)
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "models" / "lora" / "zq.safetensors"
    path.parent.mkdir(parents=True)
    save_file({"unused": torch.zeros(1)}, str(path),
              metadata={"studio.trigger": "zq", "studio.dataset": "zq", "studio.base_model": "builtin:pocket"})
    fields = {k: first[k] for k in ("variants", "prompts", "seeds", "reference")}
    out = refresh_lists(ctx, SimpleNamespace(**fields, suggested=fields))
    assert out["variants"] == "control=\nzq=+lora:zq:1"
    assert out["prompts"].splitlines() == ["a red circle on a white background", "a red zq on a white background",
                                           "a blue zq on a black background"]
    # Edited prompts stay as the user wrote them; only the lists are refreshed.
    edited = refresh_lists(ctx, SimpleNamespace(**{**fields, "prompts": "a green zq"}, suggested=fields))
    assert set(edited) == {"past", "reference", "clip"}
    # Suggest fills in for the variants typed.
    again = suggest(ctx, SimpleNamespace(variants="a=builtin:pocket\nb=builtin:pocket+lora:zq:1"))
    assert again["prompts"].splitlines()[1] == "a red zq on a white background" and again["seeds"] == "0, 1, 2, 3"


def _add_metadata(path, extra: dict) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, state = dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, str(path), metadata={**meta, **extra})


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
    assert grid.endswith(".png")  # tiny models draw noise: no face, so of the charts only CLIP's has data
    assert [c["caption"] for c in charts] == ["CLIP score per variant"]
    assert "No generated picture has a face: no sim-score, so no likeness chart." in status
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


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def pocket_served(tmp_path, shared_models_dir):
    """The whole studio on builtin:pocket, with the star dataset and a LoRA that says it learnt 'zq' from it (random
    weights: what it draws does not matter here, what the page does with it does)."""
    from served import free_port
    from weights_files import make_lora

    from studio.context import Studio
    from studio.pocket.concept import write_concept_dataset
    from studio.settings import Settings
    from studio.ui import launch

    studio = Studio.open(Settings(root=tmp_path, models_dir=tmp_path / "models", workspace_dir=tmp_path / "workspace",
                                  allow_downloads=False, default_model="builtin:pocket", port=free_port()))
    write_concept_dataset(studio.settings.datasets_dir / "zq", trigger="zq")
    path = make_lora(studio, "builtin:pocket", tmp_path / "models" / "lora" / "zq.safetensors", seed=1)
    _add_metadata(path, {"studio.trigger": "zq", "studio.dataset": "zq", "studio.base_model": "builtin:pocket"})
    app = launch(studio, prevent_thread_lock=True)
    yield studio, f"http://127.0.0.1:{studio.settings.port}/"
    app.close()


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs the system chromium (.ci/run installs it)")
def test_pocket_evaluation_in_a_real_browser(pocket_served, tmp_path):
    """From the page: the form starts with pocket and the zq LoRA, its prompts, no reference; Evaluate gives a grid
    and the checker's two charts, with no page error and no error toast."""
    from playwright.sync_api import expect, sync_playwright

    studio, url = pocket_served
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.get_by_role("tab", name="Evaluate").click()
        expect(page.get_by_label("Variants to compare (2 or more)")).to_have_value("control=\nzq=+lora:zq:1")
        expect(page.get_by_label("Prompts (one per line)")).to_have_value(re.compile(r"\na red zq on a white"))
        page.locator("#evaluate-name textarea").fill("pocket-page")
        page.get_by_label("Seeds").fill("0, 1")
        page.get_by_role("button", name="Evaluate", exact=True).click()
        done = page.get_by_text(re.compile(r"Done: pocket-page: 12 image\(s\); drawn as the prompt asks"))
        expect(done).to_be_visible(timeout=90_000)
        expect(page.get_by_text("'zq' counts as star: the checker sees a star in 8 of the 8 pictures")).to_be_visible()
        charts = page.locator("#evaluate-charts img")
        expect(charts).to_have_count(2)
        page.screenshot(path=str(tmp_path / "evaluate.png"), full_page=True)
        for chart in charts.all():  # one per row, at the column's width: big enough to read
            assert chart.bounding_box()["width"] >= 600
        # the grid (a tall strip: 2 columns, 6 rows) at its own size or larger, not shrunk to a fixed height
        grid = page.locator("#evaluate-grid img")
        expect(grid).to_be_visible()
        scale = grid.evaluate("im => im.getBoundingClientRect().width / im.naturalWidth")
        assert scale >= 0.99, scale
        toasts = page.locator(".toast-body.error").all_inner_texts()
        browser.close()
    assert not errors and not toasts, (errors, toasts)
    assert (studio.settings.workspace_dir / "evaluations" / "pocket-page" / "chart_checker_drawn.png").is_file()
