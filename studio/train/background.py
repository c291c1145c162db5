"""Work a run does beside its steps, on one worker thread and in the order it was handed over: scoring validation
pictures against the dataset's faces (CPU work), writing checkpoints and epoch weights from copies of the tensors.

The training thread hands work over and goes on. What a piece of work has to say (events for the run's log) comes
back to the training thread when it polls, so the log keeps one writer; an error raised by the work is raised there
too, never lost. Work that reads what earlier work filled in (a checkpoint's history, after the scores of the
validation it follows) sees it, because the order is kept.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor


class Background:
    def __init__(self):
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future] = deque()

    def submit(self, work, *args) -> Future:
        """Run `work(*args)` after what was handed over before; its return value (a list of (kind, fields) events,
        or None) is what poll and drain give back."""
        if self._pool is None:  # the thread starts with the first piece of work
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-background")
        future = self._pool.submit(work, *args)
        self._pending.append(future)
        return future

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def poll(self) -> list:
        """The events of the work finished so far, in order (up to the first piece still running); raises what a
        piece raised."""
        said = []
        while self._pending and self._pending[0].done():
            said += self._pending.popleft().result() or []
        return said

    def drain(self) -> list:
        """Wait for everything handed over; its events, in order."""
        said = []
        while self._pending:
            said += self._pending.popleft().result() or []
        return said

    def close(self) -> None:
        """Wait for the work under way (an error of it is not raised here: the run is ending for another reason
        when it closes without draining) and stop the thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._pending.clear()
