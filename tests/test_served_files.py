"""The web server hands out only what a user may see, logged in or not, and web inputs name only what the studio
lists: checked through a real server, over HTTP and gradio_client (issue: hardening)."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager

import httpx
import pytest
from PIL import Image

from served import serve_studio

AUTH = ("alice", "s3cret-pass")


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_models_dir):
    root = tmp_path_factory.mktemp("served_files")
    studio, app, url = serve_studio(root, shared_models_dir, auth=":".join(AUTH))
    ws = studio.settings.workspace_dir
    private = {  # what no URL may ever hand out
        "original": ws / "datasets" / "me" / ".originals" / "0001-party.jpg",
        "dataset_json": ws / "datasets" / "me" / "dataset.json",
        "mask": ws / "datasets" / "me" / "0001.mask.png",
        "hashes": ws / ".cache" / "hashes.json",
        "run_json": ws / "runs" / "r" / "run.json",
        "checkpoint": ws / "runs" / "r" / "checkpoints" / "step-0000002" / "weights.safetensors",
        "model": studio.settings.models_dir / "lora" / "private-face.safetensors",
    }
    public = {  # what the studio shows, but only as copies it hands out itself
        "picture": ws / "datasets" / "me" / "0001.png",
        "sample": ws / "runs" / "r" / "samples" / "epoch-001.png",
        "output": ws / "outputs" / "2026-01-01" / "00000-1.png",
    }
    for path in [*private.values(), *public.values()]:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".png", ".jpg"):
            Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
        elif not path.exists():
            path.write_text("{}")
    yield studio, url, private, public
    app.close()


@contextmanager
def _client(url: str, login: bool):
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as client:
        if login:
            response = client.post("/login", data={"username": AUTH[0], "password": AUTH[1]})
            assert response.status_code == 200, response.text
        yield client


@pytest.mark.parametrize("login", [False, True], ids=["anonymous", "logged-in"])
def test_no_workspace_or_model_file_is_reachable_by_url(served, login):
    _, url, private, public = served
    with _client(url, login) as client:
        for what, path in {**private, **public}.items():
            response = client.get(f"/gradio_api/file={path}")
            assert response.status_code == (403 if login else 401), (what, response.status_code)
            assert b"\x89PNG" not in response.content and b"{}" != response.content


def test_a_shown_picture_is_a_copy_and_private_files_are_never_shown(served):
    from studio.ui.serving import served as serve

    studio, url, private, public = served
    settings = studio.settings
    for path in public.values():
        assert serve(settings, path)  # allowed
    for what, path in private.items():
        with pytest.raises(ValueError, match="not something the web studio hands out"):
            serve(settings, path)


def test_generated_images_come_back_logged_in_only(served):
    from gradio_client import Client

    studio, url, _, _ = served
    client = Client(url, auth=AUTH, verbose=False)
    images, parameters, seed = client.predict(prompt="a photo of a dog", model="builtin:tiny", seed=3,
                                              steps=2, api_name="/generate")
    assert seed == 3 and len(images) == 1
    with _client(url, login=False) as anonymous:
        assert anonymous.get(f"/gradio_api/file={images[0]['image']}").status_code == 401
    with _client(url, login=False) as anonymous:
        assert anonymous.post("/login", data={"username": "alice", "password": "wrong"}).status_code == 400


def test_web_inputs_name_what_the_studio_lists_never_server_paths(served, tmp_path):
    from gradio_client import Client

    studio, url, _, _ = served
    client = Client(url, auth=AUTH, verbose=False)
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"x")
    messages = []
    for model_id in (str(secret), str(tmp_path / "absent.safetensors")):
        with pytest.raises(Exception) as info:
            client.predict(prompt="a dog", model=model_id, steps=2, api_name="/generate")
        messages.append(str(info.value).replace(model_id, "PATH"))
    assert messages[0] == messages[1] and "not found" in messages[0]  # no answer to "does this file exist?"
    with pytest.raises(Exception, match="`run` must be 1-64 letters"):
        client.predict("../../../../etc", api_name="/train_status")
    with pytest.raises(Exception, match="`reference` '/etc' not found: it is not a dataset the studio lists"):
        client.predict(name="x", prompts="a dog", seeds="1", variants="a=\nb=", reference="/etc", steps=2,
                       api_name="/evaluate")
    with pytest.raises(Exception, match="`dataset` '/etc' not found"):
        client.predict(name="webrun", dataset="/etc", model="builtin:tiny", method="lora", trigger="sks",
                       validation_prompts="", api_name="/train_start")


def test_uploads_are_capped(tmp_path_factory, shared_models_dir):
    studio, app, url = serve_studio(tmp_path_factory.mktemp("capped"), shared_models_dir, max_upload_mb=1)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            big = client.post("/gradio_api/upload", files={"files": ("big.zip", b"0" * (2 * 1024**2))})
            small = client.post("/gradio_api/upload", files={"files": ("small.zip", b"0" * 1024)})
        assert big.status_code == 413 and small.status_code == 200
    finally:
        app.close()


def test_wrong_passwords_wait_longer_and_longer():
    from studio.ui.access import MAX_DELAY_S, PasswordCheck

    waited = []

    async def sleep(seconds):
        waited.append(seconds)

    check = PasswordCheck("alice:s3cret", sleep=sleep)
    results = [asyncio.run(check.login("alice", guess)) for guess in ("a", "b", "c", "d", "e", "f", "g", "h")]
    assert results == [False] * 8 and waited == [0.5, 1, 2, 4, 8, 16, MAX_DELAY_S, MAX_DELAY_S]
    assert asyncio.run(check.login("alice", "s3cret")) is True and check.failures("", "alice") == 0
    assert asyncio.run(check.login("bob", "s3cret")) is False


def test_the_password_need_not_be_on_the_command_line(tmp_path, monkeypatch, capsys):
    from studio.cli import build_parser
    from studio.cli.serve import adjust_settings
    from studio.settings import Settings

    def settings_for(*argv):
        args = build_parser().parse_args(["serve", *argv])
        return adjust_settings(args, Settings(root=tmp_path))

    secret = tmp_path / "auth.txt"
    secret.write_text("alice:from-a-file\n")
    assert settings_for("--auth-file", str(secret)).auth == "alice:from-a-file"
    monkeypatch.setenv("STUDIO_AUTH", "bob:from-the-env")
    assert settings_for().auth == "bob:from-the-env"
    monkeypatch.delenv("STUDIO_AUTH")
    for bad in ("alice:", ":pw", "alice"):
        with pytest.raises(ValueError, match=r"must be user:password with neither part empty"):
            settings_for("--auth", bad)
    from studio.cli import main

    assert main(["--root", str(tmp_path), "serve", "--auth", "alice:"]) == 2
    assert "neither part empty, but is 'alice:'" in capsys.readouterr().err
