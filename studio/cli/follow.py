"""The one follow loop of the long-job commands (train, sweep, mine): while the job waits in the queue it says where
the job stands, while it runs it shows what the command shows, and Ctrl-C or SIGTERM (a service manager, `kill`)
cancel it, so it never trains on orphaned (a queued job leaves the queue). It imports nothing heavy: a command that
follows a job for hours stays a small process."""

from __future__ import annotations

import signal
import time
from typing import Callable

from studio import children, jobs


def _as_interrupt(signum, frame):
    raise KeyboardInterrupt


def follow(studio, kind: jobs.JobKind, name: str, show: Callable, *, cancelling: str, poll_s: float = 0.3):
    """Follow job `name` of `kind` until it ends, calling `show(status)` at every look once it has left the queue.
    Returns (its final status, whether the user interrupted it)."""
    previous = signal.signal(signal.SIGTERM, _as_interrupt)
    said = ""
    if studio.settings.workers:
        from studio.remote.address import where_jobs_run

        print(f"{kind.noun} {name}: {where_jobs_run(studio.settings)}", flush=True)
    try:
        while True:
            current = jobs.status(studio, kind, name)
            if current.state == "queued":
                said = _say_queued(studio, kind, name, current.message, said)
            else:
                show(current)
            if not current.active:
                break
            children.reap_finished()
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print(cancelling, flush=True)
        current = jobs.cancel(studio, kind, name, wait_s=120)
        if (kind.where(studio.settings, name) / kind.request).is_file():  # (a job that never started is gone)
            current = jobs.wait(studio, kind, name)
        return current, True
    finally:
        signal.signal(signal.SIGTERM, previous)
    return jobs.wait(studio, kind, name), False


def _say_queued(studio, kind: jobs.JobKind, name: str, message: str, said: str) -> str:
    """One line each time the job's place in the queue changes: how many wait before it, and about when it starts."""
    if message == said:
        return said
    row = next((r for r in jobs.queue_rows(studio) if r.entry == f"{kind.key}:{name}"), None)
    known = row is not None and row.starts is not None  # (else it starts when the job before it ends: said already)
    print(f"{kind.noun} {name}: queued, {message}" + (f"; {row.when()}" if known else ""), flush=True)
    return message
