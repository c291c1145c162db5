"""The sweep's driver process: `python -m studio.train.sweep_child SWEEP_DIR ...` starts the sweep's runs (each its own
training child) one after another, one per GPU where several are present, and records how the sweep ended.

Started by studio.train.sweep_jobs in its own session, so the studio restarting never stops it. SIGTERM or a `cancel`
file in the sweep folder stops its runs after their step (with a checkpoint); a later start continues.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from studio import jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.train.sweep_child")
    parser.add_argument("sweep_dir", type=Path)
    jobs.add_settings_arguments(parser)
    args = parser.parse_args(argv)

    from studio.context import Studio
    from studio.progress import Cancelled
    from studio.train.sweep_jobs import EVENTS, drive, refresh_report

    log = jobs.JobLog(args.sweep_dir, EVENTS)
    should_stop = jobs.stop_requested(args.sweep_dir)
    log.status("running", pid=os.getpid(), message="running the sweep")
    try:
        ended = drive(Studio.open(jobs.settings_from_arguments(args)), args.sweep_dir, log, should_stop)
        log.event("message", text=ended)
        log.status("done", ended)
        return 0
    except Cancelled as e:
        log.event("message", text=str(e))
        log.status("cancelled", str(e))
        refresh_report(args.sweep_dir, "cancelled")
        return 0
    except ValueError as e:
        log.event("message", text=str(e))
        log.status("failed", str(e))
        return 2
    except Exception as e:  # recorded for the UI, then re-raised so the traceback lands in log.txt
        log.status("failed", f"{type(e).__name__}: {e} (see log.txt)")
        traceback.print_exc()
        raise
    finally:
        log.close()


if __name__ == "__main__":
    sys.exit(main())
