"""The steps' losses, read from the device every READ_EVERY steps (or once READ_AFTER_S seconds have passed) instead
of after every step, so the host does not wait for the device at each step: a step's loss stays a device tensor until
the read, which takes all of them in one transfer (and, on several GPUs, one all-reduce for their mean)."""

from __future__ import annotations

import time
from dataclasses import dataclass

READ_EVERY = 10  # steps between reads: a NaN stops a run at most this many steps after it appeared
READ_AFTER_S = 1.0  # ...or sooner when steps are slow, so progress and the guard are never far behind


@dataclass
class StepLoss:
    step: int
    epoch: int
    loss: object  # a 0-d tensor until read, then the mean over processes as a float
    lr: float
    at: float  # time.time() when the step ended (the host's view: the device may finish it a little later)


class PendingLosses:
    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.pending: list[StepLoss] = []
        self._read_at = time.perf_counter()

    def add(self, step: int, epoch: int, loss, lr: float) -> bool:
        """Keep step `step`'s loss (a tensor); True when the pending losses are due to be read."""
        self.pending.append(StepLoss(step, epoch, loss.detach(), lr, time.time()))
        if len(self.pending) >= READ_EVERY:
            return True
        # On several GPUs every process must read at the same step (the read is an all-reduce): by count only.
        return self.accelerator.num_processes == 1 and time.perf_counter() - self._read_at >= READ_AFTER_S

    def read(self) -> list[StepLoss]:
        """The pending steps with their losses as floats (the mean over processes), in step order; none pending:
        an empty list."""
        import torch

        self._read_at = time.perf_counter()
        if not self.pending:
            return []
        stacked = torch.stack([p.loss.float().reshape(()) for p in self.pending])
        if self.accelerator.num_processes > 1:
            stacked = self.accelerator.reduce(stacked, reduction="mean")
        values = stacked.cpu().tolist()
        out, self.pending = self.pending, []
        for entry, value in zip(out, values):
            entry.loss = value
        return out
