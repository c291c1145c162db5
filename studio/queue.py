"""The queue: runs, sweeps and mining jobs wait here in order and start when their devices are free; the studio's own
GPU work (Generate, Evaluate...) waits here too, ahead of the jobs, while a job holds the device.

workspace/queue/queue.json holds the waiting entries in order, the entries running now and the options (what a
restart of the studio does with a job it finds dead: resume it from its checkpoint first, or leave it stopped). It
changes only under the claims' lock, so any process may advance it (the studio, a `train` command, the runner): each
waiting job whose devices are free and that no earlier entry waits for starts, its child claiming the devices.
When no studio watches, a small runner (`python -m studio.queue QUEUE_DIR`) advances it until nothing waits.

An entry carries everything its start needs (the child's command line, its folder), so the queue knows no kind of
job, and an `owner` (who asked: "" the studio's owner, else an account's name). Owners take turns: the next job
to start is the one of the owner who waited longest since their last start, so one user's ten queued runs never keep
another's first one waiting behind all of them (`in_turn`); within one owner's jobs, the order is theirs.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from studio import children, claims, fileio
from studio.joblog import CANCEL_FILE, LOG_FILE, read_status, write_status

ON_RESTART = ("resume", "stop")
FILE = "queue.json"


def entry_id(kind: str, name: str, owner: str = "") -> str:
    """The queue's id of a job: "run:<name>" (the studio's owner's), "run:<user>/<name>" (a user's: names are theirs,
    so two users' runs may share one)."""
    return f"{kind}:{owner}/{name}" if owner else f"{kind}:{name}"


def owner_of(entry_id: str) -> str:
    """Whose job a queue id (or a claim's job) names: the user before the "/", "" for the studio's owner."""
    kind, _, rest = entry_id.partition(":")
    return rest.partition("/")[0] if "/" in rest else ""


@dataclass
class Entry:
    id: str  # entry_id(): "run:<name>", "sweep:<user>/<name>"...; the studio's own work: "event:<pid>:<n>"
    kind: str  # run | sweep | mining | event
    name: str
    devices: list[str]
    needs: str = ""  # in words, for the claim and the list
    folder: str = ""  # the job's folder: its status.json and log.txt
    argv: list[str] = field(default_factory=list)  # `python *argv` starts the job
    resume_argv: list[str] = field(default_factory=list)  # ... and continues it from where it was
    cwd: str = ""
    owner: str = ""  # who asked
    added: float = field(default_factory=time.time)
    estimate_s: float | None = None  # how long the whole job may take, when it can be told
    pid: int | None = None  # the child's (a running job) or the studio's (an event waiting)
    created: float | None = None
    started: float | None = None

    @property
    def event(self) -> bool:
        return self.kind == "event"

    @classmethod
    def from_json(cls, saved: dict) -> "Entry":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


@dataclass
class Lineup:
    """What the queue holds now: the entries running, those waiting in the order they were queued (and moved), the
    restart option, and when each owner's last job started (their turn)."""

    running: list[Entry]
    waiting: list[Entry]
    on_restart: str = "resume"
    turns: dict[str, float] = field(default_factory=dict)  # owner -> when their last job started

    def find(self, entry_id: str) -> Entry | None:
        return next((e for e in self.running + self.waiting if e.id == entry_id), None)

    def in_turn(self) -> list[Entry]:
        """The waiting entries in the order they start (see in_turn)."""
        return in_turn(self.waiting, self.turns)


