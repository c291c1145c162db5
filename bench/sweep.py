"""Benchmark: a sweep's shared first steps, and when the collapse guard stops a diverging full fine-tune.

    .venv/bin/python bench/sweep.py [--steps 50,100] [--lrs 1e-5,2e-4] [--diverge-lr 1e-2] [--diverge-steps 300]
                                    [--parts 1,2,3]

On builtin:pocket's star dataset with the pocket-finetune preset (full fine-tune, EMA, batch 8, 64 px):

1. The whole healthy grid (lrs x steps) as `python -m studio sweep` runs it: a driver and one training child per
   shared run; wall time from start to report.
2. The same cells trained in this process twice: as the sweep plans them (one run per lr, validated at each steps
   value) and as separate runs (one per cell). Steps and seconds of both, and their ratio.
3. The diverging lr: the step the guard's loss signal fires at (pictures not judged), the step its picture signal
   fires at (validation every 10 steps, loss not judged), and whether a NaN ever stops it within --diverge-steps
   with the guard off.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _studio(root: Path):
    from studio.context import Studio
    from studio.pocket.concept import write_concept_dataset
    from studio.settings import Settings

    studio = Studio.open(Settings(root=root, models_dir=root / "models", allow_downloads=False,
                                  default_model="builtin:pocket"))
    write_concept_dataset(studio.settings.datasets_dir / "zq", trigger="zq", shape="star", count=8)
    return studio


def _base(**changes):
    from studio.train.config import RunConfig
    from studio.train.presets import apply_preset

    config = apply_preset(RunConfig(name="bench", dataset="zq", trigger="zq"), "pocket-finetune")
    return replace(config, **{"clip_model": "builtin:tiny-clip", "validation_by": "epochs", "validation_every": 0,
                              **changes})


def _train(studio, config):
    from studio.train.loop import train
    from studio.train.runlog import RunLog

    run_dir = studio.settings.runs_dir / config.name
    log = RunLog(run_dir)
    try:
        return train(studio.store, studio.settings, config.check(), run_dir, log=log, should_stop=lambda: False)
    finally:
        log.close()


def _guarded(studio, config) -> tuple[int | None, str]:
    """(the step the run was stopped at, why) or (None, "ran to the end")."""
    from studio.train.setup import TrainingDiverged

    try:
        result = _train(studio, config)
        return None, f"ran to the end ({result.steps} steps)"
    except TrainingDiverged as e:
        return e.step, f"{e.signal}: {str(e)[:160]}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", default="50,100")
    parser.add_argument("--lrs", default="1e-5,2e-4")
    parser.add_argument("--diverge-lr", type=float, default=1e-2)
    parser.add_argument("--diverge-steps", type=int, default=300)
    parser.add_argument("--parts", default="1,2,3", help="which of the three measurements to make")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.setdefault("OMP_NUM_THREADS", "1")))
    steps = [int(s) for s in args.steps.split(",")]
    lrs = [float(x) for x in args.lrs.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        studio = _studio(root)
        from studio.train import sweep_jobs
        from studio.train.sweep import SweepRequest, plan

        parts = {int(x) for x in args.parts.split(",")}
        # 1. The sweep as the command line runs it
        request = SweepRequest("healthy", _base(), {"lr": lrs, "max_steps": steps})
        if 1 in parts:
            started = time.perf_counter()
            sweep_jobs.start_sweep(studio, request)
            done = sweep_jobs.wait_sweep(studio, "healthy")
            wall = time.perf_counter() - started
            states = [c["state"] for c in done.report["cells"]]
            print(f"sweep {len(states)} cells ({', '.join(states)}): {wall:.1f} s wall, {done.report['steps_run']} "
                  f"steps run for {done.report['steps_separate']} steps of cells")

        # 2. Shared first steps vs separate runs, in this process
        runs, cells, _ = plan(SweepRequest("p", _base(), {"lr": lrs, "max_steps": steps}).check(), lambda c: 1)
        if 2 in parts:
            started = time.perf_counter()
            for run in runs:
                _train(studio, replace(run.config, name=f"shared-{run.id}"))
            shared = time.perf_counter() - started
            started = time.perf_counter()
            for cell in cells:
                _train(studio, _base(name=f"alone-{cell.id}", lr=cell.settings["lr"], max_steps=cell.step,
                                     validate_at_steps=[cell.step], export=False))
            alone = time.perf_counter() - started
            run_steps, cell_steps = sum(r.config.max_steps for r in runs), sum(c.step for c in cells)
            print(f"shared: {len(runs)} runs, {run_steps} steps, {shared:.1f} s; separate: {len(cells)} runs, "
                  f"{cell_steps} steps, {alone:.1f} s; steps x{run_steps / cell_steps:.2f}, time "
                  f"x{shared / alone:.2f}")
        if 3 not in parts:
            return

        # 3. The diverging lr: which signal fires when, and NaN
        lr = args.diverge_lr
        step, why = _guarded(studio, _base(name="loss-only", lr=lr, max_steps=args.diverge_steps,
                                           guard_image_ratio=0, guard_clip_drop=0))
        print(f"lr {lr:g}, loss signal only: stopped at step {step} ({why})")
        step, why = _guarded(studio, _base(name="pictures-only", lr=lr, max_steps=args.diverge_steps,
                                           guard_loss_factor=0, validation_every=10))
        print(f"lr {lr:g}, picture signal only (validation every 10 steps): stopped at step {step} ({why})")
        step, why = _guarded(studio, _base(name="nan-only", lr=lr, max_steps=args.diverge_steps,
                                           guard_loss_factor=0, guard_image_ratio=0, guard_clip_drop=0))
        print(f"lr {lr:g}, guard off (NaN check only): stopped at step {step} ({why})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
