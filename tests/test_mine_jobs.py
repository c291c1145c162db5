"""Mining jobs in child processes: start, cancel, list after a restart, continue, a killed child shown as stopped
and continued, a child that fails says why. (The generator path in a child: tests/test_mine_cli.py.)"""

from __future__ import annotations

import os
import signal
import time

import pytest

from fixtures_faces import astronaut_variants, hopper_variants
from studio.jobs import read_status
from studio.mine import MiningRequest, list_mining, mining_status, resume_mining, start_mining, wait_mining
from studio.mine.disk import read_lines


def _wait_for(studio, name: str, candidates: int, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = mining_status(studio, name)
        if status.counts["candidates"] >= candidates or not status.active:
            return status
        time.sleep(0.2)
    raise AssertionError(f"mining job {name} did not reach {candidates} candidates")


def test_a_job_in_a_child_is_cancelled_listed_after_a_restart_killed_and_continued(studio, tmp_path):
    from studio.context import Studio
    from studio.mine import cancel_mining

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, im in enumerate(astronaut_variants(10) + hopper_variants(4)):
        im.save(photos / f"{i:02d}.jpg", quality=90)
    request = MiningRequest("job", candidates=photos)
    # 1. Start, then cancel once under way
    status = start_mining(studio, request)
    assert status.state in ("starting", "running")
    with pytest.raises(ValueError, match="is taken by an earlier mining job"):
        start_mining(studio, request)
    # a second job waits in the queue (one device), and leaves it with its folder when cancelled before it started
    other = start_mining(studio, MiningRequest("other", candidates=photos))
    assert other.state == "queued" and other.message == "next in the queue, after mining 'job'"
    assert cancel_mining(studio, "other").state == "cancelled" and not other.folder.exists()
    assert _wait_for(studio, "job", 2).state == "running"
    status = cancel_mining(studio, "job", wait_s=60)
    assert status.state == "cancelled", status.message
    done = status.counts["candidates"]
    assert 2 <= done < 14 and status.group_size == status.counts["seed"] + status.counts["admitted"]
    # 2. A restarted studio lists the job as it was left
    (listed,) = list_mining(Studio.open(studio.settings))
    assert (listed.name, listed.state, listed.counts["candidates"]) == ("job", "cancelled", done)
    # 3. Continue, then kill the child outright: it shows as stopped, and continuing loses nothing decided
    resume_mining(studio, "job")
    _wait_for(studio, "job", done + 1)
    os.kill(read_status(status.folder)["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (status := mining_status(studio, "job")).active and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status.state == "stopped" and "ended without a word" in status.message
    resume_mining(studio, "job", target=50)
    status = wait_mining(studio, "job", timeout_s=120)
    assert status.state == "done" and status.message == "every picture in the folder was looked at"
    sources = [e["source"] for e in read_lines(status.folder / "events.jsonl") if e["type"] == "candidate"]
    assert sources == [f"{i:02d}.jpg" for i in range(14)]  # every picture once, in order, across four runs
    assert status.group_size == 10 and status.counts["rejected"] == 4 and status.request.target == 50


def test_a_failing_job_says_why(studio, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    hopper_variants(1)[0].save(photos / "hopper.jpg")
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 180, 160)).save(blank)
    start_mining(studio, MiningRequest("no-seed", candidates=photos, seed_face=str(blank)))
    status = wait_mining(studio, "no-seed", timeout_s=120)
    assert status.state == "failed" and "`seed_face` seed face seed-face-upload.png shows no face" in status.message
    with pytest.raises(ValueError, match="has no mining job to continue"):
        resume_mining(studio, "never")
    with pytest.raises(ValueError, match="`candidates` '/no/such/folder' not found"):
        start_mining(studio, MiningRequest("x", candidates="/no/such/folder"))
    with pytest.raises(ValueError, match="not found"):
        start_mining(studio, MiningRequest("x", prompt="a face", model="/no/such/model.safetensors"))
    # the web studio takes the folders it lists (datasets), never a path on the server
    with pytest.raises(ValueError, match="`candidates` 'photos' not found: it is not a dataset in"):
        start_mining(studio.for_web(), MiningRequest("web", candidates=str(photos).replace(str(tmp_path) + "/", "")))
    with pytest.raises(ValueError, match=f"`candidates` '{photos}' not found: it is not a dataset in"):
        start_mining(studio, MiningRequest("web", candidates=photos))
