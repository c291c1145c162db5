"""Runs sent to remote workers on Ray (`--workers`): on a Ray cluster the tests start on 127.0.0.1 (two CPUs, no
GPU), a run trains on a worker and reads here as if it had trained here (the same LoRA tensors, byte for byte, as a
local run of the same seed), a cancel reaches the worker, a worker killed mid-run is said and the run goes on on
another from the checkpoint copied here. Without the cluster: the address check, what travels, and that nothing of
Ray is imported without --workers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.train_helpers import astronaut, make_dataset, tiny_config, wait_for_run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workers():
    """A Ray cluster on 127.0.0.1 (`ray start --head --block`, stopped by its pid, never `ray stop`): its Ray
    Client address. Its workers keep what they receive in a cache of the test's own."""
    pytest.importorskip("ray", reason="ray is an optional extra (requirements-workers.txt)")
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must fit
    port, client = _free_port(), _free_port()
    env = dict(os.environ, STUDIO_WORKER_CACHE=str(folder / "blobs"), OMP_NUM_THREADS="1")
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--node-ip-address",
                             "127.0.0.1", "--port", str(port), "--ray-client-server-port", str(client), "--num-cpus",
                             "2", "--num-gpus", "0", "--include-dashboard", "false", "--temp-dir", str(folder / "t"),
                             "--block"], env=env, stdout=open(folder / "head.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", client), timeout=1).close()
            break
        except OSError:
            assert head.poll() is None and time.monotonic() < deadline, (folder / "head.log").read_text()[-2000:]
            time.sleep(0.5)
    yield f"ray://127.0.0.1:{client}"
    head.terminate()
    head.wait(timeout=60)


def _remote(studio, address):
    from studio.context import Studio

    return Studio.open(studio.settings.with_(workers=address))


@pytest.mark.slow
def test_a_run_on_a_worker_gives_the_lora_a_local_run_gives(studio, workers):
    from studio.train import jobs
    from tests.train_helpers import train_in_process

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    remote = _remote(studio, workers)
    jobs.start_run(remote, tiny_config(name="same", max_steps=4, device="cpu"))
    there = jobs.wait_run(remote, "same", timeout_s=300)
    assert there.state == "done", (there.message, (there.run_dir / "log.txt").read_text()[-3000:])
    assert there.config.device == "cpu"  # run.json here is as asked (the worker's own copy uses its device)
    assert any(m.startswith("sent to worker") for m in there.messages)
    assert [s for s, _ in there.losses] == [1, 2, 3, 4]  # the worker's step events, relayed here
    lora = studio.settings.models_dir / "lora" / "same.safetensors"
    assert str(lora) in there.files  # exported on the worker, copied into this studio's models/
    remote_file = _tensors_and_header(lora)
    assert there.checkpoint_step == 4  # the checkpoints copied here: a resume here goes on from them
    # the same run here, with the same seed
    lora.unlink()
    import shutil

    shutil.rmtree(there.run_dir)
    here = train_in_process(studio, tiny_config(name="same", max_steps=4, device="cpu"))
    assert lora in here.files and _tensors_and_header(lora) == remote_file
    lora.unlink()


def _tensors_and_header(path: Path) -> tuple[dict, dict]:
    """A safetensors file's tensors as their raw bytes, and its header. (safetensors writes the header's keys in
    an order of its own each time it writes, so two equal files differ in those bytes: compared key by key.)"""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        tensors = {k: (str(f.get_tensor(k).dtype), f.get_tensor(k).numpy().tobytes()) for k in f.keys()}
        return tensors, dict(f.metadata())


@pytest.mark.slow
def test_cancel_reaches_the_worker(studio, workers):
    from studio.train import checkpoints, jobs

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    remote = _remote(studio, workers)
    jobs.start_run(remote, tiny_config(name="far", max_steps=2000))
    reached = wait_for_run(remote, "far", lambda s: s.step >= 3, timeout=240)
    assert reached.state == "running", reached.message
    jobs.cancel_run(remote, "far")
    status = wait_for_run(remote, "far", lambda s: False, timeout=90)
    assert status.state == "cancelled", (status.message, (status.run_dir / "log.txt").read_text()[-3000:])
    assert status.checkpoint_step is not None and status.checkpoint_step >= 3 and status.step < 2000
    checkpoints.load_checkpoint(checkpoints.latest_checkpoint(status.run_dir))


