"""The one kind of long job. Training runs, sweeps and mining jobs are each a small declaration (JobKind: where a
job's folder is, the file that says what was asked, its events file, the child that runs it, how its status reads)
over the same calls: start (into the queue, started by studio.queue when its devices are free), status, list,
cancel, wait and resume. The child's side, and how every child ends, is studio.job_child.

A job's folder is its whole record (studio.joblog), so jobs and their status are listed again after the studio
restarts; a child that died without a word shows as `stopped`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from studio import children, claims, queue
from studio.job_child import settings_args
from studio.joblog import (ACTIVE, CANCEL_FILE, LOG_FILE, STATES, JobLog, ask_to_stop, read_events,  # noqa: F401 (the job folder's
                           read_status, write_status)                                       # calls, by their old home)

KINDS: dict[str, "JobKind"] = {}  # by key, as each kind's module declares itself


@dataclass(frozen=True)
class JobKind:
    key: str  # the queue's name for the kind: run, sweep, mining
    noun: str  # in messages: "run", "sweep", "mining job"
    request: str  # the file that says what was asked (run.json...): a folder with it is a job of this kind
    events: str  # its events file
    child: str  # the module its child runs: python -m CHILD FOLDER <settings> [--resume]
    root: Callable  # (settings) -> the folder its jobs are in
    where: Callable  # (settings, name) -> the job's folder (a name, never a path)
    read: Callable  # (folder, name) -> the kind's status, with .state, .message and .active
    resume_verb: str = "resume"  # what going on with an ended job is called ("continue" for mining)
    # How long a job of this kind has left while it runs (its status -> seconds, or None when it cannot tell)
    remaining: Callable = lambda status: None
    multi_gpu: bool = False  # its child may run as several processes, one per GPU (studio.ranks)
    remote: bool = False  # with the studio's --workers, its jobs go to them (studio.remote.child drives each)


def declare(kind: JobKind) -> JobKind:
    KINDS[kind.key] = kind
    return kind


# ---- reading -----------------------------------------------------------------------------------------------------

def job_state(folder: Path) -> tuple[str, str]:
    """(state, message) from status.json: a job said to be starting or running whose child is gone is `stopped`, a
    queued one says how many wait before it."""
    status = read_status(folder)
    state, message = status.get("state", "stopped"), status.get("message", "")
    if state == "queued":
        lineup = queue.lineup(Path(status["queue"])) if status.get("queue") else queue.Lineup([], [])
        waiting = lineup.in_turn()
        ahead = next((k for k, e in enumerate(waiting) if e.folder == str(folder)), None)
        if ahead is None:
            return "stopped", "it left the queue before it started"
        owner = waiting[ahead].owner  # (another user's job is named only as such)
        running = " and ".join(f"{e.kind} {e.name!r}" if e.owner == owner else f"another user's {e.kind}"
                               for e in lineup.running)
        place = "next in the queue" if ahead == 0 else f"{ahead} before it in the queue"
        return state, place + (f", after {running}" if running else "")
    if state in ("starting", "running") and not children.alive(status.get("pid")):
        return "stopped", f"the job's process ended without a word (see {LOG_FILE})"
    if state in ("starting", "running") and (Path(folder) / CANCEL_FILE).is_file():  # said at once, not at its end
        return "cancelling", "asked to stop: it ends after its current step, keeping a checkpoint to resume from"
    return state, message


def status(studio, kind: JobKind, name: str):
    """What job `name` is doing or how it ended, from its folder."""
    folder = kind.where(studio.settings, name)
    if not (folder / kind.request).is_file():
        raise ValueError(f"`name` {name!r} is not a {kind.noun} (no {folder / kind.request})")
    return kind.read(folder, folder.name)


def list_jobs(studio, kind: JobKind) -> list:
    """Every job of `kind` on disk, newest first."""
    root = kind.root(studio.settings)
    folders = sorted((p for p in root.iterdir() if (p / kind.request).is_file()) if root.is_dir() else [],
                     key=lambda p: -(p / kind.request).stat().st_mtime)
    return [kind.read(p, p.name) for p in folders]


# ---- starting ----------------------------------------------------------------------------------------------------

def start(studio, kind: JobKind, name: str, prepare: Callable[[Path], None], *, resume: bool = False,
          device: str = "", devices: list[str] | None = None, needs: str = "", estimate_s: float | None = None,
          placement: claims.Placement | None = None):
    """Queue job `name`: under the queue's lock, check the name is new (or, with `resume`, that the job is there),
    `prepare(folder)` (write what was asked), then start it at once if its devices are free. `device` is where its
    child runs (the studio's by default); `devices` what it claims (that device's key by default); a `placement`
    says both, and for a kind that runs on several GPUs how many processes (studio.ranks starts them)."""
    settings = studio.settings
    folder = kind.where(settings, name)
    remote = bool(settings.workers) and kind.remote
    if remote:  # on a worker's GPU: nothing of this machine is claimed, Ray queues it for a free one
        placement = claims.Placement(device or settings.device, [])
    elif placement is None:
        device = device or settings.device
        placement = claims.Placement(device, devices or [claims.device_key(device)])
    if placement.processes > 1 and not kind.multi_gpu:
        raise ValueError(f"a {kind.noun} runs as one process, not {placement.processes}")
    queue_folder = claims.queue_dir(settings)

    def check():
        if resume and not (folder / kind.request).is_file():
            raise ValueError(f"`name` {name!r} has no {kind.noun} to {kind.resume_verb} in {folder}")
        if not resume and (folder / kind.request).is_file():
            raise ValueError(f"`name` {name!r} is taken by an earlier {kind.noun}; {kind.resume_verb} it or choose "
                             f"another name")

    def prepared():
        check()  # again, under the lock: two starts of one name at once
        prepare(folder)
        write_status(folder, "queued", "queued", queue=str(queue_folder))

    check()  # (first: a name taken is said as such, even while its job runs)

    entry = queue.Entry(queue.entry_id(kind.key, name, settings.user), kind.key, name, placement.devices,
                        needs or kind.noun, str(folder), child_argv(kind, settings, folder, placement, resume, remote),
                        child_argv(kind, settings, folder, placement, True, remote), str(settings.root),
                        owner=settings.user, estimate_s=estimate_s)
    queue.submit(queue_folder, entry, prepared)
    return status(studio, kind, name)


def child_argv(kind: JobKind, settings, folder: Path, placement: claims.Placement, resume: bool,
               remote: bool = False) -> list[str]:
    """The child's command line (after `python`): one process on the placement's device, or several through
    studio.ranks (one per card, or N on the CPU), never through `accelerate launch` and the user's accelerate
    config; with `remote`, the driver of a job sent to the studio's workers."""
    args = [str(folder), *settings_args(settings, placement.device)] + ["--resume"] * resume
    if remote:
        return ["-m", "studio.remote.child", *args]
    if placement.processes == 1:
        return ["-m", kind.child, *args]
    cards = ["--cards", ",".join(placement.cards)] if placement.cards else []
    return ["-m", "studio.ranks", "--processes", str(placement.processes), *cards, "--module", kind.child, "--",
            *args]


