"""A long job's folder on disk: status.json (what the job is doing now), an events file (one JSON line per event,
appended), the cancel file the child looks for between two steps, and log.txt (the child's own output)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from studio import fileio

CANCEL_FILE = "cancel"
LOG_FILE = "log.txt"
ENDING_FILE = "ending.json"  # how the first of several processes ended: the status once all have (studio.ranks)
STATES = ("queued", "starting", "running", "done", "failed", "cancelled")
# not over yet: waiting in the queue, or its child runs ("cancelling": asked to stop, it ends after its step)
ACTIVE = ("queued", "starting", "running", "cancelling")


class JobLog:
    """The child's side of a job folder: append events, set the status."""

    def __init__(self, folder: Path, events: str, enabled: bool = True, defer_end: bool = False):
        """`events` is the events file's name in `folder`, opened at the first event; `enabled` False (the other
        processes of a multi-GPU run) writes nothing; `defer_end` (the first of several processes): its last status
        waits in ending.json until every process has ended (studio.ranks writes it then)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.enabled, self.defer_end = enabled, defer_end
        self._path = self.folder / events
        self._file = None

    def event(self, kind: str, **fields) -> None:
        """Append one event; a line is whole once written (line buffering), and readers skip a half-written one."""
        if not self.enabled:
            return
        if self._file is None:
            self._file = open(self._path, "a", encoding="utf-8", buffering=1)
        self._file.write(json.dumps({"type": kind, "time": round(time.time(), 3), **fields}, default=str) + "\n")

    def relay(self, event: dict) -> None:
        """Append an event as another process wrote it (a remote worker's, with its own time and type)."""
        if self.enabled:
            if self._file is None:
                self._file = open(self._path, "a", encoding="utf-8", buffering=1)
            self._file.write(json.dumps(event, default=str) + "\n")

    def status(self, state: str, message: str = "", **fields) -> None:
        if state not in STATES:
            raise ValueError(f"`state` must be one of {', '.join(STATES)} but is {state!r}")
        if not self.enabled:
            return
        current = read_status(self.folder)
        current.update(fields, state=state, message=message, updated=time.time())
        fileio.write_json(self.folder / "status.json", current)

    def end(self, state: str, message: str = "", **fields) -> None:
        """The job's last status: written now, or with `defer_end` kept for the launcher of its processes."""
        if not self.defer_end:
            return self.status(state, message, **fields)
        if self.enabled:
            fileio.write_json(self.folder / ENDING_FILE, {"state": state, "message": message, **fields})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_status(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "status.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def read_ending(folder: Path) -> dict | None:
    """What the first of several processes said at its end (JobLog.end), or None when it said nothing."""
    try:
        return json.loads((Path(folder) / ENDING_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def write_status(folder: Path, state: str, message: str, **fields) -> None:
    """Set the status from outside the child (queued, starting, cancelled before it started): the whole file."""
    fileio.write_json(Path(folder) / "status.json", {"state": state, "message": message, "updated": time.time(),
                                                     **fields})


def read_events(folder: Path, events: str, since: int = 0) -> list[dict]:
    """Events from line `since` on; a half-written last line (the writer is mid-line) is left for the next read."""
    path = Path(folder) / events
    if not path.is_file():
        return []
    found = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n < since:
                continue
            if not line.endswith("\n"):
                break
            found.append(json.loads(line))
    return found


def ask_to_stop(folder: Path) -> None:
    """The one cancel call: the child sees the cancel file between two steps, stops and records it."""
    fileio.write_text(Path(folder) / CANCEL_FILE, "cancel\n")
