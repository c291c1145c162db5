"""Several people on one studio (issue 30), through a real served studio and HTTP clients logged in as two users:
Bob cannot list, pick by name, fetch by URL, generate with, export, evaluate or delete Alice's datasets, LoRAs, runs or
pictures, and each attempt is answered as a name or file that is not there; the shared base models work for both, a
LoRA Alice shares works for Bob; the queue alternates between users and each sees only the count of the other's jobs;
removing a user leaves no file of theirs. And the accounts file: hashed lines, plain ones refused, the single-user
login as it was."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import httpx
import pytest

from served import private_models, serve_studio

ALICE, BOB, ADA = ("alice", "alice-pass-1"), ("bob", "bob-pass-22"), ("ada", "ada-admin-333")


@pytest.fixture(scope="module")
def served(tmp_path_factory, shared_models_dir):
    """A studio of three accounts (Ada the admin), Alice's things made in it: a dataset, a run with its LoRA, an
    evaluation, a generated picture and an upload, each through her own session."""
    from studio.accounts import add_account
    from studio.fileio import write_json
    from tests.train_helpers import astronaut, make_dataset, tiny_config, train_in_process

    root = tmp_path_factory.mktemp("several_users")
    auth = root / "auth.txt"
    for (name, password), admin in ((ALICE, False), (BOB, False), (ADA, True)):
        add_account(auth, name, password, admin=admin)
    studio, app, url = serve_studio(root, private_models(root / "models", shared_models_dir), auth_file=auth)
    alice = studio.as_user("alice")
    make_dataset(alice.settings, "alice-ds", [astronaut()], ["sks person"])
    config = tiny_config(name="alice-run", dataset="alice-ds", epochs=1, max_steps=0)
    train_in_process(alice, config)
    write_json(alice.settings.runs_dir / "alice-run" / "run.json", config.to_json())  # as a queued run has it
    a = _client(url, ALICE)
    a.predict(name="alice-eval", prompts="a dog", seeds="1", variants="a=builtin:tiny\nb=builtin:tiny", steps=1,
              width=64, height=64,
              api_name="/evaluate")
    pictures = _client(url, ALICE, download_files=False).predict(
        prompt="sks person <lora:alice-run:1>", model="builtin:tiny", steps=1, width=64, height=64,
        api_name="/generate")[0]
    photo = root / "alice-photo.png"
    astronaut((96, 96)).save(photo)
    with _http(url, ALICE) as http:
        upload = http.post("/gradio_api/upload", files={"files": ("alice-photo.png", photo.read_bytes())}).json()[0]
    made = {"picture": pictures[0]["image"], "upload": upload, "photo": photo}
    yield studio, url, made
    app.close()


def _client(url: str, login, **kwargs):
    from gradio_client import Client

    return Client(url, auth=login, verbose=False, **kwargs)


class _http:
    """An HTTP client logged in as `login`."""

    def __init__(self, url: str, login):
        self.client = httpx.Client(base_url=url, timeout=60)
        assert self.client.post("/login", data={"username": login[0], "password": login[1]}).status_code == 200

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        self.client.close()


def _refusal(call) -> str:
    with pytest.raises(Exception) as info:
        call()
    return str(info.value)


def _same_answer(ask, theirs: str, unknown: str) -> str:
    """`ask(name)` fails alike for another user's name and a name nobody has (no existence oracle); returns it."""
    said = [_refusal(lambda: ask(name)).replace(name, "NAME") for name in (theirs, unknown)]
    assert said[0] == said[1], said
    return said[0]


# ---- what Bob sees and may name ----------------------------------------------------------------------------------

