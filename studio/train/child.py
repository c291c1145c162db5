"""The training child process: `python -m studio.train.child RUN_DIR <settings> [--resume]` runs one run.json and
records how it ended (studio.job_child).

Started from the queue (through `accelerate launch` when several GPUs are present), so a crash or an out-of-memory
here never takes the studio down. SIGTERM or a `cancel` file in the run folder stops it after the current step, with
a checkpoint.
"""

from __future__ import annotations

import os
import sys

from studio.job_child import JobFailed, child_main
from studio.train.runlog import EVENTS


def train_run(args, settings, log, should_stop) -> str:
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from studio.models import ModelStore
    from studio.train.config import RunConfig
    from studio.train.loop import TrainingDiverged, train

    config = RunConfig.load(args.folder / "run.json").check()
    try:
        result = train(ModelStore(settings), settings, config, args.folder, log=log, should_stop=should_stop,
                       resume=args.resume, progress=lambda f, m: log.event("message", text=m))
    except TrainingDiverged as e:  # a NaN, or the collapse guard (e.signal says which)
        raise JobFailed(str(e), 3, signal=e.signal, signal_step=e.step) from e
    files = [str(f) for f in result.files]
    log.event("done", steps=result.steps, files=files, best_epoch=result.best_epoch)
    log.status("running", "finishing", files=files, best_epoch=result.best_epoch, step=result.steps)
    return f"finished {result.steps} steps"


def main(argv: list[str] | None = None) -> int:
    return child_main("python -m studio.train.child", EVENTS, train_run, "loading the base model", argv)


if __name__ == "__main__":
    sys.exit(main())
