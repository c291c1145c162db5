"""The studio's own GPU work beside the long jobs, and the served studio's watch over the queue.

Generate, Evaluate, Face to animal, captioning, upscaling (every event that loads a model) take the device's claim
for as long as they run (`device_turn`). While a job holds the device they wait for it in the queue, ahead of the
jobs waiting there, and load nothing meanwhile; or, when the user chose so (Settings.when_busy "cpu"), they run on
the CPU at once. Either way the turn says which.

While the studio serves, its watcher (`QueueWatcher`) looks once a second: it reaps the children it started,
advances the queue, and gives back its cached weights when another process claims a device they are on (a `train`
command started beside it). When it starts, a job the queue had running and whose child is gone continues first or
stays stopped, as the queue's option says (studio.queue.recover).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from studio import children, claims, queue
from studio.jobs import queue_view
from studio.progress import Cancelled, ProgressFn, StopFn, never_stop, no_progress

_held: dict[str, int] = {}  # device -> turns this process holds on it (a turn within a turn is the same turn)
_held_lock = threading.Lock()
_events = itertools.count(1)


@dataclass
class Turn:
    device: str  # where the work runs: the studio's device, or "cpu"
    note: str = ""  # "" when the device was free at once; else what happened, in words
    waited_s: float = 0.0


@contextmanager
def device_turn(studio, what: str, progress: ProgressFn = no_progress, should_stop: StopFn = never_stop):
    """Hold the studio's device for `what` (an event's name) within the block: at once when it is free, after
    waiting in the queue while a job holds it (progress says for what; should_stop() ends the wait with
    Cancelled), or, with Settings.when_busy "cpu", on the CPU (the cache loads there) without waiting."""
    folder = claims.queue_dir(studio.settings)
    device = claims.device_key(studio.settings.device)
    with _held_lock:
        nested = _held.get(device, 0) > 0
        if nested:
            _held[device] += 1
    if nested:
        try:
            yield Turn(device)
        finally:
            with _held_lock:
                _held[device] -= 1
        return
    # 1. Wait for the turn in the queue (nothing loads meanwhile), unless the CPU is asked for while a job holds it
    pid = os.getpid()
    event = queue.Entry(f"event:{pid}:{next(_events)}", "event", what, [device], what, owner=studio.settings.user,
                        pid=pid, created=children.started_at(pid))
    began, waited_for, busy = time.monotonic(), "", None
    try:
        while True:
            holder = claims.holder(folder, device)
            if holder is not None and holder.is_job and studio.settings.when_busy == "cpu":
                busy = holder  # (asked for before, or ticked while this waits)
                break
            if queue.take_turn(folder, event):
                break
            waited_for, said = waiting_text(studio, device)
            progress(0.0, said)
            if should_stop():
                raise Cancelled(f"stopped while waiting for {device} ({waited_for})")
            time.sleep(0.5)
    except BaseException:
        queue.leave(folder, event.id)
        raise
    if busy is not None:
        queue.leave(folder, event.id)
        beside = " (it runs on the CPU too: they share it)" if device == "cpu" else ""
        with studio.cache.on_device("cpu"):
            yield Turn("cpu", f"on the CPU, since {holder_label(studio, busy)} holds {device}{beside}")
        return
    # 2. Run, holding the claim
    with _held_lock:
        _held[device] = 1
    waited = time.monotonic() - began
    try:
        yield Turn(device, f"waited {waited:.0f} s for {waited_for} to give back {device}" if waited_for else "",
                   waited)
    finally:
        with _held_lock:
            _held[device] = 0
        claims.give_back(folder, [device], pid)


def waiting_text(studio, device: str) -> tuple[str, str]:
    """(what holds `device`, a line saying what the waiting event waits for and about how long)."""
    holder = claims.holder(claims.queue_dir(studio.settings), device)
    label = holder_label(studio, holder) if holder else "the work before it"
    running = next((r for r in queue_view(studio).rows if r.position == 0 and device in r.devices), None)
    when = f" ({running.line}; {running.when()})" if running and running.line else ""
    return label, f"waiting for {device}: {label} holds it{when}"


def holder_label(studio, claim: claims.Claim) -> str:
    """What holds a device, as this user may know it: their own job by name, another user's only as such."""
    settings = studio.settings
    if claim.is_job and queue.owner_of(claim.job) != settings.user and not settings.is_admin:
        return f"another user's {claim.job.partition(':')[0]}"
    return claim.label()


class QueueWatcher:
    """The served studio's look at the queue, once every `period_s` while `keep_going()` says so."""

    def __init__(self, studio, keep_going: Callable[[], bool], period_s: float = 1.0):
        self.studio, self.keep_going, self.period_s = studio, keep_going, period_s
        self.folder = claims.queue_dir(studio.settings)

    def start(self) -> None:
        for entry in queue.recover(self.folder):
            print(f"queue: {entry.kind} {entry.name!r} was running when the studio stopped; it continues first",
                  flush=True)
        threading.Thread(target=self._loop, name="studio-queue", daemon=True).start()

    def _loop(self) -> None:
        while self.keep_going():
            try:
                self.tick()
            except Exception:  # said in the server's log; the next look tries again
                traceback.print_exc()
            time.sleep(self.period_s)

    def tick(self) -> None:
        children.reap_finished()
        queue.advance(self.folder, release=self.studio.cache.release)
        self.give_back_weights()

    def give_back_weights(self) -> None:
        """Free the cache when another process claims a device the cached weights are on (a job never loads beside
        them); weights borrowed right now stay until given back."""
        held = self.studio.cache.holdings()
        on = {claims.device_key(m.device) for m in held}
        taken = [c for c in claims.holders(self.folder) if c.pid != os.getpid() and c.device in on]
        if taken and self.studio.cache.release() < len(held):
            print(f"gave back the cached weights: {taken[0].label()} claims {taken[0].device}", flush=True)
