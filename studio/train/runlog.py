"""A run's record on disk: status.json (what it is doing now) and metrics.jsonl (one event per line, appended),
kept as every long job keeps its folder (studio.joblog)."""

from __future__ import annotations

from pathlib import Path

from studio import joblog
from studio.joblog import STATES, read_status  # noqa: F401 (a run's states and status, by their training names)

EVENTS = "metrics.jsonl"


class RunLog(joblog.JobLog):
    def __init__(self, run_dir: Path, enabled: bool = True):
        """`enabled` False (the other processes of a multi-GPU run) writes nothing."""
        super().__init__(run_dir, EVENTS, enabled)
        self.run_dir = self.folder


def read_events(run_dir: Path, since: int = 0) -> list[dict]:
    """Events from line `since` on; a half-written last line (the writer is mid-line) is left for the next read."""
    return joblog.read_events(run_dir, EVENTS, since)