def launch(settings, kind: JobKind, folder: Path, device: str, *, resume: bool) -> None:
    """Start a job's child now, outside the queue: for a job started by another that holds the device (a sweep's
    runs, started by its driver), or with the studio's --workers sends it to them."""
    (folder / CANCEL_FILE).unlink(missing_ok=True)
    began = time.time()
    placement = claims.Placement(device, [claims.device_key(device)])
    argv = child_argv(kind, settings, folder, placement, resume, remote=bool(settings.workers) and kind.remote)
    child = children.start(argv, settings.root, folder / LOG_FILE)
    if read_status(folder).get("updated", 0) < began:  # (not when the child has said more already)
        write_status(folder, "starting", "starting", pid=child.pid)


# ---- cancel, wait ------------------------------------------------------------------------------------------------

def cancel(studio, kind: JobKind, name: str, *, wait_s: float = 0.0):
    """Cancel job `name`: a queued one leaves the queue (a job that never ran goes with its folder, so its name is
    free again); a running one is asked to stop after its step and, for up to `wait_s`, waited for."""
    current = status(studio, kind, name)
    if current.state == "queued":
        try:
            queue.remove(claims.queue_dir(studio.settings), queue.entry_id(kind.key, name, studio.settings.user))
        except ValueError:  # it started meanwhile: stopped as a running job is
            return cancel(studio, kind, name, wait_s=wait_s)
        folder = kind.where(studio.settings, name)
        if not (folder / LOG_FILE).is_file():  # never started: nothing of it is worth keeping
            shutil.rmtree(folder)
            return replace(current, state="cancelled", message="removed from the queue before it started")
        write_status(folder, "cancelled", "removed from the queue")
        return status(studio, kind, name)
    if not current.active:
        return current
    ask_to_stop(kind.where(studio.settings, name))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and status(studio, kind, name).active:
        time.sleep(0.2)
    return status(studio, kind, name)


