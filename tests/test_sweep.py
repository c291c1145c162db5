"""Sweeps end to end: a 2x2 grid on builtin:pocket through the command line (scores per cell, the diverging cell
stopped by the collapse guard, the healthy ones not, the best cell exported), and a sweep whose processes were killed
continuing after a restart."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.train_helpers import astronaut, chelsea, make_dataset, tiny_config


@pytest.mark.slow
def test_pocket_sweep_scores_every_cell_and_stops_the_collapsing_one(studio, capsys, monkeypatch):
    from studio.cli import main
    from studio.pocket.concept import write_concept_dataset
    from studio.train.jobs import folder_status
    from studio.train.runlog import read_events

    write_concept_dataset(studio.settings.datasets_dir / "zq", trigger="zq", shape="star", count=8)
    root = ["--root", str(studio.settings.root), "--models-dir", str(studio.settings.models_dir), "--offline"]
    # 1. lr 2e-4 (the pocket-finetune preset's) and 1e-2 (pocket collapses into one texture) x 10 and 30 steps
    code = main([*root, "sweep", "--name", "s", "--dataset", "zq", "--preset", "pocket-finetune", "--trigger", "zq",
                 "--grid", "lr=2e-4,1e-2", "--grid", "steps=10,30", "--clip-model", "builtin:tiny-clip",
                 "--set", "validation_by=epochs", "--set", "validation_every=10"])
    out = capsys.readouterr().out
    assert code == 0, out
    folder = studio.settings.workspace_dir / "sweeps" / "s"
    report = json.loads((folder / "report.json").read_text())
    cells = {c["id"]: c for c in report["cells"]}
    assert [(c["settings"], c["state"]) for c in report["cells"]] == [
        ({"lr": 2e-4, "max_steps": 10}, "done"), ({"lr": 2e-4, "max_steps": 30}, "done"),
        ({"lr": 1e-2, "max_steps": 10}, "collapsed"), ({"lr": 1e-2, "max_steps": 30}, "collapsed")]
    # 2. Scores per cell: CLIP per prompt, time, loss; the base model's first; no faces in pocket's world
    assert len(report["base"]["scores"]["clip"]) == 3 and report["base"]["scores"]["no_face"] is None
    for cell in (cells["c01"], cells["c02"]):
        assert len(cell["scores"]["clip"]) == 3 and cell["time_s"] > 0 and cell["loss"] < 0.2 and cell["grid"]
    assert cells["c02"]["time_s"] > cells["c01"]["time_s"] and cells["c02"]["losses"][-1][0] == 30
    # 3. The guard: the diverging run's pictures at step 10 looked collapsed (one texture everywhere, left the base and
    #    the dataset), but with no checkpoint to fall back to it went on; its loss stopped it at step 23. The healthy
    #    run never fired
    assert "judged collapsed" in cells["c03"]["reason"] and "near-identical" in cells["c03"]["reason"]
    assert "left both" in cells["c03"]["reason"] and "no checkpoint to fall back to" in cells["c03"]["reason"]
    assert "stopped by the collapse guard (loss signal) at step 23" in cells["c04"]["reason"]
    healthy, diverged = folder_status(folder / "runs" / "r01", "s-r01"), folder_status(folder / "runs" / "r02", "s-r02")
    assert healthy.state == "done" and not [e for e in read_events(healthy.run_dir) if e["type"] == "guard"]
    assert (diverged.state, diverged.exit_code, diverged.signal) == ("failed", 3, "loss")
    assert report["steps_run"] == 60 and report["steps_separate"] == 80  # shared first steps
    # pocket ships a checker: each cell's pictures drawn as the dataset's star decide the best cell
    assert all(0 <= cells[c]["scores"]["shape"] <= 1 for c in ("c01", "c02", "c03"))  # c04 stopped before it drew
    assert report["best"] in ("c01", "c02") and report["best_by"] == "checker"
    assert (folder / "grid.png").is_file() and (folder / "chart_clip_vs_lr.png").is_file()
    import re

    assert re.search(r"^c04 +lr=0\.01, steps=30 +collapsed +\S+ +- +- ", out, re.M), out  # the table
    # 4. Only done cells kept weights; the best one exports as a base model the store loads
    assert sorted(p.name for p in (healthy.run_dir / "steps").iterdir()) == ["step-0000010.safetensors",
                                                                              "step-0000030.safetensors"]
    assert main([*root, "sweep", "--name", "s", "--export", "c02"]) == 0
    exported = studio.settings.models_dir / "base" / "s-c02.safetensors"
    said = capsys.readouterr()
    assert said.out.strip() == f"wrote {studio.settings.models_dir / 'base' / 's-c02'}\nwrote {exported}"
    import torch

    studio.store.load_base(studio.store.resolve(str(exported)), dtype=torch.float32, device="cpu")
    # 5. Resumed when over, the sweep leaves its ended runs alone and ends with the same report
    from studio.train import sweep_jobs

    again = sweep_jobs.wait_sweep(studio, sweep_jobs.resume_sweep(studio, "s").name, timeout_s=120)
    assert again.state == "done" and any("2 runs for 4 cells; 2 already ended" in m for m in again.messages)
    assert [c["state"] for c in again.report["cells"]] == [c["state"] for c in report["cells"]]
    # 6. The Train tab's Sweep accordion shows the same: the base first, a row per cell, the grid served
    from types import SimpleNamespace

    from studio.ui import sweep_panel
    from studio.ui.common import TabContext

    views = sweep_panel.status(TabContext(studio), SimpleNamespace(sweep="s", last=None))
    assert [row[0] for row in views["table"]] == ["base", "c01", "c02", "c03", "c04"]
    assert [row[2] for row in views["table"]][1:] == ["done", "done", "collapsed", "collapsed"]
    assert views["pictures"][0][1] == "grid" and len(views["pictures"]) == 5  # the grid, CLIP's and shape's charts
    assert set(views["loss"]["value"]["cell"]) == set(views["loss"]["color_map"]) == {"c01", "c02", "c03", "c04"}
    with pytest.raises(ValueError, match="`grid` knob 'nope' cannot be swept"):
        sweep_panel.start(TabContext(studio), SimpleNamespace(name="s2", grid="nope=1,2", preset="", dataset="zq",
                                                              model="builtin:pocket", method="finetune", trigger="zq",
                                                              validation_prompts="a {trigger}"))
    # 7. `train` ends a run the guard stopped with exit code 3 and its one-line reason
    from studio import jobs as every_job
    from studio.train import jobs

    capsys.readouterr()
    monkeypatch.setattr(jobs, "start_run", lambda studio, config, **flags: diverged)
    monkeypatch.setattr(every_job, "status", lambda studio, kind, name: diverged)  # the follow loop's reads
    monkeypatch.setattr(every_job, "wait", lambda studio, kind, name: diverged)
    assert main([*root, "train", "--dataset", "zq", "--out", "x"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"stopped (loss): {diverged.message}"] and "stayed above 3x" in err[0]


def _wait(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_a_killed_sweep_continues_after_a_restart(studio):
    from studio import children
    from studio.context import Studio
    from studio.jobs import read_status
    from studio.train import jobs, sweep_jobs
    from studio.train.jobs import folder_status
    from studio.train.sweep import SweepRequest

    make_dataset(studio.settings, "ds", [astronaut(), chelsea()], ["sks", "sks, cat"])
    # 10 and 60 steps share one run (a constant schedule): cell c01 is done at step 10, c02 needs the run to go on
    base = tiny_config(name="k", repeats=5, checkpoint_every_steps=5, validation_every=0,
                       validation_prompts=["a photo of {trigger}", "a cat"])
    status = sweep_jobs.start_sweep(studio, SweepRequest("k", base, {"steps": [10, 60]}))
    assert status.active and [c["state"] for c in status.report["cells"]] == ["pending", "pending"]
    queued = jobs.start_run(studio, tiny_config(name="other"))  # the sweep holds the device: the run waits
    assert queued.state == "queued" and queued.message == "next in the queue, after sweep 'k'"
    assert jobs.cancel_run(studio, "other").state == "cancelled"
    run = status.folder / "runs" / "r01"
    # 1. Kill the driver and the run's child once c01 is done and a later checkpoint is written (a machine going down)
    _wait(lambda: (run / "run.json").is_file() and (folder_status(run, "k-r01").checkpoint_step or 0) >= 15)
    killed = [read_status(status.folder)["pid"], read_status(run)["pid"]]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    # SIGKILL is delivered, not done, when kill() returns: a child busy writing a checkpoint lives on a moment
    _wait(lambda: not any(children.alive(pid) for pid in killed))
    # 2. After a restart the sweep shows as stopped, its first cell done, the second where it was
    restarted = Studio.open(studio.settings)
    _wait(lambda: not sweep_jobs.sweep_status(restarted, "k").active)
    stopped = sweep_jobs.sweep_status(restarted, "k")
    assert stopped.state == "stopped" and [c["state"] for c in stopped.report["cells"]] == ["done", "stopped"]
    kept = folder_status(run, "k-r01").checkpoint_step
    assert kept < 60
    # 3. Continued: the run resumes from its checkpoint (not from step 0) and finishes; c01's scores stay
    sweep_jobs.resume_sweep(restarted, "k")
    done = sweep_jobs.wait_sweep(restarted, "k", timeout_s=300)
    assert done.state == "done", (done.message, done.messages)
    assert [c["state"] for c in done.report["cells"]] == ["done", "done"]
    assert done.report["cells"][0]["scores"] == stopped.report["cells"][0]["scores"]
    resumed = folder_status(run, "k-r01")
    assert f"resumed from step {kept}" in resumed.messages and resumed.step == 60
    assert any("r01 (c01, c02) resumed on cpu" in m for m in done.messages)
