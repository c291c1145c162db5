"""The collapse guard's rules on measured numbers, sweep grids and plans, and the checkpoints a stopped run keeps."""

from __future__ import annotations

import pytest

from tests.train_helpers import tiny_config


def _pocket_losses(name: str) -> list[float]:
    """Per-step losses measured on builtin:pocket, full fine-tune of the star dataset at batch 8 (docs/training.md):
    healthy at lr 1e-4, collapsed at 1e-2 (the loss jumps at step 2 and stays near 1), a brief jump at 1e-3 that
    the run recovers from."""
    return {
        "1e-4": [0.125, 0.056, 0.078, 0.055, 0.07, 0.031, 0.058, 0.062, 0.078, 0.066, 0.062, 0.034, 0.028, 0.024,
                 0.039, 0.043, 0.027, 0.037, 0.042, 0.045, 0.03, 0.043, 0.046, 0.032, 0.057, 0.028, 0.038, 0.049,
                 0.026, 0.029] * 3,
        "1e-3": [0.125, 0.261, 0.311, 0.179, 0.207, 0.15, 0.152, 0.123, 0.159, 0.129, 0.108, 0.084, 0.066, 0.054,
                 0.08, 0.078, 0.053, 0.069, 0.077, 0.083, 0.053, 0.068, 0.082, 0.057, 0.093, 0.048, 0.063, 0.084,
                 0.038, 0.05] * 3,
        "1e-2": [0.125, 1.549, 1.228, 1.067, 1.248, 0.795, 0.966, 0.918, 0.904, 1.045, 0.804, 0.896, 0.909, 0.951,
                 0.909, 0.983, 1.013, 1.011, 0.894, 0.905, 0.996, 0.938, 0.921, 0.82, 0.998, 0.894, 0.854, 0.972,
                 0.89, 1.019],
    }[name]


def _first_trip(losses, base=0.1254, factor=3.0, steps=20):
    from studio.train.guard import LossWatch

    watch = LossWatch(factor, steps)
    watch.start(base)
    for step, loss in enumerate(losses, start=1):
        reason = watch.update(step, loss)
        if reason:
            return step, reason, watch
    return None, None, watch


def test_loss_signal_fires_on_a_collapse_and_not_on_healthy_or_recovering_runs():
    step, reason, watch = _first_trip(_pocket_losses("1e-2"))
    assert step == 23 and watch.since == 4, (step, reason)
    assert "stayed above 3x for 20 steps (from step 4)" in reason and "running level 0.125" in reason
    assert _first_trip(_pocket_losses("1e-4"))[0] is None
    assert _first_trip(_pocket_losses("1e-3"))[0] is None  # up 2.5x for a few steps, then down: not a collapse
    # a batch-1 run's noisy loss (each step 0.02..0.5) around a level never trips; the same noise at 5x does
    import random

    rng = random.Random(0)
    noisy = [rng.choice([0.02, 0.05, 0.1, 0.2, 0.5]) for _ in range(3000)]
    assert _first_trip(noisy, base=0.15)[0] is None
    assert _first_trip(noisy[:50] + [5 * x for x in noisy[50:300]], base=0.15)[0] is not None
    assert _first_trip(_pocket_losses("1e-2"), factor=0)[0] is None  # 0 turns it off


def _scene(shape, color, background):
    import random

    from studio.pocket.scenes import shape_scene

    return shape_scene(random.Random(0), shape=shape, color=color, background=background, caption_style=0).image


