"""Hardening, second round (issue 32), each case through a real served studio and an HTTP client, logged in: model
inputs take only the studio's names (upscalers too), Delete subject removes the web's copies, the copies are cleaned
and bounded, a taken dataset name is asked about, several faces without a reference are asked about, the API takes
what was made after start-up, messages and /config carry no server path, the login's back-off is per client, and
only the studio's own page may call it from a browser."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from fixtures_faces import astronaut, astronaut_variants, hopper
from served import private_models, serve_studio

AUTH = ("alice", "s3cret-pass")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_models_dir):
    root = tmp_path_factory.mktemp("web_hardening")
    models = private_models(root / "models", shared_models_dir)
    studio, app, url = serve_studio(root, models, auth=":".join(AUTH))
    yield studio, app, url
    app.close()


def _client(url: str):
    from gradio_client import Client

    return Client(url, auth=AUTH, verbose=False)


@contextmanager
def _http(url: str, **kwargs):
    """An HTTP client logged in to the studio at `url`."""
    with httpx.Client(base_url=url, timeout=60, **kwargs) as client:
        assert client.post("/login", data={"username": AUTH[0], "password": AUTH[1]}).status_code == 200
        yield client


def _error(call) -> str:
    with pytest.raises(Exception) as info:
        call()
    return str(info.value)


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:  # gradio moves an upload into place after answering
        return None


def _files(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.is_file()] if Path(folder).is_dir() else []


def _photos(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, im in enumerate(astronaut_variants(n)):
        im.save(folder / f"astro_{i}.jpg", quality=90)
        out.append(folder / f"astro_{i}.jpg")
    return out


def _prepare(client, files, name: str, **changes):
    from gradio_client import handle_file

    values = dict(inputs=[handle_file(str(p)) for p in files], name=name, trigger="ohwx", size=512,
                  blur_bystanders=True, template="{trigger} {class_word}")
    return client.predict(**{**values, **changes}, api_name="/dataset_prepare")


# ---- 1. model inputs are names from the studio's lists: the upscalers too ---------------------------------------

def test_upscaler_inputs_take_only_listed_names_and_say_nothing_of_server_files(served, tmp_path):
    from weights_files import make_upscaler

    studio, _, url = served
    client = _client(url)
    described = tmp_path / "somewhere.safetensors"  # a weights file elsewhere on the server
    make_upscaler(described)
    answers = []
    for name in ("/etc/passwd", "/etc/nonexistent", str(described), "../../../etc/passwd"):
        message = _error(lambda: client.predict(image=None, upscaler=name, scale=2,
                                                tile=0, api_name="/upscale"))
        said = message.replace(repr(name), "NAME")
        assert "suffix" not in said and "tensors" not in said and "Compact" not in said  # never opened
        answers.append(said)
        hires = _error(lambda: client.predict(prompt="a dog", model="builtin:tiny", steps=2,
                                              hires_scale=2, hires_upscaler=name, api_name="/generate"))
        answers.append(hires.replace(repr(name), "NAME").replace("`hires_upscaler`", "`upscaler`"))
    assert len(set(answers)) == 1 and "not found: it is not an upscaler the studio lists" in answers[0]
    # an upscaler put in models/upscale/ after start-up is taken by its name
    make_upscaler(studio.settings.models_dir / "upscale" / "2x-new.safetensors", scale=2)
    source = tmp_path / "small.png"
    astronaut().resize((32, 32)).save(source)
    from gradio_client import handle_file

    picture = {"background": handle_file(str(source)), "layers": [], "composite": handle_file(str(source))}
    _, _, status = client.predict(image=picture, upscaler="2x-new", scale=2, tile=0,
                                  api_name="/upscale")
    assert status.startswith("Upscaled to 64x64 with 2x-new")


def test_the_store_takes_no_upscaler_path_without_server_paths(served, tmp_path):
    from weights_files import make_upscaler

    studio, _, _ = served
    store = studio.store
    assert not store.settings.server_paths  # the served studio's store
    described = tmp_path / "elsewhere.safetensors"
    make_upscaler(described)
    said = {}
    for name in ("/etc/passwd", "/etc/nonexistent", str(described), "../../etc/passwd"):
        with pytest.raises(ValueError) as info:
            store.load_upscaler(name, device="cpu")  # never opened, never described
        said[name] = str(info.value).replace(repr(name), "NAME")
    assert len(set(said.values())) == 1 and "not found" in said["/etc/passwd"]
    assert "give a path" not in said["/etc/passwd"]


def test_a_clip_model_for_training_is_one_the_studio_lists(served, tmp_path):
    from tests.train_helpers import make_dataset

    studio, _, url = served
    make_dataset(studio.settings, "clip-ds", [astronaut()], ["sks"])
    folder = tmp_path / "clip"  # the training child would load a CLIP from any folder of the server
    folder.mkdir()
    message = _error(lambda: _client(url).predict(name="clip-run", dataset="clip-ds", model="builtin:tiny", method="lora",
                                                  trigger="sks", validation_prompts="", clip_model=str(folder),
                                                  api_name="/train_start"))
    assert "`clip_model`" in message and "not a CLIP model the studio lists" in message
    assert not (studio.settings.runs_dir / "clip-run").exists()


# ---- 5. the API takes every name the studio lists at call time --------------------------------------------------

def test_the_api_takes_what_was_made_after_start_up(served, tmp_path):
    from studio.train.checkpoints import saved_epochs
    from tests.train_helpers import make_dataset, tiny_config, train_in_process

    studio, _, url = served
    _prepare(_client(url), _photos(tmp_path / "photos", 2), "made-later")  # after the server started
    client = _client(url)  # a script's own session: it never saw the lists that session was shown
    _, table, summary = client.predict("made-later", 0.4, [], api_name="/dataset_check")
    assert "photos flagged" in summary and len(table["data"]) == 2
    exported = client.predict("made-later", False, api_name="/dataset_export")
    assert Path(exported).name == "made-later.zip"
    assert "painted` holds no paint layer" in _error(
        lambda: client.predict("made-later", "0001.png", None, api_name="/dataset_mask"))
    plan = client.predict("made-later", False, api_name="/dataset_delete_plan")
    assert "would remove dataset: workspace/datasets/made-later" in plan
    # an evaluation, a run's epoch and a sweep's cell, none of which existed when the server started
    client.predict(name="later-eval", prompts="a dog", seeds="1", variants="a=builtin:tiny\nb=builtin:tiny", steps=2,
                   width=64, height=64, api_name="/evaluate")
    shown = client.predict("later-eval", api_name="/evaluation")
    assert shown[0].startswith("Evaluation **later-eval**: 2 image(s)")
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    train_in_process(studio, tiny_config(name="later-run", epochs=1, max_steps=0))
    epoch = saved_epochs(studio.settings.runs_dir / "later-run")[-1]
    message = client.predict(run="later-run", epoch=str(epoch), api_name="/train_export_epoch")
    assert message.startswith("Exported: ") and f"later-run-e{epoch:03d}" in message
    assert str(studio.settings.root) not in message and "models/lora/later-run-e" in message  # by the studio's names
    refused = _error(lambda: client.predict(sweep="no-sweep", cell="r01", api_name="/sweep_export"))
    assert "not in the list of choices" not in refused and "no-sweep" in refused  # the studio's own answer
    client.predict("made-later", "made-later", False, api_name="/dataset_delete")
    assert not (studio.settings.datasets_dir / "made-later").exists()


# ---- 2. Delete subject removes the web's copies; the copies are cleaned and bounded -----------------------------

def test_delete_subject_removes_the_copies_the_web_holds(served, tmp_path):
    studio, _, url = served
    client = _client(url)
    settings = studio.settings
    photos = _photos(tmp_path / "photos", 2)
    party = tmp_path / "photos" / "party.png"  # the subject and a bystander
    canvas = Image.new("RGB", (1024, 600), (230, 230, 230))
    canvas.paste(astronaut_variants(1)[0], (0, 0))
    canvas.paste(hopper().resize((400, 469)), (600, 60))
    canvas.save(party)
    reference = tmp_path / "reference.png"
    astronaut().save(reference)
    from gradio_client import handle_file

    earlier = set(_files(settings.root / "served"))  # the studio's own copies (tests/served.py puts them there)
    _prepare(client, [*photos, party], "gone", reference=[handle_file(str(reference))])
    zipped = client.predict("gone", True, api_name="/dataset_export")  # kohya layout: masks included
    gradio_dir = Path(os.environ["GRADIO_TEMP_DIR"])  # where this session's served studios keep gradio's copies
    uploads = [p for p in _files(gradio_dir) if _sha(p) in {_sha(f) for f in [*photos, party, reference]}]
    assert len(uploads) == 4  # the uploads, as gradio keeps them
    served_copies = [p for p in _files(settings.root / "served") if p not in earlier]  # of this dataset
    copied = {_sha(p) for p in [*uploads, *served_copies, Path(zipped)]}
    with _http(url) as http:
        for path in [*uploads, zipped]:
            assert http.get(f"/gradio_api/file={path}").status_code == 200
        # (its outputs: chosen, gallery, captions, report, ...)
        report = client.predict("gone", "gone", False, api_name="/dataset_delete")[3]
        for path in [*uploads, zipped]:
            assert http.get(f"/gradio_api/file={path}").status_code != 200, path
    assert re.search(r"removed \d+ copies the web studio held", report)
    assert served_copies and None not in copied  # the page showed the dataset's pictures: copies were made
    left = {_sha(p) for p in [*_files(gradio_dir), *_files(settings.root / "served")]}
    assert not left & copied
    assert not [p for p in served_copies if p.exists()]


def test_the_web_copies_are_cleaned_by_age_and_kept_under_a_size(tmp_path, shared_models_dir, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # put back after: launch() points gradio there
    studio, app, url = serve_studio(tmp_path / "root", shared_models_dir, auth=":".join(AUTH), max_upload_mb=1,
                                    web_copies_mb=1, web_copies_max_age_s=4, gradio_dir=tmp_path / "gradio")
    try:
        with _http(url) as http:
            uploaded = []
            for i in range(3):  # 3 x 400 kB in 1 MB: the oldest goes to make room
                response = http.post("/gradio_api/upload", files={"files": (f"u{i}.bin", bytes([i]) * 400_000)})
                assert response.status_code == 200
                uploaded += response.json()
                assert sum(p.stat().st_size for p in _files(tmp_path / "gradio")) <= 1024**2
            assert http.get(f"/gradio_api/file={uploaded[0]}").status_code == 403
            assert http.get(f"/gradio_api/file={uploaded[2]}").status_code == 200
            deadline = time.monotonic() + 30
            while Path(uploaded[2]).exists() and time.monotonic() < deadline:  # cleaned on schedule, by age
                time.sleep(0.5)
            assert not Path(uploaded[2]).exists() and http.get(f"/gradio_api/file={uploaded[2]}").status_code == 403
    finally:
        app.close()


# ---- 3. a taken dataset name is asked about; replacing takes its face cache along -------------------------------

def _face_cache(settings, sha: str) -> list[Path]:
    return list((settings.workspace_dir / ".cache" / "faces" / sha[:2]).glob(f"{sha}-*.json"))


def test_preparing_into_a_taken_name_needs_replace(served, tmp_path, capsys):
    from studio.cli import main

    studio, _, url = served
    client = _client(url)
    settings = studio.settings
    photos = _photos(tmp_path / "photos", 3)
    _prepare(client, photos, "taken")
    folder = settings.datasets_dir / "taken"
    before = sorted(p.name for p in folder.iterdir())
    message = _error(lambda: _prepare(client, photos[:1], "taken"))
    assert "`name` 'taken' is taken by a dataset of 3 pictures" in message and "replace" in message
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing replaced, nothing written
    shas = [_sha(p) for p in photos]
    assert all(_face_cache(settings, sha) for sha in shas)
    report = _prepare(client, photos[:1], "taken", replace=True)[0]
    assert report.startswith("dataset taken: 1 kept")
    assert _face_cache(settings, shas[0])  # still the new dataset's
    assert not _face_cache(settings, shas[1]) and not _face_cache(settings, shas[2])  # the replaced ones' go
    # the command line: --replace, or exit 2 with one line
    argv = ["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--workspace",
            str(settings.workspace_dir), "--offline", "dataset", "prepare", "--input", str(photos[1]), "--name",
            "taken", "--trigger", "ohwx", "--crop", "center"]
    assert main(argv) == 2 and "is taken by a dataset of 1 pictures" in capsys.readouterr().err
    assert main([*argv, "--replace"]) == 0 and (folder / "0001.png").is_file()


# ---- 4. several faces in most pictures, no reference: the studio asks who the subject is ------------------------

def _with_a_bigger_bystander(folder: Path, n: int) -> list[Path]:
    """`n` pictures of the subject (the astronaut, small, left) beside a larger portrait of someone else."""
    folder.mkdir(parents=True, exist_ok=True)
    out, portrait = [], hopper()
    for i, subject in enumerate(astronaut_variants(n)):
        canvas = Image.new("RGB", (360 + portrait.width, portrait.height), (230, 230, 230))
        canvas.paste(subject.resize((360, 360)), (0, 120))
        canvas.paste(portrait, (360, 0))
        canvas.save(folder / f"p{i}.png")
        out.append(folder / f"p{i}.png")
    return out


def test_several_faces_and_no_reference_ask_who_the_subject_is(served, tmp_path):
    from studio.faces.detect import detect_faces
    from studio.faces.identity import face_distance

    studio, _, url = served
    client = _client(url)
    pictures = _with_a_bigger_bystander(tmp_path / "pics", 4)
    message = _error(lambda: _prepare(client, pictures, "who"))
    assert "4 of 4 pictures show several faces and no reference photo says which is the subject" in message
    assert "'p0.png#1'" in message and "'p0.png#2'" in message and "nothing was written" in message
    assert not (studio.settings.datasets_dir / "who").exists()
    report = _prepare(client, pictures, "who", subject_face="p0.png#1")[0]  # the small face on the left
    assert report.startswith("dataset who: 4 kept")
    subject = detect_faces(astronaut())[0].encoding
    folder = studio.settings.datasets_dir / "who"
    for picture in sorted(folder.glob("000?.png")):
        faces = detect_faces(Image.open(picture).convert("RGB"))
        distances = face_distance(subject[None], faces[0].encoding) if len(faces) == 1 else None
        assert distances is not None and distances[0] < 0.4, picture.name  # the subject, the bystander blurred out


# ---- 6. no server path in messages or /config; the login's back-off per client; CORS for the studio's own page ----

def test_messages_and_config_name_the_studios_folders_never_server_paths(tmp_path, shared_models_dir):
    from safetensors.torch import save_file
    import torch

    models = private_models(tmp_path / "models", shared_models_dir)
    elsewhere = "/home/someone/models/sd15-private.safetensors"  # where a LoRA says its base was
    (models / "lora").mkdir()
    save_file({"x": torch.zeros(1)}, str(models / "lora" / "mine.safetensors"),
              metadata={"studio.base_model": elsewhere, "studio.trigger": "ohwx", "studio.name": "mine"})
    default = str(models / "builtin" / "tiny")  # a default base given on the command line as a path
    studio, app, url = serve_studio(tmp_path / "root", models, auth=":".join(AUTH), default_model=default)
    settings = studio.settings
    server_paths = [str(settings.root), str(settings.workspace_dir), str(models), str(shared_models_dir), elsewhere,
                    str(ROOT)]
    try:
        with _http(url) as http:
            config = http.get("/config").text
        for path in server_paths:
            assert path not in config, path
        for path in set(re.findall(r'"(/[^"]+)"', config)) - {"/gradio_api"}:  # gradio's own file references only
            assert Path(path).is_relative_to(settings.gradio_dir), path
        client = _client(url)
        photo = tmp_path / "one.jpg"
        astronaut_variants(1)[0].save(photo)
        report = _prepare(client, [photo], "named", crop="center")[0]
        assert "(workspace/datasets/named)" in report
        refused = _error(lambda: client.predict(run="ghost", epoch="3", api_name="/train_export_epoch"))
        assert "has no saved weights in workspace/runs/ghost" in refused
        for text in (report, refused):
            for path in server_paths:
                assert path not in text
    finally:
        app.close()


def test_failed_logins_wait_per_client_and_the_owner_is_never_held_up(served):
    studio, app, url = served
    check = app.auth.__self__  # the served studio's PasswordCheck
    waited, holding, release = [], threading.Event(), threading.Event()

    async def sleep(seconds):  # record the waits (only wrong guesses wait); the 5th waits until released
        waited.append(seconds)
        if len(waited) == 5:
            holding.set()
            await asyncio.to_thread(release.wait, 60)

    real_sleep, check._sleep = check._sleep, sleep
    guesser = dict(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    try:
        with httpx.Client(base_url=url, timeout=20, **guesser) as g:
            for guess in ("a", "b", "c"):
                assert g.post("/login", data={"username": "alice", "password": guess}).status_code == 400
            assert waited == [0.5, 1, 2]
            with _http(url):  # the owner, from elsewhere: in, without waiting
                assert waited == [0.5, 1, 2]
            assert g.post("/login", data={"username": "alice", "password": "d"}).status_code == 400
            assert waited == [0.5, 1, 2, 4]  # the owner's success did not reset the guesser's count
            pending = threading.Thread(target=lambda: g.post("/login", data={"username": "alice", "password": "e"}))
            pending.start()
            assert holding.wait(20)  # the guesser's guess is waiting...
            with _http(url):  # ...and the owner still gets in meanwhile: one lock per client, not one for all
                assert pending.is_alive()
            release.set()
            pending.join(30)
    finally:
        release.set()
        check._sleep = real_sleep


def test_only_the_studios_own_page_may_call_it_from_a_browser(served, tmp_path, shared_models_dir):
    from studio.cli import build_parser
    from studio.cli.serve import adjust_settings
    from studio.settings import Settings

    _, _, url = served
    own = url.rstrip("/")
    other = re.sub(r":\d+$", ":1", own)  # another page on this machine, another port
    with _http(url) as http:
        assert http.get("/config", headers={"Origin": own}).status_code == 200
        for origin in (other, "http://localhost:1", "null", "https://evil.example"):
            answer = http.get("/config", headers={"Origin": origin})
            assert answer.status_code == 403 and "access-control-allow-origin" not in answer.headers, origin
            preflight = http.options("/gradio_api/queue/join", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"})
            assert "access-control-allow-origin" not in preflight.headers, origin
    # --allow-origin lets one more page in, with the user's login
    args = build_parser().parse_args(["serve", "--allow-origin", "https://tools.example.org"])
    assert adjust_settings(args, Settings(root=tmp_path)).allow_origins == ("https://tools.example.org",)
    studio, app, url2 = serve_studio(tmp_path / "root", shared_models_dir, auth=":".join(AUTH),
                                     allow_origins=("https://tools.example.org",))
    try:
        with _http(url2) as http:
            allowed = http.get("/config", headers={"Origin": "https://tools.example.org"})
            assert allowed.status_code == 200
            assert allowed.headers["access-control-allow-origin"] == "https://tools.example.org"
            assert allowed.headers["access-control-allow-credentials"] == "true"
            preflight = http.options("/gradio_api/queue/join", headers={
                "Origin": "https://tools.example.org", "Access-Control-Request-Method": "POST"})
            assert preflight.headers["access-control-allow-origin"] == "https://tools.example.org"
            assert http.get("/config", headers={"Origin": other}).status_code == 403
    finally:
        app.close()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs the system chromium")
def test_the_dataset_tab_asks_who_the_subject_is_and_before_replacing(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    studio, _, url = served
    pictures = _with_a_bigger_bystander(tmp_path / "pics", 3)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(url)
        page.get_by_label("username").fill(AUTH[0])
        page.get_by_label("password").fill(AUTH[1])
        page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="Dataset").click()
        page.locator("input[type=file]").first.set_input_files([str(p) for p in pictures])
        page.get_by_label("Dataset name").fill("in-browser")
        page.get_by_label("Trigger word").fill("ohwx")
        prepare = page.get_by_role("button", name="Prepare dataset")
        report = page.get_by_label("Report")
        # 1. several faces, no reference: the faces of one picture to click, nothing written
        prepare.click()
        expect(page.get_by_text("Who is the subject?")).to_be_visible(timeout=120_000)
        page.locator("#subject-faces img").first.click()
        expect(page.get_by_label("Subject's face")).to_have_value("p0.png#1", timeout=30_000)
        assert not (studio.settings.datasets_dir / "in-browser").exists()
        prepare.click()
        expect(report).to_have_value(re.compile(r"^dataset in-browser: 3 kept"), timeout=120_000)
        expect(page.get_by_text("Who is the subject?")).to_be_hidden()
        # 2. the same name again: asked first, replaced only when confirmed
        first = (studio.settings.datasets_dir / "in-browser" / "dataset.json").read_text()
        page.get_by_label("Dataset name").fill("in-browser")
        margin = page.get_by_role("spinbutton", name="number input for Margin")
        margin.fill("2")
        margin.press("Enter")
        prepare.click()
        expect(page.get_by_text("`name` 'in-browser' is taken by a dataset of 3 pictures").first).to_be_visible(
            timeout=120_000)
        assert (studio.settings.datasets_dir / "in-browser" / "dataset.json").read_text() == first
        page.get_by_role("button", name="Replace it").click()
        expect(report).to_have_value(re.compile(r"^dataset in-browser: 3 kept"), timeout=120_000)
        expect(page.get_by_role("button", name="Replace it")).to_be_hidden()
        assert (studio.settings.datasets_dir / "in-browser" / "dataset.json").read_text() != first  # margin 2
        browser.close()
