"""Several training processes (the multi-GPU path, run here as processes on the CPU with gloo): N processes x batch
b train as one process x batch N*b, one verdict stops them all (cancel, a NaN on one of them), the job is said to be
over only once every process has ended; how a micro-batch is shared, where a run's processes go, how they start."""

from __future__ import annotations

import time

import psutil
import pytest
import torch

from tests.train_helpers import astronaut, chelsea, make_dataset, tiny_config, wait_for_run


def _four_pictures(settings):
    """Four 64 px pictures (one bucket), four captions."""
    pictures = [astronaut(), chelsea((64, 64)), astronaut().rotate(90), chelsea((64, 64)).rotate(90)]
    make_dataset(settings, "ds", pictures, ["sks", "sks cat", "sks turned", "sks cat turned"])


def _ranks_of(status) -> list[psutil.Process]:
    """The processes studio.ranks started for a running job (the status names the launcher)."""
    from studio.train.runlog import read_status

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid = read_status(status.run_dir).get("pid")
        try:
            found = psutil.Process(pid).children() if pid else []
        except psutil.NoSuchProcess:
            found = []
        if len(found) == 2:
            return found
        time.sleep(0.2)
    raise AssertionError("the run's two processes did not start")


@pytest.mark.slow
def test_two_processes_of_batch_1_train_as_one_of_batch_2(studio):
    """The same run, 4 steps at lr 1e-4: 2 CPU processes x batch 1 (through studio.ranks, gloo) against 1 process x
    batch 2. Tolerance 1 % of lr x steps (4e-6): the two differ only in float summation order (one forward of two
    pictures against two forwards whose gradients gloo averages, ~1e-7 relative); AdamW's first steps move a
    weight by about lr whatever its gradient's size, so a gradient near 0 whose rounding differs can move it
    differently, bounded by lr x steps; measured 5e-7. The LoRA's up weights, zero at the start, move by up to
    lr x steps (4e-4): a run that drew other noise or saw other pictures is far outside the tolerance."""
    from safetensors.torch import load_file

    from studio.train import jobs
    from tests.train_helpers import train_in_process

    _four_pictures(studio.settings)
    steps, lr = 4, 1e-4
    jobs.start_run(studio, tiny_config(name="two", max_steps=steps, lr=lr, batch_size=1, processes=2))
    alone = train_in_process(studio, tiny_config(name="one", max_steps=steps, lr=lr, batch_size=2))
    two = jobs.wait_run(studio, "two", timeout_s=300)
    assert two.state == "done", (two.message, (two.run_dir / "log.txt").read_text()[-3000:])
    assert any("2 processes share each micro-batch" in m for m in two.messages)
    a, b = load_file(str(alone.files[0])), load_file(str(two.files[0]))
    assert a.keys() == b.keys()
    tolerance = 0.01 * lr * steps
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=tolerance)
    moved = max(a[k].abs().max().item() for k in a if "lora_up" in k)
    assert moved > 50 * tolerance  # the runs trained: their agreement is not that of two untouched LoRAs


@pytest.mark.slow
def test_cancel_stops_both_processes_on_a_dataset_smaller_than_the_processes(studio):
    """One picture for two processes (the second computes a copy weighed 0, said in the log); a cancel stops both
    at one step with a checkpoint, and the run is said to be cancelled only once neither process is left."""
    from studio.train import checkpoints, jobs

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    status = jobs.start_run(studio, tiny_config(name="job", max_steps=500, processes=2))
    ranks = _ranks_of(status)
    reached = wait_for_run(studio, "job", lambda status: status.step >= 3)
    assert reached.state == "running", reached.message
    assert any("hold too few pictures for all of them" in m for m in reached.messages)
    asked = time.monotonic()
    jobs.cancel_run(studio, "job")
    while (status := jobs.run_status(studio, "job")).active:
        assert time.monotonic() - asked < 60, "the cancel did not stop the run"
        time.sleep(0.05)
    gone = [not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in ranks]
    assert status.state == "cancelled" and gone == [True, True], (status.state, status.message, gone)
    assert status.checkpoint_step is not None and status.checkpoint_step >= 3
    checkpoints.load_checkpoint(checkpoints.latest_checkpoint(status.run_dir))