def test_image_signal_tells_a_collapse_from_pictures_that_learnt_their_subject():
    import numpy as np
    from PIL import Image

    from studio.pocket.concept import concept_images
    from studio.train.guard import image_verdict, references, spread, strayed

    # what pocket's base draws for the three prompts, and the star dataset a LoRA learns
    base = [_scene("square", "red", "white"), _scene("square", "blue", "black"), _scene("circle", "green", "gray")]
    dataset = [image for image, _ in concept_images()]
    rng = np.random.default_rng(0)
    palette = np.array([[20, 60, 200], [230, 120, 30], [250, 250, 250], [10, 10, 10]], dtype=np.uint8)
    collapses = {  # what pocket drew at lr 1e-2 (the same blotchy texture for every prompt), noise, one flat grey
        "texture": [Image.fromarray(palette[rng.integers(0, 4, (8, 8))]).resize((64, 64), Image.BICUBIC)
                    for _ in range(3)],
        "noise": [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(3)],
        "flat": [Image.new("RGB", (64, 64), (128, 128, 128)) for _ in range(3)]}
    # learnt: one star for every prompt, as alike as a face LoRA's pictures of one face (the false stops)
    learnt = [dataset[0], dataset[0], _scene("star", "red", "white")]
    refs, base_spread = references(base, dataset), spread(base)
    config = tiny_config()
    assert spread(learnt) < 0.5 * base_spread  # sameness alone called this a collapse
    assert image_verdict(config, spread(learnt), base_spread, strayed(refs, learnt), None, None) is None
    assert image_verdict(config, spread(base), base_spread, strayed(refs, base), None, None) is None
    for kind, pictures in collapses.items():
        signal, reason = image_verdict(config, spread(pictures), base_spread, strayed(refs, pictures), None, None)
        assert signal == "images" and "near-identical" in reason and "left both" in reason, kind
    texture = collapses["texture"]
    assert image_verdict(tiny_config(guard_image_ratio=0), spread(texture), base_spread, strayed(refs, texture),
                         None, None) is None
    assert image_verdict(tiny_config(guard_image_left=0), spread(learnt), base_spread, None, None, None)[0] == "images"
    assert image_verdict(config, spread(texture), base_spread, None, None, None) is None  # no references: cannot tell
    assert image_verdict(config, 0.01, 0.02, 5.0, None, None) is None  # base pictures alike already: cannot tell
    # CLIP: the mean kept fraction of each prompt's base score
    assert image_verdict(config, None, None, None, [30.0, 29.0], [31.0, 30.0]) is None
    signal, reason = image_verdict(config, None, None, None, [18.0, 20.0], [31.0, 30.0])
    assert signal == "clip" and "lost 38%" in reason


def test_grid_parsing_names_the_bad_part():
    from studio.train.sweep import grid_text, parse_grid

    grid = parse_grid(["lr=1e-5, 1e-3", "steps=400,2000", "flip=true,false"])
    assert grid == {"lr": [1e-5, 1e-3], "max_steps": [400, 2000], "flip": [True, False]}
    assert parse_grid(grid_text(grid).splitlines()) == grid
    for lines, message in ((["lr"], "must read knob=value"), (["nope=1,2"], "knob 'nope' cannot be swept"),
                           (["name=a,b"], "'name' cannot be swept"), (["steps=4.5"], "not a whole number"),
                           (["lr=1e-5,1e-5"], "repeats a value"), (["lr=1", "lr=2"], "gives lr twice"), ([], "empty")):
        with pytest.raises(ValueError, match=message):
            parse_grid(lines)