def test_each_user_lists_only_their_own_and_the_shared_models(served):
    studio, url, _ = served
    a, b = _client(url, ALICE), _client(url, BOB)
    assert a.predict(api_name="/datasets") == ["alice-ds"] and a.predict(api_name="/runs") == ["alice-run"]
    assert "alice-run" in a.predict(api_name="/loras")
    assert b.predict(api_name="/datasets") == [] and b.predict(api_name="/runs") == []
    assert b.predict(api_name="/loras") == []
    with _http(url, BOB) as http:
        page = http.get("/config").text
    for name in ("alice-ds", "alice-run", "alice-eval", str(studio.settings.root)):
        assert name not in page
    # the shared base models work for both
    for client in (a, b):
        assert client.predict(prompt="a dog", model="builtin:tiny", steps=1, width=64, height=64,
                              api_name="/generate")[0]


def test_bob_cannot_pick_generate_export_evaluate_or_delete_alices_things(served):
    studio, url, _ = served
    b = _client(url, BOB)
    said = _same_answer(lambda n: b.predict(n, 0.4, [], api_name="/dataset_check"), "alice-ds", "nobodys-ds")
    assert "`name_` 'NAME' not found: it is not a dataset the studio lists (none yet)" in said
    _same_answer(lambda n: b.predict(n, False, api_name="/dataset_export"), "alice-ds", "nobodys-ds")
    _same_answer(lambda n: b.predict(n, "alice-ds", False, api_name="/dataset_delete"), "alice-ds", "nobodys-ds")
    _same_answer(lambda n: b.predict(name="b-run", dataset=n, model="builtin:tiny", method="lora", trigger="sks",
                                     validation_prompts="", api_name="/train_start"), "alice-ds", "nobodys-ds")
    _same_answer(lambda n: b.predict(run=n, epoch="1", api_name="/train_export_epoch"), "alice-run", "nobodys-run")
    _same_answer(lambda n: b.predict(prompt=f"x <lora:{n}:1>", model="builtin:tiny", steps=1,
                                     width=64, height=64, api_name="/generate"), "alice-run", "nobodys-run")
    _same_answer(lambda n: b.predict(prompt="x", model="builtin:tiny", steps=1, width=64, height=64,
                                     loras={"headers": ["LoRA", "weight"], "data": [[n, 1.0]]},
                                     api_name="/generate"), "alice-run", "nobodys-run")
    _same_answer(lambda n: b.predict(name="b-eval", prompts="a dog", seeds="1", variants=f"a=builtin:tiny+{n}",
                                     steps=1, width=64, height=64, api_name="/evaluate"), "alice-run", "nobodys-run")
    _same_answer(lambda n: b.predict(n, api_name="/evaluation"), "alice-eval", "nobodys-eval")
    alice = studio.as_user("alice").settings
    assert (alice.datasets_dir / "alice-ds").is_dir() and (alice.runs_dir / "alice-run").is_dir()
    assert not studio.as_user("bob").settings.runs_dir.joinpath("b-run").exists()


def test_bob_cannot_fetch_alices_pictures_or_uploads_by_their_url(served):
    _, url, made = served
    with _http(url, ALICE) as a, _http(url, BOB) as b:
        for path in (made["picture"]["path"], made["upload"]):
            assert a.get(f"/gradio_api/file={path}").status_code == 200
            theirs = b.get(f"/gradio_api/file={path}")
            missing = b.get(f"/gradio_api/file={path.replace(path.split('/')[-2], '0' * 64)}")
            assert theirs.status_code == missing.status_code == 403
            assert theirs.json()["detail"].replace(path, "P") == missing.json()["detail"].replace(
                path.replace(path.split('/')[-2], '0' * 64), "P")
        # nor name Alice's upload as the input of a call of his own (answered as a copy that is not there)
        answers = []
        for path in (made["upload"], made["upload"].replace(made["upload"].split("/")[-2], "0" * 64)):
            answer = b.post("/gradio_api/call/dataset_prepare", json=_naming(path))
            answers.append((answer.status_code, answer.json()["detail"].replace(path.rsplit("/", 1)[0], "P")))
        assert answers[0] == answers[1] == (403, "File not allowed: P.")
        assert a.post("/gradio_api/call/dataset_prepare", json=_naming(made["upload"])).status_code == 200  # hers