def _read(folder: Path) -> Lineup:
    try:
        saved = json.loads((folder / FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Lineup([], [])
    return Lineup([Entry.from_json(e) for e in saved["running"]], [Entry.from_json(e) for e in saved["waiting"]],
                  saved.get("on_restart", "resume"), dict(saved.get("turns") or {}))


def _write(folder: Path, lineup: Lineup) -> None:
    fileio.write_json(folder / FILE, {"running": [asdict(e) for e in lineup.running],
                                      "waiting": [asdict(e) for e in lineup.waiting], "on_restart": lineup.on_restart,
                                      "turns": lineup.turns})


def _pruned(lineup: Lineup) -> Lineup:
    """Without the jobs whose child has ended and the events whose process has gone."""
    return replace(lineup, running=[e for e in lineup.running if children.alive(e.pid, e.created)],
                   waiting=[e for e in lineup.waiting if not e.event or children.alive(e.pid, e.created)])


def lineup(folder: Path) -> Lineup:
    with claims.locked(folder):
        return _pruned(_read(folder))


def in_turn(waiting: list[Entry], turns: dict[str, float] | None = None) -> list[Entry]:
    """`waiting` in the order the entries start: the jobs round by round, one of each owner's a round (each owner's
    own in their order), the owners of a round in the order of their last start (`turns`; never started: first), so
    users take turns however many jobs each queued. The studio's events keep their places (ahead of the jobs)."""
    turns = turns or {}
    jobs = [e for e in waiting if not e.event]
    first_seen = {e.owner: k for k, e in reversed(list(enumerate(jobs)))}
    owners = sorted(first_seen, key=lambda o: (turns.get(o, float("-inf")), first_seen[o]))
    rounds: dict[str, int] = {}
    ranked = []
    for entry in jobs:
        rounds[entry.owner] = rounds.get(entry.owner, -1) + 1
        ranked.append(((rounds[entry.owner], owners.index(entry.owner)), entry))
    fair = iter(entry for _, entry in sorted(ranked, key=lambda r: r[0]))
    return [e if e.event else next(fair) for e in waiting]


def startable(waiting: list[Entry], busy: set[str], turns: dict[str, float] | None = None) -> list[Entry]:
    """The jobs to start now, in their turn (in_turn): each device keeps that order (an entry waits for every entry
    before it that needs one of its devices); the studio's events are started by their own process, never here."""
    blocked, found = set(busy), []
    for entry in in_turn(waiting, turns):
        if blocked.isdisjoint(entry.devices) and not entry.event:
            found.append(entry)
        blocked |= set(entry.devices)
    return found


# ---- changing the queue ------------------------------------------------------------------------------------------

def submit(folder: Path, entry: Entry, prepare=None) -> None:
    """Queue `entry` after the others; `prepare()` (checks and the job's files) runs under the lock first, so two
    processes submitting one name at once cannot both write it. Starts it at once when its devices are free."""
    with claims.locked(folder):
        current = _pruned(_read(folder))
        if any(e.id == entry.id for e in current.waiting):
            raise ValueError(f"{entry.kind} {entry.name!r} is already queued")
        # (a child that has said how it ended may take a moment to exit: its devices stay claimed until it has)
        if any(e.id == entry.id and read_status(e.folder).get("state") in ("starting", "running")
               for e in current.running):
            raise ValueError(f"{entry.kind} {entry.name!r} is already running")
        if prepare is not None:
            prepare()
        current.waiting.append(entry)
        _write(folder, current)
    advance(folder)
    ensure_runner(folder)


def remove(folder: Path, entry_id: str) -> Entry:
    """Take a waiting entry out of the queue; a running job is cancelled, not removed."""
    with claims.locked(folder):
        current = _pruned(_read(folder))
        entry = next((e for e in current.waiting if e.id == entry_id), None)
        if entry is None:
            _refuse(current, entry_id, "removed")
        current.waiting.remove(entry)
        _write(folder, current)
    return entry


def move(folder: Path, entry_id: str, position: int) -> None:
    """Put a waiting entry at `position` (1: next to start) among the waiting ones."""
    with claims.locked(folder):
        current = _pruned(_read(folder))
        entry = next((e for e in current.waiting if e.id == entry_id), None)
        if entry is None:
            _refuse(current, entry_id, "moved")
        if not 1 <= position <= len(current.waiting):
            raise ValueError(f"`position` must be between 1 and {len(current.waiting)} but is {position}")
        current.waiting.remove(entry)
        current.waiting.insert(position - 1, entry)
        _write(folder, current)


def _refuse(current: Lineup, entry_id: str, verb: str):
    if any(e.id == entry_id for e in current.running):
        raise ValueError(f"`entry` {entry_id!r} is running: cancel it instead (only a waiting entry is {verb})")
    listed = ", ".join(e.id for e in current.waiting) or "nothing waits"
    raise ValueError(f"`entry` {entry_id!r} is not in the queue ({listed})")


def set_on_restart(folder: Path, on_restart: str) -> None:
    """What a restart of the studio does with a job it finds dead: `resume` it first, or leave it `stop`ped."""
    if on_restart not in ON_RESTART:
        raise ValueError(f"`on_restart` must be one of {', '.join(ON_RESTART)} but is {on_restart!r}")
    with claims.locked(folder):
        _write(folder, replace(_read(folder), on_restart=on_restart))


# ---- starting jobs -----------------------------------------------------------------------------------------------

def advance(folder: Path, release=None) -> list[Entry]:
    """Start every job the queue's order and the free devices allow (each child claiming its devices under the
    lock); `release()` (the calling studio's cache) is called before the first start. Returns what started."""
    started = []
    with claims.locked(folder):
        current = _pruned(_read(folder))
        busy = {c.device for c in claims.holders(folder)}
        released = False
        for entry in startable(current.waiting, busy, current.turns):
            if release is not None and entry.devices and not released:  # (a job sent to remote workers needs none)
                release()
                released = True
            current.waiting.remove(entry)
            (Path(entry.folder) / CANCEL_FILE).unlink(missing_ok=True)  # a cancel asked of an earlier start
            entry.started = current.turns[entry.owner] = time.time()
            try:
                child = children.start(entry.argv, Path(entry.cwd), Path(entry.folder) / LOG_FILE)
            except OSError as e:  # (a cwd gone, no python): the job fails, the queue goes on
                write_status(entry.folder, "failed", f"could not start: {e}")
                continue
            entry.pid, entry.created = child.pid, children.started_at(child.pid)
            claims.take(folder, entry.devices, entry.id, child.pid, entry.needs)
            if read_status(entry.folder).get("updated", 0) < entry.started:  # (not once the child has said more)
                write_status(entry.folder, "starting", "starting", pid=child.pid)
            current.running.append(entry)
            started.append(entry)
        _write(folder, current)
    return started


def recover(folder: Path) -> list[Entry]:
    """After a restart of the studio: a job that was running and whose child is gone without a word is put first
    in the queue to continue from where it was (`on_restart` "resume"), or left stopped. Returns those resumed."""
    with claims.locked(folder):
        current = _read(folder)
        gone = [e for e in current.running if not children.alive(e.pid, e.created)]
        current.running = [e for e in current.running if e not in gone]
        unfinished = [e for e in gone if read_status(e.folder).get("state") in ("starting", "running")]
        resumed = []
        if current.on_restart == "resume":
            resumed = [replace(e, argv=e.resume_argv or e.argv, pid=None, created=None, started=None)
                       for e in unfinished]
            for entry in resumed:
                write_status(entry.folder, "queued", "queued first to continue after a restart", queue=str(folder))
            current.waiting = resumed + current.waiting
        _write(folder, current)
    return resumed


# ---- the studio's own work -------------------------------------------------------------------------------------

def take_turn(folder: Path, event: Entry) -> bool:
    """For an event of this process: claim its devices when they are free and no earlier entry waits for them
    (True), else wait in the queue ahead of the jobs (False, asked again later)."""
    with claims.locked(folder):
        current = _pruned(_read(folder))
        mine = next((e for e in current.waiting if e.id == event.id), None)
        if mine is None:  # first asked: after the events already waiting, before any job
            mine = event
            at = next((k for k, e in enumerate(current.waiting) if not e.event), len(current.waiting))
            current.waiting.insert(at, mine)
        ahead = current.waiting[:current.waiting.index(mine)]
        busy = {c.device for c in claims.holders(folder)} | {d for e in ahead for d in e.devices}
        turn = busy.isdisjoint(mine.devices)
        if turn:
            claims.take(folder, mine.devices, mine.name, mine.pid, mine.needs)
            current.waiting.remove(mine)
        _write(folder, current)
    return turn


def leave(folder: Path, entry_id: str) -> None:
    """An event that stopped waiting leaves the queue."""
    with claims.locked(folder):
        current = _read(folder)
        current.waiting = [e for e in current.waiting if e.id != entry_id]
        _write(folder, current)


# ---- the runner: advances the queue while no studio does ----------------------------------------------------------

def _runner_alive(folder: Path) -> bool:
    import fcntl

    with open(folder / "runner.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def ensure_runner(folder: Path) -> None:
    """Start the runner when a job waits and none runs (under the lock: a runner leaving checks under it too)."""
    with claims.locked(folder):
        if any(not e.event for e in _read(folder).waiting) and not _runner_alive(folder):
            children.start(["-m", "studio.queue", str(folder)], Path.cwd(), folder / "runner.log")


def run(folder: Path, poll_s: float = 1.0) -> None:
    """The runner: advance the queue and reap the children it started until no job waits."""
    import fcntl

    with open(folder / "runner.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another runner is there
        while True:
            advance(folder)
            children.reap_finished()
            with claims.locked(folder):
                if not any(not e.event for e in _read(folder).waiting):
                    fcntl.flock(handle, fcntl.LOCK_UN)  # before the lock goes: a submitter then starts a new one
                    return
            time.sleep(poll_s)


if __name__ == "__main__":
    run(Path(sys.argv[1]))
