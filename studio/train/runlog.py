"""A run's record on disk: status.json (what it is doing now) and metrics.jsonl (one event per line, appended)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from studio import fileio

STATES = ("starting", "running", "done", "failed", "cancelled")


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool = True):
        """`enabled` False (the other processes of a multi-GPU run) writes nothing."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8", buffering=1) if enabled else None

    def event(self, kind: str, **fields) -> None:
        """Append one event (`step`, `epoch`, `message`, ...); a line is whole once written (line buffering)."""
        if self._file is None:
            return
        self._file.write(json.dumps({"type": kind, "time": round(time.time(), 3), **fields}, default=str) + "\n")

    def status(self, state: str, message: str = "", **fields) -> None:
        if state not in STATES:
            raise ValueError(f"`state` must be one of {', '.join(STATES)} but is {state!r}")
        if self._file is None:
            return
        current = read_status(self.run_dir)
        current.update(fields, state=state, message=message, updated=time.time())
        fileio.write_json(self.run_dir / "status.json", current)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def read_status(run_dir: Path) -> dict:
    path = Path(run_dir) / "status.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def read_events(run_dir: Path, since: int = 0) -> list[dict]:
    """Events from line `since` on; a half-written last line (the writer is mid-line) is left for the next read."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    events = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n < since:
                continue
            if not line.endswith("\n"):
                break
            events.append(json.loads(line))
    return events