@pytest.mark.slow
def test_a_killed_worker_is_said_and_the_run_goes_on_on_another(studio, workers):
    """The worker's process killed once a checkpoint is copied here: the log says so, the run goes on in another
    worker process from that checkpoint and trains on (then it is cancelled: how it ends is the tests' above)."""
    from studio.train import jobs

    def resumed_at(status) -> int | None:
        found = [int(m.split()[-1]) for m in status.messages if m.startswith("resumed from step")]
        return found[0] if found else None

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    remote = _remote(studio, workers)
    jobs.start_run(remote, tiny_config(name="lost", max_steps=5000, checkpoint_every_steps=5))
    copied = wait_for_run(remote, "lost", lambda s: (s.checkpoint_step or 0) >= 5, timeout=240)
    assert copied.state == "running", copied.message
    first = int(re.search(r"process (\d+)", next(m for m in copied.messages if m.startswith("sent to"))).group(1))
    os.kill(first, signal.SIGKILL)
    going = wait_for_run(remote, "lost", lambda s: resumed_at(s) is not None and s.step > resumed_at(s) + 2,
                         timeout=300)
    assert going.state == "running", (going.message, (going.run_dir / "log.txt").read_text()[-3000:])
    assert any(m.startswith("worker lost") for m in going.messages)
    sent = [m for m in going.messages if m.startswith("sent to worker")]
    assert len(sent) == 2 and sent[1].endswith("resuming from the checkpoint copied here")
    assert int(re.search(r"process (\d+)", sent[1]).group(1)) != first
    assert resumed_at(going) >= 5
    jobs.cancel_run(remote, "lost")
    assert wait_for_run(remote, "lost", lambda s: False, timeout=120).state == "cancelled"


@pytest.mark.slow
def test_a_sweep_on_the_workers_scores_as_one_here(studio, workers):
    """A 2-cell sweep (lr x 1, 3 steps, validated and CLIP-scored at its step): through the workers each cell is a
    remote run of its own, two at once on the two-CPU cluster; its kept weights (tensors and header) and every
    score and loss of the report are those of the same sweep here."""
    import shutil

    from studio.train import sweep_jobs
    from studio.train.jobs import folder_status
    from studio.train.sweep import SweepRequest

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])

    def sweep(on):
        base = tiny_config(name="s", max_steps=3, clip_model="builtin:tiny-clip")
        sweep_jobs.start_sweep(on, SweepRequest(name="s", base=base, grid={"lr": [1e-4, 1e-3]}))
        ended = sweep_jobs.wait_sweep(on, "s", timeout_s=400)
        assert ended.state == "done", (ended.message, (ended.folder / "log.txt").read_text()[-3000:])
        runs = ended.folder / "runs"
        weights = {r: _tensors_and_header(runs / r / "steps" / "step-0000003.safetensors") for r in ("r01", "r02")}
        scored = [(c["id"], c["state"], c["step"], c["loss"], c["scores"]) for c in ended.report["cells"]]
        sent = [m for r in ("r01", "r02") for m in folder_status(runs / r, r).messages if m.startswith("sent to")]
        return ended, weights, (scored, ended.report["base"]["scores"]), sent

    there, weights, scores, sent = sweep(_remote(studio, workers))
    assert any(m.endswith("on the remote workers (%s), 2 at once" % workers) for m in there.messages), there.messages
    assert len(sent) == 2  # each cell's run went to a worker of its own
    assert [s for s in scores[0]] and all(cell[1] == "done" and cell[4]["clip"] for cell in scores[0])
    shutil.rmtree(there.folder)
    here, local_weights, local_scores, local_sent = sweep(studio)
    assert not local_sent and weights == local_weights and scores == local_scores


def _photos(folder: Path) -> Path:
    from fixtures_faces import astronaut_variants, hopper_variants

    folder.mkdir()
    for i, im in enumerate(astronaut_variants(3) + hopper_variants(2)):
        im.save(folder / f"{i:02d}.jpg", quality=90)
    return folder


def _decided(folder: Path) -> dict:
    """What a mining job decided, without its timings: the report, each candidate's event, the encodings, and the
    bytes of every picture and face crop it kept."""
    from studio.mine.disk import read_lines, read_report

    report = {k: v for k, v in read_report(folder).items()
              if k not in ("elapsed_s", "candidates_per_minute", "seconds_per_stage")}
    events = [{k: v for k, v in e.items() if k not in ("time", "seconds")} for e in read_lines(folder / "events.jsonl")
              if e["type"] in ("candidate", "drop")]
    encodings = [{k: v for k, v in e.items() if k != "time"} for e in read_lines(folder / "encodings.jsonl")]
    pictures = {p.relative_to(folder).as_posix(): p.read_bytes() for sub in ("images", "faces")
                for p in sorted((folder / sub).iterdir())}
    return {"report": report, "events": events, "encodings": encodings, "pictures": pictures}


