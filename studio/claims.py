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


@dataclass(frozen=True)
class Placement:
    """Where a job's processes run and what it claims."""

    device: str  # what its child is told (--device): "cpu", "cuda", "cuda:N"
    devices: list[str]  # the claims' keys
    processes: int = 1
    cards: tuple[str, ...] = ()  # with several processes on GPUs: the cards' numbers, one per process


def place(device: str, gpus: str = "", processes: int = 0) -> Placement:
    """Where a job asked for on `device` runs: on the cards `gpus` names ("0,1": one process per card), as
    `processes` processes on the CPU (gloo: the multi-GPU path on a machine without one), or on `device` (auto or
    cuda with several GPUs visible: one process on each)."""
    cards = [c.strip() for c in gpus.split(",") if c.strip()] if gpus else []
    if cards:
        if processes > 1:
            raise ValueError(f"`processes` {processes} is for the CPU; on GPUs `gpus` {gpus!r} gives one process per "
                             f"card")
        if not all(c.isdigit() for c in cards) or len(set(cards)) != len(cards):
            raise ValueError(f"`gpus` must list GPU numbers once each, such as 0,1, but is {gpus!r}")
        if not (device in ("auto", "cuda") or device.startswith("cuda:")):
            raise ValueError(f"`gpus` {gpus!r} names GPUs but the device is {device!r}")
        count = gpu_count()
        missing = [c for c in cards if int(c) >= count]
        if missing:
            raise ValueError(f"`gpus` {gpus!r} names GPU {missing[0]} but the NVIDIA driver lists {count} GPU(s) "
                             f"this process may use")
        keys = [f"cuda:{c}" for c in cards]
        if len(cards) == 1:
            return Placement(keys[0], keys)
        return Placement("cuda", keys, len(cards), tuple(cards))
    if processes > 1:
        if device_key(device) != "cpu":
            raise ValueError(f"`processes` {processes} runs on the CPU (gloo) but the device is {device!r}: name the "
                             f"GPUs with `gpus` instead")
        return Placement("cpu", ["cpu"], processes)
    if device in ("auto", "cuda") and gpu_count() > 1:
        keys = every_gpu()
        return Placement("cuda", keys, len(keys), tuple(k.split(":")[1] for k in keys))
    return Placement(device, [device_key(device)])


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