@pytest.mark.slow
def test_a_nan_on_one_process_stops_both_and_keeps_the_last_finite_checkpoint(studio, monkeypatch):
    """STUDIO_DEBUG_NAN="3:1" makes the second process's loss NaN from step 3 on; both stop (the losses are read as
    their mean over processes), the run fails with the NaN's code and keeps step 2's checkpoint."""
    from studio.train import checkpoints, jobs

    monkeypatch.setenv("STUDIO_DEBUG_NAN", "3:1")
    make_dataset(studio.settings, "ds", [astronaut(), chelsea((64, 64))], ["sks", "sks cat"])
    # two pictures for two processes: 1-step epochs, a checkpoint at each (validation off)
    jobs.start_run(studio, tiny_config(name="nan", max_steps=20, processes=2, guard_loss_factor=0))
    status = jobs.wait_run(studio, "nan", timeout_s=300)
    assert status.state == "failed" and status.failure_code == 3, (status.message,
                                                                   (status.run_dir / "log.txt").read_text()[-3000:])
    assert "the loss became nan at step 3" in status.message and "step 2 is kept" in status.message
    kept = checkpoints.latest_checkpoint(status.run_dir)
    assert kept.step == 2
    weights, _ = checkpoints.load_checkpoint(kept)
    assert all(torch.isfinite(v).all() for v in weights.values())


@pytest.mark.slow
def test_two_processes_stopped_after_a_checkpoint_and_resumed_train_as_uninterrupted(studio):
    """The same 2-process run (gloo, batch 1 each, four pictures: two steps an epoch), once uninterrupted and once
    cancelled a few steps in (its checkpoint written at the step it stopped, mid-epoch or not) and resumed: the LoRA
    tensors are equal bit for bit. Each process's noise, timesteps and place in the epoch come back from the
    checkpoint, so nothing else may differ."""
    from safetensors.torch import load_file

    from studio.train import jobs

    _four_pictures(studio.settings)
    steps = 30
    jobs.start_run(studio, tiny_config(name="parts", max_steps=steps, processes=2, batch_size=1))
    reached = wait_for_run(studio, "parts", lambda status: status.step >= 3, timeout=240)
    assert reached.state == "running", reached.message
    jobs.cancel_run(studio, "parts")
    stopped = wait_for_run(studio, "parts", lambda status: False, timeout=120)
    assert stopped.state == "cancelled", (stopped.message, (stopped.run_dir / "log.txt").read_text()[-3000:])
    assert 3 <= stopped.checkpoint_step < steps
    jobs.resume_run(studio, "parts")
    resumed = jobs.wait_run(studio, "parts", timeout_s=300)
    assert resumed.state == "done", (resumed.message, (resumed.run_dir / "log.txt").read_text()[-3000:])
    assert f"resumed from step {stopped.checkpoint_step}" in resumed.messages
    jobs.start_run(studio, tiny_config(name="whole", max_steps=steps, processes=2, batch_size=1))
    whole = jobs.wait_run(studio, "whole", timeout_s=300)
    assert whole.state == "done", whole.message
    a, b = load_file(str(whole.files[0])), load_file(str(resumed.files[0]))
    assert a.keys() == b.keys()
    unequal = [k for k in a if not torch.equal(a[k], b[k])]
    assert not unequal, f"{len(unequal)} of {len(a)} tensors differ, e.g. {unequal[0]}: max difference " \
                        f"{(a[unequal[0]] - b[unequal[0]]).abs().max().item():.3g}"
    assert max(a[k].abs().max().item() for k in a if "lora_up" in k) > 0  # it trained


# ---- the pieces ---------------------------------------------------------------------------------------------------

