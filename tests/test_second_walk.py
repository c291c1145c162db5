"""A newcomer's second walk (issue 31), in headless Chromium: what failed then, each checked as the page shows it:
charts with numeric axes, the last run and mining job back after a reload, only saved epochs to export, the picked
run in the form, only the settings that apply, presets named for their purpose, Mine's Folder mode from the browser,
Generate's whole picture, live preview and restore message."""

from __future__ import annotations

import json
import re

import pytest

from fixtures_faces import astronaut_variants
from browsing import MARKS, browser, page  # noqa: F401 (the fixtures)
from served import serve_studio

pytestmark = MARKS


def _finished_run(settings, name: str) -> None:
    """A LoRA run on pocket as it ends: 30 epochs of losses, two validations judged by the checker, epochs 10 and 30
    saved."""
    from PIL import Image

    from studio.fileio import write_json
    from studio.train.config import RunConfig

    folder = settings.runs_dir / name
    write_json(folder / "run.json", RunConfig(name=name, dataset="stars", model="builtin:pocket", trigger="zq",
                                              rank=8, lr=2e-3, max_steps=30, epochs=0).to_json())
    write_json(folder / "status.json", {"state": "done", "message": "", "best_epoch": 30})
    grid = folder / "samples" / "epoch-010.png"
    grid.parent.mkdir(parents=True)
    Image.new("RGB", (192, 64), "white").save(grid)
    subject = {"trigger": "zq", "dataset": "stars", "label": "star", "pictures": 3}
    events = [{"type": "step", "step": s, "total": 30, "epoch": s, "loss": 0.2 / s, "it_s": 1.0, "eta_s": 0}
              for s in range(1, 31)]
    judged = {10: 1, 30: 3}  # validated epochs: how many of the 3 pictures the checker saw as the star
    events += [{"type": "epoch", "epoch": e, "loss": 0.1} if e not in judged else
               {"type": "epoch", "epoch": e, "loss": 0.1, "grid": str(grid), "scores": [],
                "subjects": [{**subject, "kept": judged[e], "score": 1 - judged[e] / 3}],
                "worst_score": 1 - judged[e] / 3} for e in range(1, 31)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (folder / "epochs").mkdir()
    for epoch in (10, 30):
        (folder / "epochs" / f"epoch-{epoch:03d}.safetensors").write_bytes(b"")


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory, shared_models_dir):
    from studio.context import Studio
    from studio.settings import Settings

    root = tmp_path_factory.mktemp("second-walk")
    # what an earlier session left: a finished run (written before the studio starts, as after a restart)
    _finished_run(Settings(root=root, workspace_dir=root / "workspace"), "stars-lora")
    studio, app, url = serve_studio(root, shared_models_dir, default_model="builtin:pocket")
    assert isinstance(studio, Studio)
    yield studio, url
    app.close()


def _axes(page, title: str) -> list[str]:
    """The axis descriptions vega writes for the chart titled `title` ("... for a linear scale ...")."""
    chart = page.locator(".vega-embed", has=page.locator(f"text={title}")).first
    return [a.get_attribute("aria-label") for a in chart.locator("[aria-roledescription='axis']").all()]


