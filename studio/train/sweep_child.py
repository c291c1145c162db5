"""The sweep's driver process: `python -m studio.train.sweep_child SWEEP_DIR <settings>` starts the sweep's runs (each
its own training child) one after another, one per GPU where several are present, and records how the sweep ended
(studio.job_child).

Started from the queue holding every device the sweep uses, in its own session, so the studio restarting never stops
it. SIGTERM or a `cancel` file in the sweep folder stops its runs after their step (with a checkpoint); a later start
continues.
"""

from __future__ import annotations

import sys

from studio.job_child import child_main


def drive_sweep(args, settings, log, should_stop) -> str:
    from studio.context import Studio
    from studio.progress import Cancelled
    from studio.train.sweep_jobs import drive, refresh_report

    try:
        ended = drive(Studio.open(settings), args.folder, log, should_stop)
    except Cancelled:
        refresh_report(args.folder, "cancelled")
        raise
    log.event("message", text=ended)
    return ended


def main(argv: list[str] | None = None) -> int:
    from studio.train.sweep_jobs import EVENTS

    return child_main("python -m studio.train.sweep_child", EVENTS, drive_sweep, "running the sweep", argv)


if __name__ == "__main__":
    sys.exit(main())
