"""The training child process: `python -m studio.train.child RUN_DIR ...` runs one run.json and records how it ended.

Started by studio.train.jobs (through `accelerate launch` when several GPUs are present), so a crash or an
out-of-memory here never takes the studio down. SIGTERM or a `cancel` file in the run folder stops it after the
current step, with a checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from studio import jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.train.child")
    parser.add_argument("run_dir", type=Path)
    jobs.add_settings_arguments(parser)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)

    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from studio.models import ModelStore
    from studio.progress import Cancelled
    from studio.train.config import RunConfig
    from studio.train.loop import TrainingDiverged, train
    from studio.train.runlog import RunLog

    main_process = int(os.environ.get("RANK", "0")) == 0
    settings = jobs.settings_from_arguments(args)
    log = RunLog(args.run_dir, enabled=main_process)
    should_stop = jobs.stop_requested(args.run_dir)

    log.status("running", pid=os.getpid(), message="loading the base model")
    try:
        config = RunConfig.load(args.run_dir / "run.json").check()
        result = train(ModelStore(settings), settings, config, args.run_dir, log=log, should_stop=should_stop,
                       resume=args.resume, progress=lambda f, m: log.event("message", text=m))
    except Cancelled as e:
        log.event("message", text=str(e))
        log.status("cancelled", str(e))
        return 0
    except TrainingDiverged as e:  # a NaN, or the collapse guard (e.signal says which)
        log.event("message", text=str(e))
        log.status("failed", str(e), exit_code=3, signal=e.signal, signal_step=e.step)
        return 3
    except ValueError as e:  # bad input found late, or a full/read-only disk (fileio.WriteError): said in one line
        log.event("message", text=str(e))
        log.status("failed", str(e), exit_code=2)
        return 2
    except Exception as e:  # recorded for the UI, then re-raised so the traceback lands in log.txt
        log.status("failed", f"{type(e).__name__}: {e} (see log.txt)", exit_code=1)
        traceback.print_exc()
        raise
    files = [str(f) for f in result.files]
    log.event("done", steps=result.steps, files=files, best_epoch=result.best_epoch)
    log.status("done", f"finished {result.steps} steps", files=files, best_epoch=result.best_epoch, step=result.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
