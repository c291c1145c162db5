"""The first hour in a real browser (headless Chromium): the offline demo from the first screen, a reload that
still shows the run, Mine, Face to animal's offline example and the Models tab, each failing on a page error or an
error toast. The Generate, Dataset and Evaluate tabs have their own browser tests beside their API tests."""

from __future__ import annotations

import re

import pytest

from browsing import MARKS, browser, page  # noqa: F401 (the fixtures)
from served import serve_studio

pytestmark = MARKS


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory, shared_models_dir):
    """A fresh workspace on builtin:pocket, the default a new user gets."""
    studio, app, url = serve_studio(tmp_path_factory.mktemp("first-hour"), shared_models_dir,
                                    default_model="builtin:pocket")
    yield studio, url
    app.close()


def test_the_demo_is_one_click_from_the_first_screen_and_a_reload_still_shows_it(page, studio_url):
    from playwright.sync_api import expect

    studio, _ = studio_url
    # 1. The first screen says what the studio is and offers the demo, open (nothing is on disk yet)
    # (a loaded machine renders the first screen slowly)
    expect(page.get_by_text("Likeness Studio makes a personal image model")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Teach builtin:pocket a star (offline demo)").click()
    # 2. One click: the dataset is written, the run starts, the Train tab shows it
    expect(page.get_by_text(re.compile(r"Started: wrote dataset 'zq'"))).to_be_visible(timeout=30_000)
    # the prompt to copy shows its LoRA tag as written (it was read as an HTML tag and vanished)
    expect(page.locator("code", has_text="a red zq on a white background <lora:zq:1>")).to_be_visible()
    expect(page.get_by_role("tab", name="Train", selected=True)).to_be_visible()
    assert len(list((studio.settings.datasets_dir / "zq").glob("zq_*.png"))) == 8
    expect(page.get_by_text(re.compile(r"zq: running, step \d+/300"))).to_be_visible(timeout=120_000)
    # 3. A reload shows the run, not "(no run yet)"; cancelling it keeps a checkpoint to resume from
    page.reload()
    page.get_by_role("tab", name="Train").click()
    expect(page.get_by_text(re.compile(r"zq: (running|starting)"))).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.get_by_text(re.compile(r"zq: cancelled"))).to_be_visible(timeout=120_000)
    expect(page.get_by_text(re.compile(r"Resume continues from the checkpoint at step \d+"))).to_be_visible(
        timeout=30_000)


def test_face_to_animal_runs_its_offline_example_and_says_what_it_did(page):
    from playwright.sync_api import expect

    from studio.ui.animal_tab import DEMO_LABEL

    page.get_by_role("tab", name="Face to animal").click()
    page.get_by_text(DEMO_LABEL, exact=True).click()  # the example: photo, prompt, pocket...
    page.locator("button.label-wrap", has_text="Generation").first.click()
    for label, value in (("Steps", "4"), ("Seeds (seed, seed+1, ...)", "2")):
        box = page.locator(f"input[aria-label='number input for {label}']").last
        box.fill(value)
        box.press("Enter")
    page.get_by_role("button", name="Transform", exact=True).click()
    expect(page.get_by_text(re.compile(r"result\(s\) in [\d.]+ s: the face and control images"))).to_be_visible(
        timeout=180_000)
    expect(page.get_by_text(re.compile(r"No canny ControlNet fits builtin:pocket"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(r"^seed \d+$")).first).to_be_visible()


def test_mine_from_the_page(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Mine").click()
    page.get_by_label(re.compile(r"^\s*Prompt(\s|$)")).fill("a photo of a face")
    model = page.get_by_label("Base model")
    model.fill("builtin:tiny")
    model.press("Enter")
    page.locator("button.label-wrap", has_text="Generation").first.click()
    for label, value in (("Steps", "2"), ("Image budget", "2")):
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
    page.get_by_label("Job name").fill("first")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.get_by_text(re.compile(r"^first: done \(candidate budget spent"))).to_be_visible(timeout=180_000)


def test_models_tab_loads_a_model_and_shows_it_held(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Models").click()
    expect(page.get_by_text("builtin:pocket").first).to_be_visible()
    page.get_by_role("button", name="Load into memory").click()
    # what a model the studio used holds is shown, not "0 MB"
    expect(page.get_by_text(re.compile(r"The cache holds (?!0(\.0)? MB)[\d.]+ MB"))).to_be_visible(timeout=60_000)
