"""One owner of the device: runs and mining jobs queued take turns and never overlap, a killed child frees the device
for the next, the queue survives a restart, the studio's own GPU work waits for a job (or runs on the CPU when asked)
and loads nothing meanwhile, and a `train` command beside a served studio makes it give back its weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from fixtures_faces import astronaut_variants, hopper
from tests.train_helpers import astronaut, make_dataset, tiny_config

ROOT = Path(__file__).resolve().parent.parent


def _until(predicate, timeout: float = 120.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _holder(settings, job: str, device: str = "cpu") -> subprocess.Popen:
    """A process that holds `device` as `job` would (a sleeping stand-in for a job's child)."""
    from studio import claims

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    folder = claims.queue_dir(settings)
    with claims.locked(folder):
        claims.take(folder, [device], job, sleeper.pid, "a stand-in job")
    return sleeper


def _entry(name: str, devices: list[str], kind: str = "run"):
    from studio.queue import Entry

    return Entry(f"{kind}:{name}", kind, name, devices)


# ---- the order, the claims ---------------------------------------------------------------------------------------

def test_each_device_keeps_its_order_and_events_are_started_by_their_own_process():
    from studio.queue import startable

    waiting = [_entry("a", ["cuda:0"]), _entry("b", ["cuda:1"]), _entry("c", ["cuda:0", "cuda:1"]),
               _entry("d", ["cuda:1"]), _entry("gen", ["cuda:0"], kind="event")]
    assert [e.name for e in startable(waiting, busy=set())] == ["a", "b"]  # c waits for both; d waits behind c
    assert [e.name for e in startable(waiting, busy={"cuda:0"})] == ["b"]
    assert startable([_entry("gen", ["cpu"], kind="event"), _entry("x", ["cpu"])], busy=set()) == []


def test_a_dead_process_frees_its_claim_and_a_reused_pid_is_not_taken_for_it(settings):
    from studio import claims

    folder = claims.queue_dir(settings)
    holder = _holder(settings, "run:fake")
    claim = claims.holder(folder, "cpu")
    assert (claim.job, claim.pid, claim.label()) == ("run:fake", holder.pid, "run 'fake'") and claim.is_job
    holder.kill()
    holder.wait()
    assert claims.holder(folder, "cpu") is None and claims.holders(folder) == []
    with claims.locked(folder):  # a live process that is not the one that claimed (its start time differs)
        claims.take(folder, ["cuda:1"], "run:old", os.getpid())
    path = folder / "claim-cuda-1.json"
    path.write_text(path.read_text().replace('"created": ', '"created": 1'))
    assert claims.holder(folder, "cuda:1") is None
    assert claims.device_key("cuda") == "cuda:0" and claims.device_key("cpu") == "cpu"


def test_moving_and_removing_entries_and_the_restart_option(settings):
    from studio import claims, queue

    folder = claims.queue_dir(settings)
    with claims.locked(folder):
        queue._write(folder, queue.Lineup([], [_entry(n, ["cuda:0"]) for n in "abc"]))
    queue.move(folder, "run:c", 1)
    assert [e.name for e in queue.lineup(folder).waiting] == ["c", "a", "b"]
    assert queue.remove(folder, "run:a").name == "a"
    with pytest.raises(ValueError, match="`position` must be between 1 and 2 but is 5"):
        queue.move(folder, "run:b", 5)
    with pytest.raises(ValueError, match="`entry` 'run:zz' is not in the queue \\(run:c, run:b\\)"):
        queue.remove(folder, "run:zz")
    with pytest.raises(ValueError, match="`on_restart` must be one of resume, stop but is 'later'"):
        queue.set_on_restart(folder, "later")
    queue.set_on_restart(folder, "stop")
    lineup = queue.lineup(folder)
    assert lineup.on_restart == "stop" and [e.owner for e in lineup.waiting] == ["", ""]


# ---- the studio's own work ---------------------------------------------------------------------------------------

def test_generate_waits_for_a_job_and_loads_nothing_until_it_ends(studio):
    from studio import claims, queue
    from studio.generate import GenerationRequest, generate
    from studio.gpu import device_turn

    holder = _holder(studio.settings, "run:long")
    said, done = [], {}

    def generate_now():
        with device_turn(studio, "generate", progress=lambda f, m: said.append(m)) as turn:
            done["result"] = generate(studio, GenerationRequest(prompt="a dog", model="builtin:tiny", steps=2,
                                                                seed=1, width=64, height=64))
        done["turn"] = turn

    worker = threading.Thread(target=generate_now)
    worker.start()
    try:
        _until(lambda: said, 30, "the request to say it waits")
        time.sleep(1.0)
        assert worker.is_alive() and studio.cache.holdings() == []  # waiting, nothing loaded beside the job
        assert said[-1].startswith("waiting for cpu: run 'long' holds it")
        assert [e.name for e in queue.lineup(claims.queue_dir(studio.settings)).waiting] == ["generate"]
    finally:
        holder.kill()
        holder.wait()
    worker.join(60)
    assert len(done["result"].images) == 1 and done["turn"].device == "cpu"
    assert done["turn"].note.startswith("waited ") and "for run 'long' to give back cpu" in done["turn"].note
    assert [m.model_id for m in studio.cache.holdings()] == ["builtin:tiny"]
    assert claims.holder(claims.queue_dir(studio.settings), "cpu") is None  # given back after it


def test_generate_runs_on_the_cpu_when_asked_and_loads_nothing_on_the_busy_gpu(settings):
    from studio.context import Studio
    from studio.generate import GenerationRequest, generate
    from studio.gpu import device_turn

    # a GPU a job holds (none is needed here: nothing touches it; a budget in bytes, not a share of its memory)
    studio = Studio.open(settings.with_(device="cuda:0", when_busy="cpu", cache_budget_bytes=2**30))
    holder = _holder(settings, "run:long", device="cuda:0")
    try:
        with device_turn(studio, "generate") as turn:
            result = generate(studio, GenerationRequest(prompt="a dog", model="builtin:tiny", steps=2, seed=1,
                                                        width=64, height=64))
    finally:
        holder.kill()
        holder.wait()
    assert turn.device == "cpu" and turn.note == "on the CPU, since run 'long' holds cuda:0"
    assert len(result.images) == 1 and [m.device for m in studio.cache.holdings()] == ["cpu"]


# ---- jobs in child processes -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_runs_and_a_mining_job_take_turns_and_a_killed_child_frees_the_device(studio, tmp_path):
    from studio import children, claims, jobs
    from studio.joblog import read_status
    from studio.mine import MiningRequest, mining_status, start_mining, wait_mining
    from studio.train import run_status, start_run, wait_run

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, im in enumerate(astronaut_variants(2) + [hopper()]):
        im.save(photos / f"{i:02d}.jpg", quality=90)
    # 1. Three jobs queued at once: the first starts, the others wait in order
    first = start_run(studio, tiny_config(name="a", max_steps=500))
    second = start_run(studio, tiny_config(name="b", max_steps=3))
    third = start_mining(studio, MiningRequest("m", candidates=photos))
    assert (first.state, second.state, third.state) == ("starting", "queued", "queued")
    assert third.message == "1 before it in the queue, after run 'a'"
    rows = jobs.queue_rows(studio)
    assert [(r.entry, r.position) for r in rows] == [("run:a", 0), ("run:b", 1), ("mining:m", 2)]
    assert rows[1].needs == "training a lora on builtin:tiny at 64 px" and rows[1].when().startswith("after")
    # 2. Kill the first run's child outright: its claim is freed and the next job starts (the runner sees to it)
    _until(lambda: run_status(studio, "a").step >= 1, what="run a's first step")
    os.kill(read_status(first.run_dir)["pid"], signal.SIGKILL)
    killed = time.time()
    second, third = wait_run(studio, "b", timeout_s=300), wait_mining(studio, "m", timeout_s=300)
    assert run_status(studio, "a").state == "stopped"
    assert (second.state, third.state) == ("done", "done"), (second.message, third.message)
    # 3. One after another, never overlapping: each started after the one before it ended
    b, m = read_status(second.run_dir), read_status(mining_status(studio, "m").folder)
    assert killed < b["started"] < b["ended"] < m["started"] < m["ended"]
    # the last child exits a moment after it said it was done: then nothing holds the device and nothing is left
    _until(lambda: claims.holders(claims.queue_dir(studio.settings)) == [], 30, "the last claim to go")
    assert jobs.queue_rows(studio) == []
    _until(lambda: children.reap_finished() == 0, 30, "this process's children to end")
    assert not [p for p in psutil.Process().children(recursive=True) if p.status() == psutil.STATUS_ZOMBIE]


@pytest.mark.slow
def test_the_queue_survives_a_restart(studio, monkeypatch):
    from studio import claims, queue
    from studio.context import Studio
    from studio.gpu import QueueWatcher
    from studio.joblog import read_status
    from studio.train import cancel_run, run_status, start_run

    monkeypatch.setattr(queue, "ensure_runner", lambda folder: None)  # nothing advances it but this test
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    folder = claims.queue_dir(studio.settings)
    run = start_run(studio, tiny_config(name="r", max_steps=500, checkpoint_every_steps=1))
    start_run(studio, tiny_config(name="w", max_steps=3))
    # 1. The machine goes down: the run's child dies without a word, the queue stays on disk
    _until(lambda: run_status(studio, "r").checkpoint_step, what="a checkpoint")
    os.kill(read_status(run.run_dir)["pid"], signal.SIGKILL)
    _until(lambda: run_status(studio, "r").state == "stopped", 30, "the run to show as stopped")
    # 2. A restarted studio puts the run first again, to continue from its checkpoint; the waiting one stays
    QueueWatcher(Studio.open(studio.settings), keep_going=lambda: False).start()
    waiting = queue.lineup(folder).waiting
    assert [e.id for e in waiting] == ["run:r", "run:w"] and "--resume" in waiting[0].argv
    assert run_status(studio, "r").state == "queued"
    assert [e.name for e in queue.advance(folder)] == ["r"]
    kept = run_status(studio, "r").checkpoint_step
    resumed = _until(lambda: f"resumed from step {kept}" in run_status(studio, "r").messages, what="the resume")
    assert resumed
    # 3. Set to stop: a run that dies is left stopped after the next restart, and the waiting one goes on
    queue.set_on_restart(folder, "stop")
    _until(lambda: run_status(studio, "r").state == "running", what="the run to train again")
    os.kill(read_status(run.run_dir)["pid"], signal.SIGKILL)
    _until(lambda: run_status(studio, "r").state == "stopped", 30, "the run to show as stopped")
    assert queue.recover(folder) == [] and run_status(studio, "r").state == "stopped"
    assert [e.name for e in queue.advance(folder)] == ["w"]
    assert cancel_run(studio, "w", wait_s=60).state in ("cancelled", "done")


@pytest.mark.slow
def test_a_train_command_beside_a_served_studio_makes_it_give_back_its_weights(tmp_path, shared_models_dir):
    from gradio_client import Client

    from studio import claims, queue
    from tests.served import serve_studio

    studio, app, url = serve_studio(tmp_path, shared_models_dir)
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    folder = claims.queue_dir(studio.settings)
    command = None
    try:
        client = Client(url, verbose=False)
        client.predict(prompt="a dog", negative_prompt="", model="builtin:tiny", seed=1, steps=2,
                       api_name="/generate")
        assert [m.model_id for m in studio.cache.holdings()] == ["builtin:tiny"]
        # 1. A `train` command beside it: its child claims the device, and the studio gives back what it holds
        s = studio.settings
        command = subprocess.Popen(
            [sys.executable, "-m", "studio", "--root", str(s.root), "--models-dir", str(s.models_dir), "--workspace",
             str(s.workspace_dir), "--offline", "train", "--model", "builtin:tiny", "--dataset", "ds", "--out", "cli",
             "--steps", "2000", "--resolution", "64", "--validation-every", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        claim = _until(lambda: claims.holder(folder, "cpu"), what="the run's claim")
        assert claim.job == "run:cli" and claim.pid != os.getpid()
        _until(lambda: studio.cache.holdings() == [], 10, "the studio to give back its weights")
        # 2. Generate through the API meanwhile waits for the run, and loads nothing beside it
        waiting = client.submit(prompt="a cat", negative_prompt="", model="builtin:tiny", seed=2,
                                steps=2, api_name="/generate")
        time.sleep(3)
        assert not waiting.done() and studio.cache.holdings() == []
        assert [e.name for e in queue.lineup(folder).waiting] == ["generate"]
        # 3. The command stopped, the device is free: the request runs
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=120) == 130
        images, parameters, seed = waiting.result(timeout=120)
        assert seed == 2 and len(images) == 1
    finally:
        if command is not None and command.poll() is None:
            command.kill()
        app.close()
