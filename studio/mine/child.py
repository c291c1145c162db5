"""The mining child process: `python -m studio.mine.child JOB_DIR <settings>` mines by the job's mine.json and
records how it ended (studio.job_child). Started from the queue, so a crash here never takes the studio down;
SIGTERM or a `cancel` file in the job folder stops it before the next candidate, and a later start continues after
the last decided one.
"""

from __future__ import annotations

import sys

from studio.job_child import child_main
from studio.mine.disk import EVENTS


def mine_job(args, settings, log, should_stop) -> str:
    from studio.context import Studio
    from studio.mine.jobs import read_request
    from studio.mine.run import mine

    return mine(Studio.open(settings), read_request(args.folder), args.folder, should_stop=should_stop).ended


def main(argv: list[str] | None = None) -> int:
    return child_main("python -m studio.mine.child", EVENTS, mine_job, "mining", argv)


if __name__ == "__main__":
    sys.exit(main())
