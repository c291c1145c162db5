"""Mining jobs: start one in a child process, watch it, cancel it, continue it, list every job on disk.

A job's folder is its whole record (studio.mine.disk), so jobs and their progress are listed again after the studio
restarts; a child that died without a word shows as `stopped`, and continuing it loses at most the candidate it was
deciding.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from studio import fileio
from studio.data.ingest import Limits, Refused, SourceFile, load_image
from studio.data.library import find_dataset
from studio.jobs import ACTIVE, cancel_job, job_state, one_start_at_a_time, settings_args, start_child, wait_job
from studio.mine import disk
from studio.mine.disk import REQUEST, mining_folder
from studio.mine.request import MiningRequest

SEED_FACE = "seed-face-upload"  # the seed face the user gave, copied into the job's folder


@dataclass
class MiningStatus:
    name: str
    state: str  # starting | running | done | failed | cancelled | stopped (died without a word)
    message: str
    request: MiningRequest
    folder: Path
    step: int = 0
    counts: dict = field(default_factory=lambda: dict.fromkeys(disk.COUNTS, 0))
    group_size: int = 0
    group_mean: float | None = None
    per_minute: float | None = None
    elapsed: float = 0.0
    members: list[dict] = field(default_factory=list)  # in the order they joined
    dropped: list[dict] = field(default_factory=list)
    history: list[list] = field(default_factory=list)  # [candidate index, group size, group mean]
    messages: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def line(self) -> str:
        """One line for the command line and the job list."""
        c = self.counts
        parts = [f"{self.name}: {self.state}", f"{c['candidates']} candidates"]
        if self.per_minute:
            parts.append(f"{self.per_minute:.1f}/min")
        parts.append(f"{c['faces']} faces, group {self.group_size}/{self.request.target}")
        if self.group_mean is not None:
            parts.append(f"mean distance {self.group_mean:.3f}")
        parts.append(f"admitted {c['admitted'] + c['seed']}, near misses {c['near_miss']}, rejected {c['rejected']}, "
                     f"no face {c['no_face']}, dropped {c['dropped']}")
        if self.message and not self.active:
            parts.append(self.message)
        return ", ".join(parts)

    def faces(self, last: int = 60) -> list[tuple[str, str]]:
        """The newest members' face crops with a caption (seed or file, sim-score when admitted)."""
        out = []
        for m in self.members[-last:]:
            score = "seed" if m["distance"] is None else f"{m['distance']:.3f}"
            out.append((str(self.folder / disk.face_name(m["file"])), f"{m['source']} ({score})"))
        return out


def start_mining(studio, request: MiningRequest) -> MiningStatus:
    """Check `request`, write mine.json and start the child. The name must be new (resume_mining goes on with an
    existing job)."""
    # 1. Check what can be checked before a child starts
    settings = studio.settings
    folder = mining_folder(settings, request.name)
    if request.from_generator:
        studio.store.resolve(request.model or studio.store.default_model)  # an unknown model fails here
        for lora in request.loras:
            studio.store.lora_file(lora.name)
        for embedding in request.embeddings:
            studio.store.embedding_file(embedding)
    else:
        request = replace(request, candidates=candidates_folder(settings, request.candidates))
    from studio.mine.run import resolve_upscaler

    resolve_upscaler(studio, request.upscaler)  # an upscaler not in models/upscale/ fails here

    # 2. One job at a time; the seed face kept in the job's folder, so the job never depends on an upload
    with one_start_at_a_time(folder.parent):
        if (folder / REQUEST).is_file():
            raise ValueError(f"`name` {request.name!r} is taken by an earlier mining job; resume it or choose "
                             "another name")
        _not_busy(studio, request.name)
        folder.mkdir(parents=True, exist_ok=True)
        if request.seed_face:
            request = replace(request, seed_face=_keep_seed_face(settings, folder, Path(request.seed_face)))
        fileio.write_json(folder / REQUEST, request.to_json())
        _start(studio, folder, request)
    return mining_status(studio, request.name)


def candidates_folder(settings, candidates: Path) -> Path:
    """Where a folder job's pictures are: a dataset from the studio's list (prepared, or a plain folder of pictures
    in workspace/datasets/); from the command line also any folder or .zip."""
    if settings.server_paths and candidates.is_file():
        return candidates.resolve()
    return find_dataset(settings, str(candidates), argument="candidates")


