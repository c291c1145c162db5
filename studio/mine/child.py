"""The mining child process: `python -m studio.mine.child JOB_DIR ...` mines by the job's mine.json and records how
it ended. Started by studio.mine.jobs, so a crash here never takes the studio down; SIGTERM or a `cancel` file in the
job folder stops it before the next candidate, and a later start continues after the last decided one.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from studio import jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio.mine.child")
    parser.add_argument("job_dir", type=Path)
    jobs.add_settings_arguments(parser)
    args = parser.parse_args(argv)

    from studio.context import Studio
    from studio.mine.disk import EVENTS
    from studio.mine.jobs import read_request
    from studio.mine.run import mine
    from studio.progress import Cancelled

    log = jobs.JobLog(args.job_dir, EVENTS)  # the status, and why a job failed; the miner writes the rest
    should_stop = jobs.stop_requested(args.job_dir)
    log.status("running", pid=os.getpid(), message="mining")
    try:
        request = read_request(args.job_dir)
        result = mine(Studio.open(jobs.settings_from_arguments(args)), request, args.job_dir, should_stop=should_stop)
        log.status("done", result.ended)
        return 0
    except Cancelled as e:
        log.status("cancelled", str(e))
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