def test_plan_shares_the_first_steps_only_when_the_schedule_allows():
    from dataclasses import replace

    from studio.train.sweep import SweepRequest, plan

    base = tiny_config(lr_scheduler="constant")
    request = SweepRequest("s", base, {"lr": [1e-5, 1e-3], "max_steps": [400, 2000, 4000, 8000]}).check()
    runs, cells, notes = plan(request, lambda config: 10)
    assert [(r.config.lr, r.config.max_steps, r.config.validate_at_steps) for r in runs] == \
        [(1e-5, 8000, [400, 2000, 4000, 8000]), (1e-3, 8000, [400, 2000, 4000, 8000])]
    assert [(c.id, c.run, c.step) for c in cells][:5] == [("c01", "r01", 400), ("c02", "r01", 2000),
                                                          ("c03", "r01", 4000), ("c04", "r01", 8000),
                                                          ("c05", "r02", 400)]
    assert all(not r.config.export and r.config.name.startswith("s-r0") for r in runs)
    assert "2 runs train 16000 steps where 8 separate runs would train 28800" in notes[0]
    cosine = SweepRequest("s", replace(base, lr_scheduler="cosine"), {"max_steps": [10, 20]}).check()
    runs, cells, notes = plan(cosine, lambda config: 10)
    assert len(runs) == 2 and "depends on the run's length" in notes[0]
    by_epochs = SweepRequest("s", base, {"epochs": [2, 3], "rank": [4, 8]}).check()
    runs, cells, _ = plan(by_epochs, lambda config: 7)  # 7 steps an epoch
    assert [(r.config.rank, r.config.validate_at_steps) for r in runs] == [(4, [14, 21]), (8, [14, 21])]
    with pytest.raises(ValueError, match="`lr` must not be negative"):
        plan(SweepRequest("s", base, {"lr": [-1.0]}).check(), lambda config: 1)


def test_a_stopped_run_keeps_its_last_validated_checkpoint(tmp_path):
    import torch

    from studio.train import checkpoints

    weights = {"w": torch.zeros(2)}
    checkpoints.save_checkpoint(tmp_path, 10, 1, weights, {}, {"validated": True})
    checkpoints.save_checkpoint(tmp_path, 15, 1, weights, {}, {"validated": False})  # between validations
    checkpoints.save_checkpoint(tmp_path, 18, 1, weights, {}, {"validated": False})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0000010", "step-0000018"]
    moved = checkpoints.set_aside(tmp_path, 10)  # the pictures at step 20 collapsed: back to step 10
    assert [p.name for p in moved] == ["collapsed-step-0000018"] and checkpoints.latest_checkpoint(tmp_path).step == 10
    checkpoints.save_checkpoint(tmp_path, 20, 2, weights, {}, {"validated": True})
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*")) == ["step-0000020"]


def test_the_best_cell_is_by_likeness_when_the_dataset_has_faces():
    from types import SimpleNamespace

    from studio.train.sweep import Cell
    from studio.train.sweep_report import best_cell, cell_entry

    def status(validations, state="done", code=1, signal=None, message=""):
        return SimpleNamespace(step_validations=validations, losses=[(1, 0.2), (2, 0.1)], state=state,
                               failure_code=code, signal=signal, message=message, active=False, step=2,
                               config=tiny_config())

    def seen(step, sims, clip, passed=True):
        found = [s for s in sims if s is not None]
        return {"step": step, "scores": sims, "mean_score": sum(found) / len(found) if found else None,
                "clip_scores": clip, "mean_clip": sum(clip) / len(clip), "grid": "g.png", "images": [],
                "elapsed_s": 1.0, "passed": passed, "guard": None if passed else "near-identical"}

    cells = [Cell("c01", {"lr": 1}, "r01", 2), Cell("c02", {"lr": 2}, "r02", 2), Cell("c03", {"lr": 3}, "r03", 2),
             Cell("c04", {"lr": 4}, "r04", 2)]
    entries = [cell_entry(cells[0], status([seen(2, [0.30, None], [30.0, 31.0])])),  # closest, but lost a face
               cell_entry(cells[1], status([seen(2, [0.40, 0.42], [20.0, 21.0])])),  # every face found
               cell_entry(cells[2], status([seen(2, [0.1, 0.1], [35.0, 35.0], passed=False)], "failed", 3, "images",
                                           "stopped by the collapse guard")),
               cell_entry(cells[3], None)]
    assert [e["state"] for e in entries] == ["done", "done", "collapsed", "pending"]
    assert entries[0]["scores"]["no_face"] == 1 and entries[1]["scores"]["no_face"] == 0
    assert "images signal) at step 2: near-identical" in entries[2]["reason"]
    assert best_cell(entries) == ("c02", "likeness")
    for e in entries:
        e["scores"]["mean_sim"] = None
    assert best_cell(entries) == ("c01", "clip")  # no faces: the highest CLIP score among done cells