@pytest.mark.slow
def test_a_mining_job_on_a_worker_decides_as_one_here(studio, workers, tmp_path):
    """Five photos (three of the astronaut, two of Grace Hopper) mined on a worker, stopped by its budget after two
    and continued there (where it stood travels: its state, encodings and events): the same decisions, distances,
    report and pictures as one uninterrupted job here."""
    import shutil

    from studio.mine import MiningRequest, resume_mining, start_mining, wait_mining
    from studio.mine.disk import read_lines

    photos = _photos(tmp_path / "photos")
    remote = _remote(studio, workers)
    start_mining(remote, MiningRequest("m", candidates=photos, max_candidates=2))
    first = wait_mining(remote, "m", timeout_s=300)
    assert first.state == "done" and first.counts["candidates"] == 2, (first.message,
                                                                      (first.folder / "log.txt").read_text()[-3000:])
    resume_mining(remote, "m", max_candidates=0)
    there = wait_mining(remote, "m", timeout_s=300)
    assert there.state == "done" and there.message == "every picture in the folder was looked at", there.message
    said = [e["text"] for e in read_lines(there.folder / "events.jsonl") if e["type"] == "message"]
    assert sum(m.startswith("sent to worker") for m in said) == 2
    assert [e["source"] for e in read_lines(there.folder / "events.jsonl") if e["type"] == "candidate"] == [
        f"{i:02d}.jpg" for i in range(5)]  # each once: what travelled back was not relayed again
    decided = _decided(there.folder)
    assert there.group_size == 3 and there.counts["rejected"] == 2
    assert decided["report"]["request"]["candidates"] == str(photos)  # the report names the pictures here
    shutil.rmtree(there.folder)
    start_mining(studio, MiningRequest("m", candidates=photos))
    here = wait_mining(studio, "m", timeout_s=300)
    assert here.state == "done", here.message
    assert _decided(here.folder) == decided


# ---- without a cluster ---------------------------------------------------------------------------------------------

def test_an_address_beyond_the_local_network_needs_tls_or_a_yes(monkeypatch):
    from studio.remote.address import check_workers

    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    assert check_workers("ray://127.0.0.1:10001") == "ray://127.0.0.1:10001"
    assert check_workers("192.168.1.20:6379") == "192.168.1.20:6379"
    with pytest.raises(ValueError, match=r"beyond the local network and Ray's TLS is off"):
        check_workers("ray://8.8.8.8:10001")
    assert check_workers("ray://8.8.8.8:10001", insecure=True) == "ray://8.8.8.8:10001"
    monkeypatch.setenv("RAY_USE_TLS", "1")
    assert check_workers("ray://8.8.8.8:10001") == "ray://8.8.8.8:10001"
    with pytest.raises(ValueError, match=r"`workers` must be ray://HOST:PORT"):
        check_workers("http://gpu-box")


def test_what_travels_with_a_run(studio):
    from studio.copies import sha256_of
    from studio.remote.bundle import run_bundle

    make_dataset(studio.settings, "ds", [astronaut(), astronaut((64, 64)).rotate(90)], ["sks", "sks turned"])
    (studio.settings.datasets_dir / "ds" / ".originals").mkdir()
    (studio.settings.datasets_dir / "ds" / ".originals" / "upload.jpg").write_bytes(b"raw")
    from studio import fileio

    config = tiny_config(name="far", gpus="", device="cpu")
    fileio.write_json(studio.settings.runs_dir / "far" / "run.json", config.to_json())
    bundle = run_bundle(studio, studio.settings.runs_dir / "far", resume=False)
    dests = {p.dest for p in bundle.parts}
    assert {"workspace/datasets/ds/000.png", "workspace/datasets/ds/001.txt"} <= dests
    assert not any(".originals" in d for d in dests)  # the uploads kept beside a dataset stay here
    assert "models/builtin/tiny/model_index.json" in dests  # a builtin base travels; the worker builds nothing
    picture = next(p for p in bundle.parts if p.dest.endswith("000.png"))
    assert picture.sha256 == sha256_of(studio.settings.datasets_dir / "ds" / "000.png")
    there = bundle.content("/worker/job")
    assert there["device"] == "" and there["model"] == "builtin:tiny" and bundle.folder == "workspace/runs/far"