def test_a_micro_batch_is_shared_in_order_and_weighed_to_its_mean():
    from studio.train.data import Sample, share

    batch = [Sample(i, False, "") for i in range(3)]
    first, second = share(batch, 2, 0, 2), share(batch, 2, 1, 2)
    assert (first.rows, second.rows) == ([0, 1], [2])
    # each process's mean x its weight, averaged over the 2 processes, is the mean of the 3 pictures
    assert (first.weight, second.weight) == (4 / 3, 2 / 3)
    # a batch of one for two processes: the second computes a copy of it that weighs nothing
    alone = share(batch[:1], 2, 1, 1)
    assert (alone.samples, alone.rows, alone.weight) == ([batch[0]], [0], 0.0)
    assert share(batch, 1, 0, 3).weight == 1.0


def test_a_process_draws_its_rows_of_the_whole_batch():
    from studio.models.families.draws import BatchDraws

    whole = torch.randn((3, 4, 8, 8), generator=torch.Generator().manual_seed(7))
    mine = BatchDraws(torch.Generator().manual_seed(7), 3, [2]).randn((1, 4, 8, 8))
    assert torch.equal(mine, whole[2:3])
    held = BatchDraws.of(torch.Generator().manual_seed(7), 3).randn((3, 4, 8, 8))
    assert torch.equal(held, whole)  # one process holding the batch draws as before


def test_where_a_run_goes(monkeypatch):
    from studio import claims

    monkeypatch.setattr(claims, "gpu_count", lambda: 2)
    assert claims.place("auto") == claims.Placement("cuda", ["cuda:0", "cuda:1"], 2, ("0", "1"))
    assert claims.place("cuda:1") == claims.Placement("cuda:1", ["cuda:1"])  # the studio's --device, one process
    assert claims.place("auto", gpus="1") == claims.Placement("cuda:1", ["cuda:1"])
    assert claims.place("cuda", gpus="1,0") == claims.Placement("cuda", ["cuda:1", "cuda:0"], 2, ("1", "0"))
    assert claims.place("cpu", processes=2) == claims.Placement("cpu", ["cpu"], 2)
    with pytest.raises(ValueError, match=r"`gpus` '0,2' names GPU 2 but the NVIDIA driver lists 2"):
        claims.place("auto", gpus="0,2")
    with pytest.raises(ValueError, match=r"`processes` 2 runs on the CPU"):
        claims.place("cuda:0", processes=2)
    with pytest.raises(ValueError, match=r"`gpus` must list GPU numbers once each"):
        claims.place("auto", gpus="0,0")
    monkeypatch.setattr(claims, "gpu_count", lambda: 0)
    assert claims.place("auto") == claims.Placement("auto", ["cpu"])


def test_several_processes_start_through_the_studios_launcher(settings, monkeypatch):
    """The child's command line names studio.ranks (never `accelerate launch`, which reads the user's
    default_config.yaml), and the processes get no ACCELERATE_* setting of the user's shell."""
    from studio import claims, jobs, ranks
    from studio.train.jobs import RUNS

    argv = jobs.child_argv(RUNS, settings, settings.runs_dir / "r", claims.Placement("cuda", ["cuda:0", "cuda:1"], 2,
                                                                                     ("0", "1")), resume=False)
    assert argv[:7] == ["-m", "studio.ranks", "--processes", "2", "--cards", "0,1", "--module"]
    assert "accelerate" not in " ".join(argv) and argv[argv.index("--device") + 1] == "cuda"
    envs = ranks.environments(2, ["0", "1"], {"ACCELERATE_USE_DEEPSPEED": "true", "PATH": "/bin"}, 29999)
    assert [e["RANK"] for e in envs] == ["0", "1"] and envs[1]["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert not any(k.startswith("ACCELERATE_") for e in envs for k in e)


def test_the_launcher_says_how_the_processes_ended():
    from studio.ranks import verdict

    said = {"state": "cancelled", "message": "cancelled at step 3"}
    assert verdict([0, 0], said) == (said, 0)
    nan = {"state": "failed", "message": "the loss became nan", "exit_code": 3}
    assert verdict([3, 3], nan) == (nan, 3)
    status, code = verdict([0, -9], said)  # the second was killed: the job failed, whatever the first said
    assert code == 1 and status["state"] == "failed" and "process 2 of 2 ended with code -9" in status["message"]
    status, code = verdict([-9, 0], None)
    assert code == 1 and "process 1 of 2 ended with code -9" in status["message"]
