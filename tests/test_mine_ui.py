"""The Mine tab: listed after Dataset, widgets become a checked MiningRequest, and /mine_start, /mine_status,
/mine_cancel and /mine_to_dataset work through gradio_client."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fixtures_faces import astronaut_variants, hopper
from served import serve_studio


def _widgets(**changes) -> dict:
    """/mine_start's inputs as the page sends them (MiningRequest's field names; numbers may come as floats)."""
    values = dict(name="ui", prompt="a photo of a face", negative_prompt="", candidates=None,
                  model="(studio default)", loras=["mine:0.6"], embeddings=[], seed_face=None, sampler="Euler a",
                  steps=20.0, cfg=7.0, width=0, height=0, seed_start=5.0, batch_size=2.0, upscaler="(none)",
                  tolerance=0.4, near_miss=0.6, drop_tolerance=0.0, recheck=True, pin_seed=False, target=300.0,
                  max_candidates=0, max_minutes=1.5)
    return {**values, **changes}


def test_tab_is_listed_right_after_dataset():
    from studio.ui import TABS

    assert TABS[1] == ("Mine", "mine_tab")


def test_widgets_become_a_checked_request(tmp_path):
    from studio.ui.mine_tab import request_from_widgets

    request = request_from_widgets(_widgets())
    assert (request.prompt, request.model, request.candidates) == ("a photo of a face", "", None)
    assert (request.loras[0].name, request.loras[0].weight) == ("mine", 0.6)
    assert (request.seed_start, request.batch_size, request.max_seconds) == (5, 2, 90.0)
    assert request.drop_tolerance is None and request.rules.drop_limit == 0.4 and isinstance(request.steps, int)
    folder = request_from_widgets(_widgets(prompt="", candidates=str(tmp_path)))
    assert folder.candidates == tmp_path and folder.prompt == ""
    with pytest.raises(ValueError, match="give either `prompt`.* or `candidates`.*, not both"):
        request_from_widgets(_widgets(candidates=str(tmp_path)))
    assert request_from_widgets(_widgets(drop_tolerance=0.45)).rules.drop_limit == 0.45
    with pytest.raises(ValueError, match="`tolerance` must be between 0 and 2"):
        request_from_widgets(_widgets(tolerance=0.0))


def test_start_watch_stop_and_to_dataset_through_the_api(tmp_path, shared_models_dir):
    from gradio_client import Client

    studio, app, url = serve_studio(tmp_path, shared_models_dir)  # the whole web studio: names only, copies shown
    photos = studio.settings.datasets_dir / "photos"  # a plain folder of pictures, listed as a dataset
    photos.mkdir(parents=True)
    for i, im in enumerate(astronaut_variants(3)):
        im.save(photos / f"astro-{i}.jpg", quality=90)
    hopper().save(photos / "hopper.jpg", quality=90)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="`candidates` '/etc' not found: it is not a dataset the studio lists"):
            client.predict(name="web", candidates="/etc", api_name="/mine_start")
        job, line = client.predict(name="api-job", candidates="photos", target=50, max_minutes=2,
                                   api_name="/mine_start")
        assert line.startswith("api-job: starting")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text, faces, plot, target, max_candidates, max_minutes = client.predict("api-job",
                                                                                   api_name="/mine_status")
            if "api-job: done" in text or "failed" in text or "stopped" in text:
                break
            time.sleep(0.5)
        assert "**api-job: done** (every picture in the folder was looked at)" in text, text
        assert "4 candidates" in text and "rejected 1" in text and "**group 3 of 50**, mean distance 0.1" in text
        assert [f["caption"] for f in faces] == ["astro-0.jpg (seed)"] + [
            f"astro-{i}.jpg ({d:.3f})" for i, d in ((1, _distance(studio, 1)), (2, _distance(studio, 2)))]
        assert all(Path(f["image"]).is_file() for f in faces)  # the server handed the faces out (as copies)
        assert plot["data"] == [[0, 1], [1, 2], [2, 3], [3, 3]]  # group size after each candidate that changed it
        assert plot["datatypes"] == {"candidate": "quantitative", "group size": "quantitative"}
        assert (target, max_candidates, max_minutes) == (50, 0, 2)  # the job's own, for Continue
        assert client.predict("api-job", api_name="/mine_cancel").startswith("api-job: done")  # nothing to stop
        message = client.predict("api-job", "api-set", "ohwx", "person", api_name="/mine_to_dataset")
        assert message.startswith("Dataset **api-set** written (3 pictures")
        with pytest.raises(Exception, match="taken by an earlier mining job"):
            client.predict(name="api-job", candidates="photos", api_name="/mine_start")
        # Folder mode from the browser: pictures uploaded (a .zip and a picture), kept as the
        # dataset folder <job>-candidates, and mined in upload order; a broken picture refused with its reason
        import zipfile

        from gradio_client import handle_file

        with zipfile.ZipFile(tmp_path / "faces.zip", "w") as z:
            z.write(photos / "astro-0.jpg", "a/astro-0.jpg")
            z.write(photos / "astro-1.jpg", "a/astro-1.jpg")
        (tmp_path / "broken.jpg").write_bytes(b"not a picture")
        files = [handle_file(str(p)) for p in (tmp_path / "faces.zip", photos / "hopper.jpg", tmp_path / "broken.jpg")]
        with pytest.raises(Exception, match="leave the prompt and the dataset empty"):
            client.predict(name="up", prompt="a face", uploads=files, api_name="/mine_start")
        job, line = client.predict(name="up", uploads=files, target=50, max_minutes=2, api_name="/mine_start")
        assert job["value"] == "up"
        assert "3 uploaded pictures kept as dataset folder 'up-candidates'; refused 1: broken.jpg (not an image" in line
        kept = sorted(p.name for p in (studio.settings.datasets_dir / "up-candidates").iterdir())
        assert kept == ["00000-astro-0.jpg", "00001-astro-1.jpg", "00002-hopper.jpg"]
        while "up: done" not in (text := client.predict("up", api_name="/mine_status")[0]):
            assert "failed" not in text and time.monotonic() < deadline + 120, text
            time.sleep(0.5)
        assert "3 candidates" in text and "**group 2 of 50**" in text, text
    finally:
        app.close()


def _distance(studio, index: int) -> float:
    from studio.mine import mining_status

    return next(m["distance"] for m in mining_status(studio, "api-job").members if m["index"] == index)