def test_what_travels_with_a_mining_job(studio, tmp_path):
    """A job over a folder, going on after two decided candidates: its seed face and state as copies the job may
    change (its logs first trimmed to the last decided candidate, and sent as they were then), every file of the
    folder (a hidden one too: the job reads it), the folder named by its place on the worker. A generating job: its
    base and LoRA, by the names the worker finds them by."""
    import json

    from safetensors.torch import save_file
    import torch

    from studio import fileio
    from studio.generate.request import parse_lora
    from studio.mine import MiningRequest
    from studio.remote.bundle import mining_bundle, sent_kind

    photos = tmp_path / "photos"
    (photos / ".kept").mkdir(parents=True)
    for rel in ("00.jpg", "01.jpg", ".kept/02.jpg"):
        (photos / rel).write_bytes(rel.encode())
    folder = studio.settings.workspace_dir / "mining" / "m"
    fileio.write_json(folder / "mine.json", MiningRequest("m", candidates=photos,
                                                          seed_face="seed-face-upload.png").to_json())
    (folder / "seed-face-upload.png").write_bytes(b"face")
    fileio.write_json(folder / "state.json", {"step": 2, "next": 1})
    (folder / "events.jsonl").write_text("".join(json.dumps({"type": "candidate", "step": s}) + "\n"
                                                 for s in (0, 1, 2)))  # step 2: in flight when it stopped
    assert sent_kind(folder).child == "studio.mine.child"
    bundle = mining_bundle(studio, folder, resume=True)
    parts = {p.dest: p for p in bundle.parts}
    assert set(parts) == {"workspace/mining/m/seed-face-upload.png", "workspace/mining/m/state.json",
                          "workspace/mining/m/events.jsonl", "inputs/photos/00.jpg", "inputs/photos/01.jpg",
                          "inputs/photos/.kept/02.jpg"}
    own = [d for d, p in parts.items() if not p.link]
    assert sorted(own) == ["workspace/mining/m/events.jsonl", "workspace/mining/m/seed-face-upload.png",
                           "workspace/mining/m/state.json"]
    kept = (folder / "events.jsonl").read_bytes()
    assert [json.loads(line)["step"] for line in kept.splitlines()] == [0, 1]  # the undecided candidate's line went
    assert parts["workspace/mining/m/events.jsonl"].data == kept and bundle.events_at == len(kept)
    (folder / "events.jsonl").write_text("the driver's log goes on\n", encoding="utf-8")
    assert parts["workspace/mining/m/events.jsonl"].read(0, 1 << 20) == kept  # sent as bundled
    assert bundle.content("/w/job")["candidates"] == "/w/job/inputs/photos"
    assert bundle.renamed == {"inputs/photos": str(photos)} and bundle.folder == "workspace/mining/m"

    lora = studio.settings.models_dir / "lora" / "travels.safetensors"
    lora.parent.mkdir(parents=True, exist_ok=True)
    save_file({"x": torch.zeros(1)}, str(lora))
    try:
        other = studio.settings.workspace_dir / "mining" / "g"
        fileio.write_json(other / "mine.json", MiningRequest("g", prompt="a face", model="builtin:tiny",
                                                             loras=(parse_lora("travels:0.5"),)).to_json())
        bundle = mining_bundle(studio, other, resume=False)
    finally:
        lora.unlink()
    dests = {p.dest for p in bundle.parts}
    assert {"models/lora/travels.safetensors", "models/builtin/tiny/model_index.json"} <= dests
    there = bundle.content("/w/job")
    assert there["loras"] == ["travels:0.5"] and there["model"] == "builtin:tiny" and there["candidates"] is None


def test_the_train_and_mine_tabs_say_where_jobs_run(settings):
    from studio.remote.address import where_jobs_run
    from studio.ui import build_app

    app = build_app(settings.with_(workers="ray://127.0.0.1:10001"))
    there = {c.elem_id: c.value for c in app.blocks.values() if c.elem_id in ("train-where", "mine-where")}
    assert set(there) == {"train-where", "mine-where"} and all(
        v.startswith("Jobs run on the Ray workers at ray://127.0.0.1:10001") and "photos cross the network" in v
        for v in there.values())
    assert where_jobs_run(settings.with_(device="cpu")) == "Jobs run on this machine (device cpu)."


def test_nothing_of_ray_is_imported_without_workers(settings):
    """The studio's command line, the queue's start of a run, a sweep and a mining job and their children's code
    load no Ray module."""
    code = ("import sys; import studio.cli as c; c.build_parser(); from studio.train import jobs, loop, child; "
            "import studio.ranks, studio.remote.bundle, studio.remote.address, studio.train.sweep_jobs, "
            "studio.train.sweep_child, studio.mine.jobs, studio.mine.child, studio.cli.follow; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_a_run_for_the_workers_claims_nothing_here(settings):
    from studio import claims, jobs
    from studio.train.jobs import RUNS

    remote = settings.with_(workers="ray://127.0.0.1:10001")
    argv = jobs.child_argv(RUNS, remote, remote.runs_dir / "r", claims.Placement("auto", []), resume=True,
                           remote=True)
    assert argv[:2] == ["-m", "studio.remote.child"] and argv[-1] == "--resume"
    assert argv[argv.index("--workers") + 1] == "ray://127.0.0.1:10001"
