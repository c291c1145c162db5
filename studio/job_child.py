"""The child's side of every long job: `python -m <the kind's child> FOLDER <the studio's settings> [--resume]`
reads its folder, does the work, and records how it ended in one way for every kind: done, cancelled (SIGTERM or
the cancel file), failed with a reason said in one line (bad input or a full disk: exit code 2; a reason of its
own, such as the collapse guard: its code), or failed with a traceback in log.txt (exit code 1)."""

from __future__ import annotations

import argparse
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Callable

from studio.joblog import CANCEL_FILE, LOG_FILE, JobLog

LAUNCHER_PID = "STUDIO_LAUNCHER_PID"  # set by studio.ranks for each of a job's several processes
from studio.progress import Cancelled, StopFn


class JobFailed(Exception):
    """A job that ends for a reason it can name (the collapse guard stopping a run): said in one line, with its
    exit code and fields for status.json."""

    def __init__(self, message: str, code: int, **fields):
        super().__init__(message)
        self.code, self.fields = code, fields


def settings_args(settings, device: str) -> list[str]:
    """The command-line options that give a child the studio's settings (read back by settings_from_arguments)."""
    args = ["--root", str(settings.root), "--models-dir", str(settings.models_dir),
            "--workspace", str(settings.workspace_dir), "--studio-workspace", str(settings.studio_workspace),
            "--device", device, "--max-image-pixels", str(settings.max_image_pixels)]
    args += ["--user", settings.user] if settings.user else []
    args += ["--workers", settings.workers] + ["--insecure-workers"] * settings.insecure_workers if settings.workers else []
    return args + ["--offline"] * (not settings.allow_downloads) + ["--allow-pickle"] * settings.allow_pickle


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--studio-workspace", type=Path, default=None)
    parser.add_argument("--user", default="", help="whose job it is (their models: models/users/<user>/)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-image-pixels", type=int, default=None)
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--allow-pickle", action="store_true")
    parser.add_argument("--workers", default="", help="the Ray cluster a remote job's driver sends it to")
    parser.add_argument("--insecure-workers", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue from where the job was")
    return parser


def settings_from_arguments(args):
    from studio.settings import Settings

    limit = {"max_image_pixels": args.max_image_pixels} if args.max_image_pixels else {}
    return Settings(root=args.root, models_dir=args.models_dir, workspace_dir=args.workspace,
                    studio_workspace=args.studio_workspace, user=args.user, device=args.device,
                    allow_downloads=not args.offline, allow_pickle=args.allow_pickle, workers=args.workers,
                    insecure_workers=args.insecure_workers, **limit)


def stop_requested(folder: Path) -> StopFn:
    """should_stop() that turns true on SIGTERM or once the job's cancel file appears."""
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(now=True))
    cancel = Path(folder) / CANCEL_FILE
    return lambda: stop["now"] or cancel.exists()


# What a kind's child does: (its arguments, the settings, the job's log, should_stop) -> the message it ended with
Work = Callable[[argparse.Namespace, object, JobLog, StopFn], str]


def child_main(prog: str, events: str, work: Work, starting: str, argv: list[str] | None = None) -> int:
    """Run `work` for the job folder on the command line and record how it ended; returns the exit code. `events`
    is the kind's events file, `starting` the status message while it starts. Of a multi-GPU run's processes only
    the first (RANK 0) writes, and its last status waits until every process has ended (studio.ranks)."""
    from studio.quiet import quiet_third_party

    quiet_third_party()  # the job's log.txt holds what the job said and its errors, not the libraries' import notes
    args = _parser(prog).parse_args(argv)
    launcher = os.environ.get(LAUNCHER_PID)  # one of several processes (studio.ranks): it says when all have ended
    log = JobLog(args.folder, events, enabled=int(os.environ.get("RANK", "0")) == 0, defer_end=bool(launcher))
    should_stop = stop_requested(args.folder)
    log.status("running", starting, pid=int(launcher or os.getpid()), started=time.time())
    try:
        ended = work(args, settings_from_arguments(args), log, should_stop)
        log.end("done", ended, ended=time.time())
        return 0
    except Cancelled as e:
        log.event("message", text=str(e))
        log.end("cancelled", str(e), ended=time.time())
        return 0
    except JobFailed as e:
        log.event("message", text=str(e))
        log.end("failed", str(e), exit_code=e.code, ended=time.time(), **e.fields)
        return e.code
    except ValueError as e:  # bad input found late, or a full/read-only disk (fileio.WriteError): said in one line
        log.event("message", text=str(e))
        log.end("failed", str(e), exit_code=2, ended=time.time())
        return 2
    except Exception as e:  # recorded for the UI, then re-raised so the traceback lands in log.txt
        log.end("failed", f"{type(e).__name__}: {e} (see {LOG_FILE})", exit_code=1, ended=time.time())
        traceback.print_exc()
        raise
    finally:
        log.close()
