"""The slow first pass over uploads: check and decode each file, find its faces (cached), hash it; in worker
processes when there are many files and several cores, in this process otherwise."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from studio.data.facecache import DetectSettings, FaceCache
from studio.data.ingest import Limits, Refusal, Refused, SourceFile, load_image, perceptual_hash
from studio.faces.detect import Face
from studio.progress import Cancelled, ProgressFn, StopFn

# Below this many files, starting worker processes (each loads dlib's models, ~2 s) costs more than it saves.
MIN_FILES_FOR_WORKERS = 16
# Memory one worker may need at the default pixel limit: a decoded picture, its conversions, dlib's copies.
WORKER_BYTES = 700 * 1024**2


@dataclass
class Scanned:
    """An accepted upload: what the later passes need, without the pixels (they are decoded again when cropped)."""

    source: str
    sha256: str
    faces: list[Face]
    phash: int
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


@dataclass
class ScanResult:
    accepted: list[Scanned]
    refused: list[Refusal]
    detected: int  # pictures whose faces were computed now
    cached: int  # pictures whose faces came from the cache


def auto_workers(files: int) -> int:
    """Worker processes for `files` uploads: none for small batches or machines with under 4 cores (two shared
    cores ran slower with workers than without), else one per core but one, up to 4, and no more than the free
    memory holds (each may decode one picture at the limit, about WORKER_BYTES)."""
    import psutil

    cores = os.cpu_count() or 1
    if files < MIN_FILES_FOR_WORKERS or cores < 4:
        return 0
    return max(0, min(4, cores - 1, psutil.virtual_memory().available // WORKER_BYTES - 1))


def _scan_one(name: str, data: bytes, limits: Limits, detect: DetectSettings, cache_folder: Path):
    """Check, decode, find faces and hash one upload; runs in a worker process or in this one."""
    cache = FaceCache(cache_folder, detect)
    try:
        loaded = load_image(SourceFile(name, len(data), lambda: data), limits)
    except Refused as e:
        return name, None, str(e), 0
    faces = cache.faces(loaded.sha256, loaded.image)
    scanned = Scanned(name, loaded.sha256, faces, perceptual_hash(loaded.image), loaded.notes, loaded.flags)
    return name, scanned, "", cache.misses


def scan(sources: list[SourceFile], limits: Limits, detect: DetectSettings, cache_folder: Path, workers: int,
         progress: ProgressFn, should_stop: StopFn, share: float = 1.0) -> ScanResult:
    """Scan every source, results in upload order; `share` is the part of the progress bar this pass fills.
    Files whose faces are cached are done here; the others go to `workers` processes (none: done here too)."""
    # 1. Hand out the work, at most 2 files per worker in flight so 300 uploads are never all in memory at once
    cache = FaceCache(cache_folder, detect)
    pending: deque = deque()  # ("result", outcome) or ("future", Future), in upload order
    outcomes = []
    pool = None
    try:
        for source in sources:
            if should_stop():
                raise Cancelled()
            if source.size > limits.max_file_bytes:  # refused before reading, as load_image would
                reason = f"file is {source.size} bytes, more than the limit of {limits.max_file_bytes}"
                pending.append(("result", (source.name, None, reason, 0)))
                continue
            data = source.read()
            if workers > 0 and not cache.has(hashlib.sha256(data).hexdigest()):
                pool = pool or _pool(workers)
                pending.append(("future", pool.submit(_scan_one, source.name, data, limits, detect, cache_folder)))
            else:
                pending.append(("result", _scan_one(source.name, data, limits, detect, cache_folder)))
            while pending and (pending[0][0] == "result" or sum(k == "future" for k, _ in pending) > 2 * workers):
                outcomes.append(_next(pending, should_stop))
                progress(share * len(outcomes) / len(sources), f"checked {len(outcomes)} of {len(sources)}")
        # 2. Collect what is still in flight
        while pending:
            outcomes.append(_next(pending, should_stop))
            progress(share * len(outcomes) / len(sources), f"checked {len(outcomes)} of {len(sources)}")
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    # 3. Sort the outcomes into accepted and refused
    accepted = [scanned for _, scanned, _, _ in outcomes if scanned is not None]
    refused = [Refusal(name, reason) for name, scanned, reason, _ in outcomes if scanned is None]
    detected = sum(misses for *_, misses in outcomes)
    return ScanResult(accepted, refused, detected, len(accepted) - detected)


def _pool(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the web UI's threads may hold locks (dlib's among them) that a forked child would inherit
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _next(pending: deque, should_stop: StopFn):
    """The oldest outcome, waiting for it when it is still being worked on."""
    if should_stop():
        raise Cancelled()
    kind, item = pending.popleft()
    return item if kind == "result" else item.result()
