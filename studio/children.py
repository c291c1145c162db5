"""Child processes of the studio: started detached (their own session, so the studio survives them and they survive
the studio), told apart from a process that took a dead one's pid, and reaped once they end, so none stays a
zombie under the process that started it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

_children: dict[int, subprocess.Popen] = {}  # children this process started, by pid, until reaped
_lock = threading.Lock()


def start(argv: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """Run `python *argv` in its own session, its output appended to `log`, with this checkout's `studio`
    importable wherever `cwd` is."""
    package_parent = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        child = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT, env=env,
                                 cwd=str(cwd), start_new_session=True)
    with _lock:
        _children[child.pid] = child
    return child


def started_at(pid: int) -> float | None:
    """When process `pid` started (None when there is none): with its pid, what names one process for good."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def alive(pid: int | None, created: float | None = None) -> bool:
    """Whether process `pid` (started at `created`, when given) still runs. A child of this process that ended is
    reaped here; a zombie, or a new process that reuses the pid, is not the one asked about."""
    if not pid:
        return False
    with _lock:
        child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        with _lock:
            _children.pop(pid, None)
        return False
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return created is None or abs(process.create_time() - created) < 1.0
    except psutil.NoSuchProcess:
        return False


def reap(pid: int | None) -> None:
    """Wait for child `pid` of this process, once it has ended (nothing when another process started it)."""
    with _lock:
        child = _children.pop(pid, None) if pid else None
    if child is not None:
        child.wait()


def reap_finished() -> int:
    """Reap every child of this process that has ended; returns how many still run."""
    with _lock:
        children = list(_children.items())
    ended = [pid for pid, child in children if child.poll() is not None]
    with _lock:
        for pid in ended:
            _children.pop(pid, None)
    return len(children) - len(ended)
