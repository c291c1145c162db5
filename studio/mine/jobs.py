"""Mining jobs as long jobs (studio.jobs): what a mining child is and what its status reads; start, continue,
status, cancel, wait and list, each the one kind's call.

A job's folder is its whole record (studio.mine.disk), so jobs and their progress are listed again after the studio
restarts; a child that died without a word shows as `stopped`, and continuing it loses at most the candidate it was
deciding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from studio import fileio, jobs
from studio.data.ingest import Limits, Refused, SourceFile, load_image
from studio.data.library import find_dataset
from studio.joblog import ACTIVE
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
        if self.message and (not self.active or self.state in ("queued", "cancelling")):
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
    """Check `request`, write mine.json and queue the job (it starts at once when the device is free). The name must
    be new (resume_mining goes on with an existing job)."""
    # 1. Check what can be checked before the job is queued
    settings = studio.settings
    model = request.model or studio.store.default_model
    if request.from_generator:
        studio.store.resolve(model)  # an unknown model fails here
        for lora in request.loras:
            studio.store.lora_file(lora.name)
        for embedding in request.embeddings:
            studio.store.embedding_file(embedding)
    else:
        request = replace(request, candidates=candidates_folder(settings, request.candidates))
    from studio.mine.run import resolve_upscaler

    resolve_upscaler(studio, request.upscaler)  # an upscaler not in models/upscale/ fails here

    # 2. The seed face kept in the job's folder, so the job never depends on an upload
    def prepare(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        kept = request
        if request.seed_face:
            kept = replace(request, seed_face=_keep_seed_face(settings, folder, Path(request.seed_face)))
        fileio.write_json(folder / REQUEST, kept.to_json())

    return jobs.start(studio, MINING, request.name, prepare, needs=_needs(settings, request, model),
                      estimate_s=request.max_seconds or None)


def _needs(settings, request: MiningRequest, model: str) -> str:
    needs = f"mining with {model}" if request.from_generator else f"mining the pictures of {request.candidates.name}"
    return needs + (f" on a remote worker ({settings.workers})" if settings.workers else "")


def candidates_folder(settings, candidates: Path) -> Path:
    """Where a folder job's pictures are: a dataset from the studio's list (prepared, or a plain folder of pictures
    in workspace/datasets/); from the command line also any folder or .zip."""
    if settings.server_paths and candidates.is_file():
        return candidates.resolve()
    return find_dataset(settings, str(candidates), argument="candidates")


def resume_mining(studio, name: str, **changes) -> MiningStatus:
    """Go on with job `name` after its last decided candidate, with the request in its mine.json; `changes` may
    raise the target or the budgets (target, max_candidates, max_minutes; None keeps a value)."""
    folder = mining_folder(studio.settings, name)
    if not (folder / REQUEST).is_file():
        raise ValueError(f"`name` {name!r} has no mining job to continue in {folder}")
    request = read_request(folder).continued(**changes)
    needs = _needs(studio.settings, request, request.model or studio.store.default_model)
    return jobs.start(studio, MINING, name, lambda folder: fileio.write_json(folder / REQUEST, request.to_json()),
                      resume=True, needs=needs, estimate_s=request.max_seconds or None)


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


def read_request(folder: Path) -> MiningRequest:
    return MiningRequest.from_json(json.loads((folder / REQUEST).read_text(encoding="utf-8")))


def mining_status(studio, name: str) -> MiningStatus:
    """What job `name` is doing or how it ended, from its folder."""
    return jobs.status(studio, MINING, name)


def folder_mining_status(folder: Path, name: str) -> MiningStatus:
    state, message = jobs.job_state(folder)
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
    """Ask job `name` to stop before its next candidate, or take it out of the queue; optionally wait for it."""
    return jobs.cancel(studio, MINING, name, wait_s=wait_s)


def wait_mining(studio, name: str, *, poll_s: float = 0.5, timeout_s: float | None = None) -> MiningStatus:
    return jobs.wait(studio, MINING, name, poll_s=poll_s, timeout_s=timeout_s)


def list_mining(studio) -> list[MiningStatus]:
    """Every mining job on disk, newest first."""
    return jobs.list_jobs(studio, MINING)


def _remaining(status: MiningStatus) -> float | None:
    """A running job's time budget left (a job without one can run until its group is full: not known)."""
    budget = status.request.max_seconds
    return max(0.0, budget - status.elapsed) if budget and status.state == "running" else None


MINING = jobs.declare(jobs.JobKind(
    key="mining", noun="mining job", request=REQUEST, events=disk.EVENTS, child="studio.mine.child",
    root=lambda settings: settings.workspace_dir / "mining", where=mining_folder, read=folder_mining_status,
    resume_verb="continue", remaining=_remaining, remote=True))