def test_train_shows_the_run_picked_what_applies_and_only_saved_epochs(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Train").click()
    # 1. The newest run is picked on load, and the form shows what it trained with
    expect(page.get_by_text(re.compile(r"^stars-lora: done"))).to_be_visible(timeout=30_000)
    expect(page.get_by_placeholder("e.g. tim-lora-v1")).to_have_value("stars-lora")  # the run's name
    rank = page.get_by_label(re.compile(r"^\s*LoRA rank"))
    expect(rank).to_have_value("8")
    # 2. Charts with numeric axes: the loss, and what pocket's checker saw
    expect(page.locator(".vega-embed").first).to_be_visible()
    for title in ("Loss", "Drawn as its shape"):
        axes = _axes(page, title)
        assert len(axes) == 2 and all("linear scale" in a for a in axes), (title, axes)
    # 3. The table lists the validated epochs only, without empty sim-score columns
    table = page.locator("table").filter(has_text="drawn as its shape").first
    expect(table).to_be_visible()
    assert "sim-score" not in table.inner_text()
    # 4. Only the epochs with saved weights can be picked for export
    page.get_by_label(re.compile(r"^\s*Epoch to export")).click()
    assert page.get_by_role("option").all_inner_texts() == ["10", "30"]
    page.keyboard.press("Escape")
    # 5. Only the settings that apply: DreamBooth's appear when it is picked, the LoRA's go
    page.locator("button.label-wrap", has_text="Advanced settings").click()
    expect(page.get_by_label(re.compile(r"^\s*LoRA alpha"))).to_be_visible()
    prior = page.get_by_label(re.compile(r"^\s*Prior preservation \(DreamBooth\)"))
    expect(prior).to_be_hidden()
    expect(page.get_by_label(re.compile(r"^\s*Flow models: noise levels"))).to_be_hidden()  # pocket is SD 1.x
    page.get_by_label("dreambooth").check()
    expect(prior).to_be_visible()
    expect(rank).to_be_hidden()
    # 6. Presets named for what they are for
    page.get_by_label(re.compile(r"^\s*Preset")).click()
    expect(page.get_by_role("option", name="Seed 002: FLUX likeness LoRA (FLUX.1-dev, 24 GB GPU)")).to_be_attached()
    page.keyboard.press("Escape")


def test_mine_takes_uploaded_pictures_charts_the_group_and_comes_back_after_a_reload(page, tmp_path):
    from playwright.sync_api import expect

    pictures = []
    for i, im in enumerate(astronaut_variants(3)):
        pictures.append(tmp_path / f"astro-{i}.jpg")
        im.save(pictures[-1], quality=90)
    page.get_by_role("tab", name="Mine").click()
    upload = page.locator(".block", has=page.get_by_text("Or upload pictures")).locator("input[type=file]").first
    upload.set_input_files([str(p) for p in pictures])
    page.get_by_label("Job name").fill("uploaded")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.get_by_text(re.compile(r"^uploaded: done"))).to_be_visible(timeout=180_000)
    axes = _axes(page, "Group size over candidates")  # a growing group drawn growing, candidates spaced by number
    assert len(axes) == 2 and all("linear scale" in a for a in axes), axes
    page.reload()
    page.get_by_role("tab", name="Mine").click()
    expect(page.get_by_text(re.compile(r"^uploaded: done"))).to_be_visible(timeout=30_000)
    expect(page.get_by_text("(no mining job yet)")).to_be_hidden()


def test_generate_shows_a_picture_whole_and_says_what_a_png_restored(page, studio_url):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Generate").click()
    gallery = page.locator("#generate-gallery")
    expect(gallery.get_by_text("Drop Media Here")).to_have_count(0)  # an output, not an upload
    page.get_by_label(re.compile(r"^\s*Prompt(\s|$)")).fill("a red circle on a white background")
    steps = page.locator("input[aria-label='number input for Steps']").first
    steps.fill("8")
    steps.press("Enter")
    page.get_by_role("button", name="Generate", exact=True).click()
    picture = page.get_by_role("img", name=re.compile(r"^seed \d+$")).first
    expect(picture).to_be_visible(timeout=120_000)
    # the whole picture: drawn inside the gallery (not a square as wide as the column, cut by the gallery's height)
    assert picture.evaluate("im => getComputedStyle(im).objectFit") == "contain"
    shown, frame = picture.bounding_box(), gallery.bounding_box()
    assert shown["y"] + shown["height"] <= frame["y"] + frame["height"] + 1, (shown, frame)
    made = sorted(studio_url[0].settings.outputs_dir.glob("*/*.png"))[-1]
    drop = page.locator(".block", has=page.get_by_text("Drop a PNG to restore its settings")).locator(
        "input[type=file]").first
    drop.set_input_files(str(made))
    restored = re.compile(r"^Restored prompt a red circle on a white background, seed \d+")
    expect(page.get_by_text(restored)).to_be_visible(timeout=30_000)


def test_a_sweep_on_disk_comes_back_after_a_reload(page, studio_url):
    """A sweep finished while the page was open (from the command line, say) shows in the Sweep accordion after a
    reload: its name, its line and its loss chart, not "(no sweep yet)"."""
    from playwright.sync_api import expect

    from studio.pocket.concept import write_concept_dataset
    from studio.train import sweep_jobs
    from studio.train.config import RunConfig
    from studio.train.presets import apply_preset
    from studio.train.sweep import SweepRequest

    studio = studio_url[0]
    page.get_by_role("tab", name="Train").click()
    write_concept_dataset(studio.settings.datasets_dir / "zq", trigger="zq", shape="star", count=8)
    base = apply_preset(RunConfig(name="lr-sweep", dataset="zq", trigger="zq"), "pocket")
    sweep_jobs.start_sweep(studio, SweepRequest("lr-sweep", base, {"lr": [2e-3], "max_steps": [2]}))
    assert sweep_jobs.wait_sweep(studio, "lr-sweep", timeout_s=300).state == "done"
    page.reload()
    page.get_by_role("tab", name="Train").click()
    page.locator("button.label-wrap", has_text="Sweep").first.click()
    expect(page.get_by_text(re.compile(r"^sweep lr-sweep: done, 1 cells \(1 done\)"))).to_be_visible(timeout=30_000)
    expect(page.get_by_text("(no sweep yet)")).to_be_hidden()
    axes = _axes(page, "Loss per cell")  # the cell's two losses, drawn on numeric axes
    assert len(axes) == 2 and all("linear scale" in a for a in axes), axes