def _naming(path: str) -> dict:
    """An API call's body whose first input is the file at `path` on the server."""
    return {"data": [[{"path": path, "meta": {"_type": "gradio.FileData"}}], "stolen"]}


# ---- sharing -----------------------------------------------------------------------------------------------------

def test_a_lora_alice_shares_works_for_bob_and_stays_hers(served):
    studio, url, _ = served
    a, b = _client(url, ALICE), _client(url, BOB)
    a.predict("alice-run", api_name="/lora_share")
    try:
        assert "alice-run" in b.predict(api_name="/loras")
        assert b.predict(prompt="x <lora:alice-run:1>", model="builtin:tiny", steps=1, width=64,
                         height=64, api_name="/generate")[0]
        assert "not one of your LoRAs" in _refusal(lambda: b.predict("alice-run", api_name="/lora_unshare"))
        shared = studio.settings.models_dir / "users" / "alice" / "lora" / "shared" / "alice-run.safetensors"
        assert shared.is_file()
    finally:
        a.predict("alice-run", api_name="/lora_unshare")
    assert b.predict(api_name="/loras") == []


# ---- the queue -----------------------------------------------------------------------------------------------------

def test_the_queue_alternates_between_users_and_each_sees_only_the_count_of_others(tmp_path):
    from studio import children, claims, jobs, queue
    from studio.context import Studio
    from studio.joblog import read_status
    from studio.settings import Settings
    from tests.test_queue import _until

    studio = Studio.open(Settings(root=tmp_path, allow_downloads=False))
    folder = claims.queue_dir(studio.settings)

    def job(owner: str, name: str, argv: list[str]):
        (tmp_path / "j" / name).mkdir(parents=True)
        return queue.Entry(queue.entry_id("run", name, owner), "run", name, ["cpu"], owner=owner,
                           folder=str(tmp_path / "j" / name), argv=argv, cwd=str(tmp_path))

    queue.submit(folder, job("", "blocker", ["-c", "import time; time.sleep(60)"]))  # holds the device meanwhile
    names = ["a1", "a2", "a3", "b1", "b2"]  # Alice queues three, then Bob two
    for name in names:
        queue.submit(folder, job({"a": "alice", "b": "bob"}[name[0]], name, ["-c", "pass"]))
    view = jobs.queue_view(studio.as_user("bob"))
    assert [r.name for r in view.rows] == ["b1", "b2"] and view.others == 4
    assert "4 entries of other users" in view.says()
    assert [r.position for r in view.rows] == [2, 4]  # a1, b1, a2, b2, a3: Bob's first is not behind all of Alice's
    assert len(jobs.queue_view(studio).rows) == 6  # the owner, an admin, sees every entry
    os.kill(queue.lineup(folder).running[0].pid, 9)

    def all_started():
        children.reap_finished()
        queue.advance(folder)
        return all(read_status(tmp_path / "j" / n).get("state") == "starting" for n in names)

    _until(all_started, what="every job to start")
    assert sorted(names, key=lambda n: read_status(tmp_path / "j" / n)["updated"]) == ["a1", "b1", "a2", "b2", "a3"]


# ---- removing a user -----------------------------------------------------------------------------------------------

def test_an_admin_removes_a_user_and_nothing_of_theirs_is_left(served):
    studio, url, made = served
    settings = studio.settings
    alice = studio.as_user("alice").settings
    theirs = [p for folder in (alice.workspace_dir, alice.own_models_dir) for p in folder.rglob("*") if p.is_file()]
    contents = {_sha(p) for p in theirs} | {_sha(made["photo"])}
    assert len(theirs) > 10
    assert "only an admin" in _refusal(lambda: _client(url, BOB).predict("alice", True, api_name="/users_remove"))
    said = _client(url, ADA).predict("alice", True, api_name="/users_remove")[0]
    assert said.startswith("removed user 'alice': workspace/users/alice, models/users/alice")
    assert not alice.workspace_dir.exists() and not alice.own_models_dir.exists()
    copies = [p for folder in (settings.gradio_dir, settings.served_dir) for p in Path(folder).rglob("*")
              if p.is_file()]
    assert not {_sha(p) for p in copies} & contents
    assert "alice:" not in settings.auth_file.read_text()
    login = httpx.post(f"{url}login", data={"username": ALICE[0], "password": ALICE[1]})
    assert login.status_code != 200


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---- the accounts file ---------------------------------------------------------------------------------------------

