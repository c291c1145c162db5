"""Runs in child processes (start, status, cancel, resume, list after a restart), the command line, the run config,
and the data pieces (buckets, epoch plans, caption shuffle, the latent cache key)."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.train_helpers import astronaut, chelsea, make_dataset, tiny_config, wait_for_run


def _wait_for_step(studio, name, step, timeout=120):
    return wait_for_run(studio, name, lambda status: status.step >= step, timeout)


def test_child_run_cancel_resume_and_listing(studio):
    from studio.context import Studio
    from studio.train import checkpoints, jobs
    from studio.train.runlog import read_status

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    # 1. Start a long run in a child process and cancel it once it is under way
    status = jobs.start_run(studio, tiny_config(name="job", max_steps=500, validation_every=1))
    assert status.state in ("starting", "running")
    with pytest.raises(ValueError, match="taken by an earlier run"):
        jobs.start_run(studio, tiny_config(name="job"))
    reached = _wait_for_step(studio, "job", 2)
    assert reached.state == "running" and reached.losses and reached.it_s > 0
    status = jobs.cancel_run(studio, "job", wait_s=60)
    assert status.state == "cancelled", status.message
    assert status.checkpoint_step is not None and status.checkpoint_step >= 2
    # 2. A new studio (a restart) lists the run with its status
    listed = jobs.list_runs(Studio.open(studio.settings))
    assert [r.name for r in listed] == ["job"] and listed[0].state == "cancelled"
    # 3. Resume, then kill the child outright: it shows as stopped and keeps its last complete checkpoint
    jobs.start_run(studio, tiny_config(name="job", max_steps=500), resume=True)
    _wait_for_step(studio, "job", status.checkpoint_step + 2)
    os.kill(read_status(status.run_dir)["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (status := jobs.run_status(studio, "job")).active and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status.state == "stopped" and status.checkpoint_step is not None
    checkpoints.load_checkpoint(checkpoints.latest_checkpoint(status.run_dir))
    # 4. Resume to a few steps past the checkpoint; the exports appear in the model store
    status = jobs.start_run(studio, tiny_config(name="job", max_steps=status.checkpoint_step + 2), resume=True)
    status = jobs.wait_run(studio, "job", timeout_s=180)
    assert status.state == "done", (status.message, (status.run_dir / "log.txt").read_text()[-2000:])
    assert status.step == status.total_steps and status.files
    assert status.validations and status.validations[-1]["grid"]
    # the child's log.txt: no import-time notes of the libraries (torchao's enums registered with torch's pytree)
    assert "register_constant" not in (status.run_dir / "log.txt").read_text()
    assert studio.settings.models_dir / "lora" / "job.safetensors" in studio.store.list_models().lora


def test_start_checks_inputs_before_starting(studio):
    from studio.train import jobs

    with pytest.raises(ValueError, match="`dataset` 'nowhere' not found"):
        jobs.start_run(studio, tiny_config(dataset="nowhere"))
    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    with pytest.raises(ValueError, match="mixed_precision"):
        jobs.start_run(studio, tiny_config(mixed_precision="fp16", device="cpu"))
    with pytest.raises(ValueError, match="has no run to resume"):
        jobs.start_run(studio, tiny_config(name="never"), resume=True)
    assert jobs.list_runs(studio) == []


def test_cli_bad_input_exits_2(settings, capsys):
    from studio.cli import main

    code = main(["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--offline", "train",
                 "--dataset", "missing", "--out", "x", "--steps", "2"])
    assert code == 2
    assert "`dataset` 'missing' not found" in capsys.readouterr().err


def test_cli_resume_without_a_run_exits_2(settings, capsys):
    from studio.cli import main

    code = main(["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--offline", "train",
                 "--out", "nothing", "--resume"])
    assert code == 2 and "has no run to resume" in capsys.readouterr().err


def test_cli_trains_streams_and_lists_files(settings, capsys):
    from studio.cli import main

    make_dataset(settings, "ds", [astronaut()], ["sks"])
    code = main(["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--offline", "train",
                 "--method", "textual-inversion", "--model", "builtin:tiny", "--dataset", "ds", "--out", "cli",
                 "--trigger", "clitoken", "--steps", "3", "--resolution", "64", "--validation-every", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "cli: done, step 3/3" in out
    assert f"wrote {settings.models_dir / 'embeddings' / 'clitoken.safetensors'}" in out


def test_cli_config_file_and_flags(tmp_path):
    from studio.cli import build_parser
    from studio.cli.train import config_from_args
    from studio.train.config import RunConfig

    path = tmp_path / "run.json"
    path.write_text(__import__("json").dumps(RunConfig(name="a", dataset="d", rank=8).to_json()))
    args = build_parser().parse_args(["train", "--config", str(path), "--rank", "2", "--steps", "7",
                                      "--validation-prompt", "p1", "p2"])
    config = config_from_args(args)
    assert (config.rank, config.max_steps, config.epochs, config.validation_prompts) == (2, 7, 10, ["p1", "p2"])
    assert config.name == "a" and config.dataset == "d"


def test_cli_preset_by_short_name_with_flags_over_it():
    from studio.cli import build_parser
    from studio.cli.train import config_from_args

    def config(*flags):
        return config_from_args(build_parser().parse_args(["train", "--dataset", "d", "--out", "o", *flags]))

    pocket = config("--preset", "pocket", "--trigger", "zq")
    assert (pocket.model, pocket.lora_layers, pocket.max_steps, pocket.batch_size, pocket.trigger) == \
        ("builtin:pocket", "all", 300, 8, "zq")
    assert pocket.check().prompts()[0] == "a red zq on a white background"
    assert config("--preset", "pocket", "--lora-layers", "transformer", "--steps", "50").lora_layers == "transformer"
    by_epochs = config("--preset", "pocket", "--epochs", "4")
    assert (by_epochs.epochs, by_epochs.max_steps) == (4, 0)  # epochs asked for by name win over the preset's steps
    assert config("--preset", "seed-002 (kohya person LoRA)").rank == 2
    with pytest.raises(ValueError, match="`preset` must be one of default, seed-002, .*pocket, .*flux-24gb.* but is 'nope'"):
        config("--preset", "nope")


def test_config_errors_name_the_argument():
    from studio.train.presets import PRESETS, apply_preset

    with pytest.raises(ValueError, match="`method` must be one of"):
        tiny_config(method="hypernetwork").check()
    with pytest.raises(ValueError, match="`resolution` has to be divisible by 64 .* is 100"):
        tiny_config(resolution=100).check()
    with pytest.raises(ValueError, match="`dropout`"):
        tiny_config(dropout=1.5).check()
    with pytest.raises(ValueError, match="`lora_layers` must be one of attention, transformer, all but is 'convs'"):
        tiny_config(lora_layers="convs").check()
    with pytest.raises(ValueError, match="`validation_cfg` must be between 0 and 30 but is 31"):
        tiny_config(validation_cfg=31).check()
    seed2 = apply_preset(tiny_config(), "seed-002 (kohya person LoRA)").check()
    assert (seed2.rank, seed2.alpha, seed2.min_snr_gamma, seed2.noise_offset, seed2.lr_cycles) == (2, 16.0, 5.0, 0.1, 3)
    assert all(apply_preset(tiny_config(), p).check() for p in PRESETS)


def test_buckets_keep_area_and_aspect():
    from studio.train.data import bucket_for

    assert bucket_for(512, 512, 512) == (512, 512)
    w, h = bucket_for(1200, 800, 512)
    assert w > h and w % 64 == 0 and h % 64 == 0 and w * h <= 512 * 512
    assert abs(w / h - 1.5) < 0.2
    assert bucket_for(800, 1200, 512) == (h, w)


def test_epoch_plan_is_deterministic_and_keeps_tokens(settings):
    from studio.train.data import epoch_plan, load_items, shuffled_caption

    folder = make_dataset(settings, "ds", [astronaut(), chelsea((96, 64))], ["sks, red, face, photo", None])
    items = load_items(folder, "sks")
    assert [i.caption for i in items] == ["sks, red, face, photo", "sks"]
    kwargs = dict(seed=3, repeats=4, batch_size=2, resolution=64, buckets=True, flip=True, shuffle_captions=True,
                  keep_tokens=1)
    plan = epoch_plan(items, epoch=1, **kwargs)
    assert plan == epoch_plan(items, epoch=1, **kwargs) and plan != epoch_plan(items, epoch=2, **kwargs)
    assert sum(len(b) for b in plan) == 8
    for batch in plan:  # a micro-batch never mixes buckets
        assert len({items[s.index].bucket(64, True) for s in batch}) == 1
    assert shuffled_caption("sks, a, b, c, d", 1, random.Random(0)).startswith("sks, ")


def test_latent_cache_key_follows_data_and_settings(studio):
    from studio.train.data import load_items
    from studio.train.latents import Latents
    from studio.train.parts import load_parts

    folder = make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    parts = load_parts(studio.store, "builtin:tiny", "cpu")
    items = load_items(folder, "sks")
    cache_dir = studio.settings.workspace_dir / ".cache" / "train"
    first = Latents(parts, items, resolution=64, buckets=True)
    assert first.fill(cache_dir, False, lambda f, m: None) is False  # computed and written
    again = Latents(parts, items, resolution=64, buckets=True)
    assert again.fill(cache_dir, False, lambda f, m: None) is True  # read back
    mean, std = again.batch([0], [False])
    fresh_mean, _ = first.encode(0, False)
    assert mean.shape == (1, 4, 32, 32) and (std > 0).all()
    assert (mean[0] - fresh_mean).abs().max() < 1e-5
    base = first.cache_file(cache_dir, False)
    assert Latents(parts, items, resolution=128, buckets=True).cache_file(cache_dir, False) != base
    assert first.cache_file(cache_dir, True) != base
    time.sleep(0.01)
    astronaut((64, 48)).save(items[0].path)  # the image changed: a new cache
    changed = load_items(folder, "sks")
    assert Latents(parts, changed, resolution=64, buckets=True).cache_file(cache_dir, False) != base


def test_a_moved_workspace_still_shows_its_runs_pictures(tmp_path):
    """A run's events name its grids by absolute path; after the workspace is moved (or restored from a backup
    elsewhere) the status finds them under the run's folder, where they now are."""
    from studio.fileio import write_json
    from studio.train.jobs import folder_status
    from studio.train.runlog import RunLog
    from tests.train_helpers import tiny_config

    old = tmp_path / "old" / "runs" / "moved"
    log = RunLog(old)
    log.event("epoch", epoch=1, grid=str(old / "samples" / "epoch-001.png"), scores=[None], mean_score=None,
              images=[str(old / "samples" / "epoch-001" / "0.png")])
    log.close()
    write_json(old / "run.json", tiny_config(name="moved").to_json())
    new = tmp_path / "new" / "runs" / "moved"
    new.parent.mkdir(parents=True)
    old.rename(new)
    (new / "samples").mkdir()
    (new / "samples" / "epoch-001.png").write_bytes(b"png")
    shown = folder_status(new, "moved").validations[0]
    assert shown["grid"] == str(new / "samples" / "epoch-001.png")
    assert shown["images"] == [str(new / "samples" / "epoch-001" / "0.png")]


def test_a_cancelled_job_says_so_at_once_while_it_finishes_its_step(studio):
    """Cancel writes the cancel file; the child sees it after its step. Meanwhile the job reads "cancelling", not
    "running" (a sweep's cell step took seconds, and the page said running all that while)."""
    import os

    from studio.fileio import write_json
    from studio.joblog import ACTIVE, ask_to_stop
    from studio.train import jobs
    from tests.train_helpers import tiny_config

    folder = studio.settings.runs_dir / "busy"
    write_json(folder / "run.json", tiny_config(name="busy").to_json())
    write_json(folder / "status.json", {"state": "running", "message": "", "pid": os.getpid()})  # a live process
    (folder / "metrics.jsonl").write_text("")
    assert jobs.run_status(studio, "busy").state == "running"
    ask_to_stop(folder)
    status = jobs.run_status(studio, "busy")
    assert status.state == "cancelling" and status.state in ACTIVE  # still followed until it has stopped
    assert status.line() == "busy: cancelling, asked to stop: it ends after its current step, keeping a checkpoint " \
                            "to resume from"