def wait(studio, kind: JobKind, name: str, *, poll_s: float = 0.5, timeout_s: float | None = None):
    """Poll job `name` until it is no longer queued or running (a TimeoutError after `timeout_s`), reaping the
    children this process started; returns its final status."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while (current := status(studio, kind, name)).active:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{kind.noun} {name!r} still {current.state} after {timeout_s} s")
        children.reap_finished()
        time.sleep(poll_s)
    children.reap(read_status(kind.where(studio.settings, name)).get("pid"))
    return current


# ---- the queue as the user sees it -------------------------------------------------------------------------------

@dataclass
class QueueRow:
    """One line of the queue: what runs and what waits, in order, and about when each starts and ends."""

    entry: str  # the queue's id: run:<name>, sweep:<user>/<name>, mining:<name>, event:...
    kind: str
    name: str
    position: int  # 0 running, 1 next to start, ...
    needs: str
    devices: list[str]
    starts: float | None  # when it started, or about when it will (None: cannot be told yet)
    ends: float | None
    line: str = ""  # a running job's own progress line
    owner: str = ""

    def when(self, now: float | None = None) -> str:
        """About when, in words: "started 14:02, ends about 14:40", "starts about 14:40", "after the job before"."""
        def clock(t):
            return time.strftime("%H:%M", time.localtime(t))

        now = time.time() if now is None else now
        ends = f"ends about {clock(self.ends)}" if self.ends is not None else "end unknown"
        if self.position == 0:
            return f"started {clock(self.starts)}, {ends}" if self.starts else ends
        if self.starts is None:
            return "after the job before it (its length unknown)"
        return "next, as soon as the device is free" if self.starts <= now + 1 else f"starts about {clock(self.starts)}"


def queue_rows(studio) -> list[QueueRow]:
    """The queue now: running entries first (with their progress), then the waiting ones in the order they start
    (owners taking turns), each with about when it starts (when the devices it needs are free: the running jobs' time
    left, then the estimates before it). Everyone's: what a user may see of it is queue_view's."""
    lineup = queue.lineup(claims.queue_dir(studio.settings))
    now, free_at, rows = time.time(), {}, []
    for entry in lineup.running:
        kind = KINDS.get(entry.kind)
        found = kind is not None and (Path(entry.folder) / kind.request).is_file()
        current = kind.read(Path(entry.folder), entry.name) if found else None
        left = kind.remaining(current) if current is not None else None
        if left is None and entry.estimate_s is not None and entry.started:
            left = max(0.0, entry.started + entry.estimate_s - now)
        ends = now + left if left is not None else None
        free_at.update(dict.fromkeys(entry.devices, ends))
        rows.append(QueueRow(entry.id, entry.kind, entry.name, 0, entry.needs, entry.devices, entry.started, ends,
                             current.line() if current is not None else "", entry.owner))
    for position, entry in enumerate(lineup.in_turn(), 1):
        times = [free_at.get(d, now) for d in entry.devices]
        starts = None if None in times else max([now, *times])
        length = 0.0 if entry.event else entry.estimate_s  # the studio's own work takes moments
        ends = None if starts is None or length is None else starts + length
        free_at.update(dict.fromkeys(entry.devices, ends))
        rows.append(QueueRow(entry.id, entry.kind, entry.name, position, entry.needs, entry.devices, starts, ends,
                             owner=entry.owner))
    return rows


@dataclass
class QueueView:
    """The queue as one user may see it: their own entries (every entry for an admin) and how many of others' there
    are besides, never what they are."""

    rows: list[QueueRow]
    others: int = 0

    def says(self) -> str:
        """The line about the others' entries ("" when there are none)."""
        if not self.others:
            return ""
        return f"and {self.others} entr{'y' if self.others == 1 else 'ies'} of other users (running or waiting)"


def queue_view(studio) -> QueueView:
    rows = queue_rows(studio)
    settings = studio.settings
    if settings.is_admin:
        return QueueView(rows)
    own = [r for r in rows if r.owner == settings.user]
    return QueueView(own, len(rows) - len(own))


def find_job(studio, given: str) -> tuple[JobKind, str, str]:
    """(kind, name, owner) of the queue entry `given` names among those the user may see: its id (run:NAME,
    run:USER/NAME), or a name only one of them has. An entry of another user is answered as one that is not there."""
    rows = [r for r in queue_view(studio).rows if r.kind != "event"]
    found = [r for r in rows if r.entry == given] or [r for r in rows if r.name == given]
    if len(found) != 1 or found[0].kind not in KINDS:
        listed = ", ".join(r.entry for r in rows) or "none"
        what = "names several entries" if len(found) > 1 else "is not in the queue"
        raise ValueError(f"`entry` {given!r} {what} (entries you may act on: {listed})")
    return KINDS[found[0].kind], found[0].name, found[0].owner


def owners_studio(studio, owner: str):
    """The studio as the owner of a job sees it (an admin acting on another user's job), else `studio` itself."""
    return studio if owner == studio.settings.user else studio.as_user(owner)
