"""One claim on each device, across processes: workspace/queue/claim-<device>.json names the job that holds the
device, its process (pid and start time, so a process that reuses a dead one's pid is not taken for it) and what it
needs. A dead process frees its claim. Claims and the queue change only under one lock file (fcntl), so for every
process of the studio, checking that a device is free and claiming it are one step.

A device is named by where work runs, resolved without importing torch: "cpu", "cuda:0", "cuda:1"... ("auto" is
cuda:0 when the NVIDIA driver lists a GPU this process may use, else cpu), so a CPU-only machine claims "cpu" too.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from studio import children, fileio

QUEUE_DIR = "queue"  # under the studio's workspace: the queue, the claims and their lock (one for all its users)


def queue_dir(settings) -> Path:
    return settings.studio_workspace / QUEUE_DIR


_local = threading.local()
_threads = threading.Lock()  # an flock is per open file: the threads of one process take turns before it


@contextmanager
def locked(folder: Path):
    """Hold the queue's lock (re-entrant within a thread)."""
    import fcntl

    if getattr(_local, "depth", 0):
        _local.depth += 1
        try:
            yield
        finally:
            _local.depth -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    with _threads, open(folder / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _local.depth = 1
        try:
            yield
        finally:
            _local.depth = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- device names ------------------------------------------------------------------------------------------------

def gpu_count() -> int:
    """CUDA GPUs this process may use, from the driver's list (narrowed by CUDA_VISIBLE_DEVICES), without torch."""
    listed = Path("/proc/driver/nvidia/gpus")
    found = len(list(listed.iterdir())) if listed.is_dir() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    ids = []
    for part in visible.split(","):
        if part.strip() in ("", "-1"):  # CUDA stops at the first id it cannot use
            break
        ids.append(part)
    return min(found, len(ids))


def device_key(device: str) -> str:
    """The claim's name for `device` (auto, cpu, mps, cuda or cuda:N)."""
    if device == "auto":
        return "cuda:0" if gpu_count() else "cpu"
    return "cuda:0" if device == "cuda" else device


def every_gpu() -> list[str]:
    """Every GPU's key, or ["cpu"] when there is none (a multi-GPU run or a sweep takes them all)."""
    return [f"cuda:{i}" for i in range(gpu_count())] or ["cpu"]


# ---- claims ------------------------------------------------------------------------------------------------------

@dataclass
class Claim:
    device: str
    job: str  # a queue entry's id ("run:tim-v1"), or the studio's own work ("generate")
    pid: int
    created: float | None  # the process's start time
    needs: str = ""  # in words: "training a LoRA on builtin:tiny"
    since: float = 0.0

    @property
    def is_job(self) -> bool:
        """A run, sweep or mining job (its id is kind:name), not the studio's own work."""
        return ":" in self.job

    def label(self) -> str:
        kind, _, name = self.job.partition(":")
        return f"{kind} {name!r}" if name else self.job


def _path(folder: Path, device: str) -> Path:
    return folder / f"claim-{device.replace(':', '-')}.json"


def holder(folder: Path, device: str) -> Claim | None:
    """Who holds `device` now (None when free: no claim, or its process is gone)."""
    try:
        claim = Claim(**json.loads(_path(folder, device).read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return claim if children.alive(claim.pid, claim.created) else None


def holders(folder: Path) -> list[Claim]:
    """Every live claim."""
    found = [holder(folder, p.stem.removeprefix("claim-").replace("-", ":", 1)) for p in folder.glob("claim-*.json")]
    return [c for c in found if c is not None]


def take(folder: Path, devices: list[str], job: str, pid: int, needs: str = "") -> None:
    """Claim `devices` for process `pid` (the caller holds the lock and has seen them free)."""
    created = children.started_at(pid)
    for device in devices:
        fileio.write_json(_path(folder, device), asdict(Claim(device, job, pid, created, needs, time.time())))


def give_back(folder: Path, devices: list[str], pid: int) -> None:
    """Free the claims process `pid` holds on `devices`."""
    with locked(folder):
        for device in devices:
            claim = holder(folder, device)
            if claim is not None and claim.pid == pid:
                _path(folder, device).unlink(missing_ok=True)