def resume_mining(studio, name: str, **changes) -> MiningStatus:
    """Go on with job `name` after its last decided candidate, with the request in its mine.json; `changes` may
    raise the target or the budgets (target, max_candidates, max_seconds; None keeps a value)."""
    folder = mining_folder(studio.settings, name)
    if not (folder / REQUEST).is_file():
        raise ValueError(f"`name` {name!r} has no mining job to continue in {folder}")
    request = read_request(folder).continued(**changes)
    with one_start_at_a_time(folder.parent):
        _not_busy(studio, name)
        fileio.write_json(folder / REQUEST, request.to_json())
        _start(studio, folder, request)
    return mining_status(studio, name)


def _not_busy(studio, name: str) -> None:
    busy = [j for j in list_mining(studio) if j.active]
    if busy:  # one device: a second job would fight the first for it
        raise ValueError(f"mining job {busy[0].name!r} is {busy[0].state}; cancel it or wait for it before starting "
                         f"{name!r}")


def _keep_seed_face(settings, folder: Path, path: Path) -> str:
    if not path.is_file():
        raise ValueError(f"`seed_face` {str(path)!r} is not a picture file")
    data = path.read_bytes()
    try:
        loaded = load_image(SourceFile(path.name, len(data), lambda: data), Limits(max_pixels=settings.max_image_pixels))
    except Refused as e:
        raise ValueError(f"`seed_face` {path.name} cannot be used: {e}") from None
    kept = f"{SEED_FACE}{loaded.suffix}"
    fileio.write_bytes(folder / kept, data)
    return kept


def _start(studio, folder: Path, request: MiningRequest) -> None:
    """Start the child (its pid in status.json before the start lock is let go)."""
    fileio.write_json(folder / "status.json", {"state": "starting", "message": "starting", "updated": time.time()})
    if request.from_generator:
        studio.cache.release()  # the child loads the model; the studio's copy would only take the device's memory
    s = studio.settings
    start_child(folder, ["-m", "studio.mine.child", str(folder), *settings_args(s, s.device)], cwd=s.root)


def read_request(folder: Path) -> MiningRequest:
    return MiningRequest.from_json(json.loads((folder / REQUEST).read_text(encoding="utf-8")))


def mining_status(studio, name: str) -> MiningStatus:
    """What job `name` is doing or how it ended, from its folder."""
    folder = mining_folder(studio.settings, name)
    if not (folder / REQUEST).is_file():
        raise ValueError(f"`name` {name!r} is not a mining job (no {folder / REQUEST})")
    state, message = job_state(folder)
    status = MiningStatus(name, state, message, read_request(folder), folder)
    saved = disk.read_state_json(folder)
    if saved is not None:
        status.step, status.elapsed = saved["step"], saved["elapsed"]
        status.counts = {**status.counts, **saved["counts"]}
        status.members, status.dropped = saved["group"]["members"], saved["dropped"]
        status.group_size, status.group_mean = len(status.members), saved.get("group_mean")
        status.history, status.messages = saved["history"], saved["messages"]
        status.per_minute = 60.0 * status.counts["candidates"] / status.elapsed if status.elapsed > 0 else None
    return status


def cancel_mining(studio, name: str, *, wait_s: float = 0.0) -> MiningStatus:
    """Ask job `name` to stop before its next candidate; optionally wait for it."""
    return cancel_job(mining_folder(studio.settings, name), lambda: mining_status(studio, name), wait_s=wait_s)


def wait_mining(studio, name: str, *, poll_s: float = 0.5, timeout_s: float | None = None) -> MiningStatus:
    return wait_job(mining_folder(studio.settings, name), lambda: mining_status(studio, name), f"mining job {name!r}",
                    poll_s=poll_s, timeout_s=timeout_s)


def list_mining(studio) -> list[MiningStatus]:
    """Every mining job on disk, newest first."""
    root = studio.settings.workspace_dir / "mining"
    folders = sorted((p for p in root.iterdir() if (p / REQUEST).is_file()) if root.is_dir() else [],
                     key=lambda p: -(p / REQUEST).stat().st_mtime)
    return [mining_status(studio, p.name) for p in folders]