def test_the_accounts_file_holds_hashes_refuses_plain_passwords_and_keeps_the_single_user_login(tmp_path, capsys,
                                                                                            monkeypatch):
    from studio.accounts import read_logins
    from studio.cli import main

    auth = tmp_path / "auth.txt"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("correct horse\n"))
    assert main(["--root", str(tmp_path), "users", "add", "carol", "--auth-file", str(auth), "--admin"]) == 0
    text = auth.read_text()
    assert "correct horse" not in text and re.fullmatch(r"carol:scrypt\$15\$8\$1\$[^$]+\$[^$:]+:admin\n", text)
    assert oct(auth.stat().st_mode & 0o777) == "0o600"
    logins = read_logins(auth)
    assert logins.check("carol", "correct horse").admin and logins.check("carol", "wrong horse") is None
    assert (tmp_path / "workspace" / "users" / "carol").is_dir()
    auth.write_text(text + "dave:plain-password\n")
    with pytest.raises(ValueError, match="line 2 of .*: the password of 'dave' is in plain text"):
        read_logins(auth)
    capsys.readouterr()
    assert main(["--root", str(tmp_path), "serve", "--auth-file", str(auth)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    # one plain line: the single-user studio's login, its owner's workspace as before (and so is $STUDIO_AUTH)
    single = tmp_path / "single.txt"
    single.write_text("alice:s3cret\n")
    from studio.ui.access import auth_from

    assert auth_from(None, single) == {"auth": "alice:s3cret"}
    assert read_logins(single).one_login == "alice:s3cret"
    # --user: an unknown name is said, not made
    assert main(["--root", str(tmp_path), "--user", "nobody", "models"]) == 2
    assert "not a user of this studio (users: carol)" in capsys.readouterr().err


# ---- what each user's studio is made of ----------------------------------------------------------------------------

def test_two_users_bases_of_one_name_never_share_weights_and_the_owner_sees_neither(tmp_path, shared_models_dir):
    import shutil

    from studio.context import Studio
    from studio.settings import Settings

    models = private_models(tmp_path / "models", shared_models_dir)
    studio = Studio.open(Settings(root=tmp_path, models_dir=models, allow_downloads=False, device="cpu"))
    tiny = studio.store.resolve("builtin:tiny").path
    for user in ("alice", "bob"):  # a fine-tuned base of each, both called "mine"
        shutil.copytree(tiny, models / "users" / user / "base" / "mine")
    alice, bob = studio.as_user("alice"), studio.as_user("bob")
    assert "mine" in alice.store.list_models().base and "mine" not in studio.store.list_models().base
    for view in (alice, bob):
        with view.cache.pipeline("mine"):
            pass
    held = sorted((h.owner, h.model_id) for h in studio.cache.holdings())
    assert held == [("alice", "mine"), ("bob", "mine")]  # two entries: bob's name never reaches alice's weights
    with pytest.raises(ValueError, match="model 'mine' not found"):
        studio.store.resolve("mine")


def test_a_users_job_child_gets_their_settings(tmp_path):
    from studio.job_child import _parser, settings_args, settings_from_arguments
    from studio.settings import Settings

    settings = Settings(root=tmp_path).for_user("alice")
    back = settings_from_arguments(_parser("child").parse_args(["folder", *settings_args(settings, "cpu")]))
    assert (back.user, back.workspace_dir, back.studio_workspace, back.own_models_dir) == (
        "alice", tmp_path / "workspace" / "users" / "alice", tmp_path / "workspace",
        tmp_path / "models" / "users" / "alice")
