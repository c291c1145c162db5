"""Long jobs in child processes (training runs, face mining): a folder holding status.json (what the job is doing
now), an events file (one JSON line per event, appended) and a cancel file. The child is started in its own session
so the studio survives it, and a job is found again, alive or dead, after the studio restarts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from studio import fileio
from studio.progress import StopFn

CANCEL_FILE = "cancel"
LOG_FILE = "log.txt"  # the child's stdout and stderr
STATES = ("starting", "running", "done", "failed", "cancelled")
ACTIVE = ("starting", "running")

_children: dict[Path, subprocess.Popen] = {}  # children this process started (polled so none stays a zombie)
_lock = threading.Lock()


class JobLog:
    """The child's side of a job folder: append events, set the status."""

    def __init__(self, folder: Path, events: str, enabled: bool = True):
        """`events` is the events file's name in `folder`, opened at the first event; `enabled` False (the other
        processes of a multi-GPU run) writes nothing."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.enabled = enabled
        self._path = self.folder / events
        self._file = None

    def event(self, kind: str, **fields) -> None:
        """Append one event; a line is whole once written (line buffering), and readers skip a half-written one."""
        if not self.enabled:
            return
        if self._file is None:
            self._file = open(self._path, "a", encoding="utf-8", buffering=1)
        self._file.write(json.dumps({"type": kind, "time": round(time.time(), 3), **fields}, default=str) + "\n")

    def status(self, state: str, message: str = "", **fields) -> None:
        if state not in STATES:
            raise ValueError(f"`state` must be one of {', '.join(STATES)} but is {state!r}")
        if not self.enabled:
            return
        current = read_status(self.folder)
        current.update(fields, state=state, message=message, updated=time.time())
        fileio.write_json(self.folder / "status.json", current)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_status(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "status.json").read_text())
    except FileNotFoundError:
        return {}


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


# ---- the studio's side: start, watch, cancel -----------------------------------------------------------------------

@contextmanager
def one_start_at_a_time(parent: Path):
    """Hold `parent`/.start.lock: checking that no job of a kind runs and starting one become one step, so two
    commands started at the same instant cannot both start (one device: a second job would fight the first)."""
    import fcntl

    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / ".start.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def settings_args(settings, device: str) -> list[str]:
    """The command-line options that give a child the studio's settings (read back by add_settings_arguments)."""
    args = ["--root", str(settings.root), "--models-dir", str(settings.models_dir),
            "--workspace", str(settings.workspace_dir), "--device", device,
            "--max-image-pixels", str(settings.max_image_pixels)]
    return args + ["--offline"] * (not settings.allow_downloads) + ["--allow-pickle"] * settings.allow_pickle


def start_child(folder: Path, argv: list[str], cwd: Path) -> subprocess.Popen:
    """Run `python *argv` detached from this process's session, output to the folder's log.txt, with this checkout's
    `studio` importable; status.json says "starting" with the child's pid."""
    folder = Path(folder)
    (folder / CANCEL_FILE).unlink(missing_ok=True)
    package_parent = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p))
    with open(folder / LOG_FILE, "ab") as out:
        child = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT, env=env,
                                 cwd=str(cwd), start_new_session=True)
    with _lock:
        _children[folder] = child
    fileio.write_json(folder / "status.json", {"state": "starting", "message": "starting", "pid": child.pid,
                                               "updated": time.time()})
    return child


def alive(folder: Path, pid: int | None) -> bool:
    """Whether the job's child still runs: asked of the process object when this studio started it, else by pid."""
    with _lock:
        child = _children.get(Path(folder))
    if child is not None:
        return child.poll() is None
    if not pid:
        return False
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def job_state(folder: Path) -> tuple[str, str]:
    """(state, message) from status.json; a job said to be starting or running whose child is gone is `stopped`."""
    status = read_status(folder)
    state, message = status.get("state", "stopped"), status.get("message", "")
    if state in ACTIVE and not alive(folder, status.get("pid")):
        return "stopped", f"the job's process ended without a word (see {LOG_FILE})"
    return state, message


def ask_to_stop(folder: Path) -> None:
    """The one cancel call: the child sees the cancel file between two steps, stops and records it."""
    fileio.write_text(Path(folder) / CANCEL_FILE, "cancel\n")


def reap(folder: Path) -> None:
    """Wait for a child this process started once its job has ended, so it does not stay a zombie."""
    with _lock:
        child = _children.pop(Path(folder), None)
    if child is not None:
        child.wait()


# ---- the child's side ------------------------------------------------------------------------------------------

def cancel_job(folder: Path, read, *, wait_s: float = 0.0):
    """Ask the job in `folder` to stop and, for up to `wait_s`, wait until `read()` (its status, with `.active`)
    says it has; returns the last status read."""
    status = read()
    if not status.active:
        return status
    ask_to_stop(folder)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and read().active:
        time.sleep(0.2)
    return read()


def wait_job(folder: Path, read, what: str, *, poll_s: float = 0.5, timeout_s: float | None = None):
    """Poll `read()` until the job in `folder` is no longer active (TimeoutError naming `what` after `timeout_s`),
    then reap its child; returns the final status."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while (status := read()).active:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{what} still {status.state} after {timeout_s} s")
        time.sleep(poll_s)
    reap(folder)
    return status


def add_settings_arguments(parser) -> None:
    """The options settings_args writes, for a child's argparse parser."""
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-image-pixels", type=int, default=None)
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--allow-pickle", action="store_true")


def settings_from_arguments(args):
    from studio.settings import Settings

    limit = {"max_image_pixels": args.max_image_pixels} if args.max_image_pixels else {}
    return Settings(root=args.root, models_dir=args.models_dir, workspace_dir=args.workspace, device=args.device,
                    allow_downloads=not args.offline, allow_pickle=args.allow_pickle, **limit)


def stop_requested(folder: Path) -> StopFn:
    """In the child: should_stop() that turns true on SIGTERM or once the job's cancel file appears."""
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(now=True))
    cancel = Path(folder) / CANCEL_FILE
    return lambda: stop["now"] or cancel.exists()
