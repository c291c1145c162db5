"""The Dataset tab through gradio_client (/dataset_prepare, /dataset_check) and in headless Chromium."""

from __future__ import annotations

import shutil

import pytest

from fixtures_faces import astronaut_variants, hopper
from served import serve_studio


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_models_dir):
    root = tmp_path_factory.mktemp("served_dataset")
    studio, app, url = serve_studio(root, shared_models_dir)
    photos = root / "photos"
    photos.mkdir()
    for i, im in enumerate(astronaut_variants(3)):
        im.save(photos / f"astro_{i}.jpg", quality=90)
    hopper().save(photos / "hopper.jpg", quality=90)
    yield studio, url, sorted(photos.iterdir())
    app.close()


def test_dataset_tab_is_first():
    from studio.ui import TABS

    assert TABS[0] == ("Dataset", "dataset_tab")


def test_prepare_and_check_through_the_api(served):
    from gradio_client import Client, handle_file

    studio, url, photos = served
    client = Client(url, verbose=False)
    report, chosen, gallery, captions = client.predict(
        inputs=[handle_file(str(p)) for p in photos], name="api-set", trigger="ohwx", size=512,
        blur_bystanders=True, template="{trigger} {class_word}, a photo", api_name="/dataset_prepare")
    assert report.startswith("dataset api-set: 4 kept, 0 refused") and len(gallery) == 4
    assert [row[1] for row in captions["data"]] == ["ohwx person, a photo"] * 4
    assert (studio.settings.datasets_dir / "api-set" / "metadata.csv").is_file()

    check_gallery, table, summary = client.predict("api-set", 0.4, [], api_name="/dataset_check")
    assert summary == ("1 of 4 photos flagged: 0004.png (hopper.jpg): far from set. Distances to the rest of the set "
                       "(median face distance; no reference given).")
    assert table["headers"] == ["photo", "file_name", "source", "to the set", "faces", "flags"]  # no reference column
    assert table["data"][0][2] == "hopper.jpg" and table["data"][0][5] == "far from set"
    assert table["data"][0][0].startswith('<img src="data:image/jpeg;base64,')  # inline: no file URL
    table = {"headers": ["file_name", "caption"], "data": [["0001.png", "ohwx person, in orange"]], "metadata": None}
    _, edited = client.predict("api-set", table, api_name="/dataset_captions")
    assert edited["data"][0] == ["0001.png", "ohwx person, in orange"]
    _, edited = client.predict("api-set", "", "studio light", "", "", api_name="/dataset_edit_captions")
    assert edited["data"][1] == ["0002.png", "ohwx person, a photo, studio light"]
    assert (studio.settings.datasets_dir / "api-set" / "0002.txt").read_text().strip().endswith("studio light")
    with pytest.raises(Exception, match="`trigger`"):
        client.predict(inputs=[handle_file(str(photos[0]))], name="x", trigger="two words",
                       api_name="/dataset_prepare")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs the system chromium")
def test_dataset_tab_in_a_real_browser(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    _, url, photos = served
    more = []  # four more photos of the astronaut: eight fill more than one row of the identity check's gallery
    for i, im in enumerate(astronaut_variants(7)[3:], start=3):
        more.append(tmp_path / f"astro_{i}.jpg")
        im.save(more[-1], quality=90)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        page.get_by_role("tab", name="Dataset").click()
        page.locator("input[type=file]").first.set_input_files([str(p) for p in sorted([*photos, *more])])
        page.get_by_label("Dataset name").fill("browser-set")
        page.get_by_label("Trigger word").fill("ohwx")
        page.get_by_role("button", name="Prepare dataset").click()
        report = page.get_by_label("Report")
        expect(report).to_have_value(__import__("re").compile(r"^dataset browser-set: 8 kept"), timeout=180_000)
        page.get_by_role("button", name="Check identity").click()
        expect(page.locator("#dataset-check-status")).to_contain_text("1 of 8 photos flagged: 0008.png",
                                                                       timeout=60_000)
        expect(report).to_have_value(__import__("re").compile(r"^dataset browser-set: 8 kept"))  # still there
        # the sorted gallery: every row whole and alike (a fixed height cut the second row), captions read whole
        gallery = page.locator("#dataset-check-gallery")
        expect(gallery.locator(".thumbnail-item")).to_have_count(8)
        frame = gallery.locator(".grid-wrap").bounding_box()
        boxes = [item.bounding_box() for item in gallery.locator(".thumbnail-item").all()]
        assert len({round(b["y"]) for b in boxes}) == 2 and len({round(b["height"]) for b in boxes}) == 1, boxes
        assert all(b["y"] + b["height"] <= frame["y"] + frame["height"] + 1 for b in boxes), (boxes, frame)
        captions = gallery.locator(".caption-label")
        assert captions.first.inner_text().endswith(" 0008.png far from set")  # the check's verdict, not the crop's
        cut = captions.evaluate_all("all => all.filter(c => c.scrollWidth > c.clientWidth).map(c => c.innerText)")
        assert cut == [], cut
        thumb = page.locator("img[alt='0008.png']").first  # the outlier's thumbnail, first in the table
        thumb.scroll_into_view_if_needed(timeout=30_000)
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=thumb.element_handle(),
                               timeout=30_000)  # the picture was served from the workspace
        page.screenshot(path=str(tmp_path / "dataset.png"), full_page=True)
        browser.close()


def test_delete_subject_leaves_nothing_of_it_on_screen(studio):
    """After Delete subject the painter, the picture picker and the identity check are emptied (the painter kept
    asking for the deleted picture's copy and hung), and the list of what went is the accordion's own."""
    from types import SimpleNamespace

    from studio.ui.common import TabContext
    from studio.ui.dataset_tab import delete, delete_plan
    from tests.train_helpers import astronaut, make_dataset

    make_dataset(studio.settings, "gone", [astronaut()], ["sks"])
    ctx = TabContext(studio)
    plan = delete_plan(ctx, SimpleNamespace(name_="gone", outputs_=False))
    assert set(plan) == {"report"} and "would remove dataset: workspace/datasets/gone" in plan["report"].replace(
        str(studio.settings.workspace_dir), "workspace")
    out = delete(ctx, SimpleNamespace(name_="gone", confirm_="gone", outputs_=False))
    assert out["painter"] is None and out["picked"]["choices"] == [] and out["picked"]["value"] is None
    assert out["check_gallery"] == [] and out["check_table"]["data"] == [] and out["gallery"] == []
    assert out["check_status"] == "Subject gone deleted: nothing to check."
    assert not (studio.settings.datasets_dir / "gone").exists()
