"""What travels with a job sent to a remote worker, by kind (KINDS, by the job's request file):

- a run: its run.json (as the worker runs it), the pictures, captions and masks of every subject's dataset, the base
  model's files when they are on this machine (a builtin, a folder or file of models/base/, a path), a local CLIP it
  scores with, the run it continues ("add a subject": its last epoch weights) and, when it resumes, its last
  checkpoint;
- a mining job: its mine.json (as the worker runs it), its seed face, the pictures it mines (a dataset, a folder, a
  .zip) or the base, LoRAs, embeddings it generates with, a model upscaler, and, when it goes on, where it stands
  (state.json, encodings.jsonl, events.jsonl).

A sweep goes as its runs, each a run of the above. A hub id travels as its id and is resolved on the worker (its own
hub cache). Each file goes by content (sha256), so a worker that kept one from an earlier job is not sent it again.
No Ray here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from studio.copies import sha256_of

CHUNK = 32 * 1024 * 1024  # bytes per message when a file is sent or fetched


@dataclass(frozen=True)
class Part:
    """One file that travels: where it goes under the job's root on the worker, where it is here. `link`: the worker
    may place it as a link to its cache (an input no job changes); the job's own files are copies it may change."""

    dest: str  # e.g. workspace/datasets/ds/000.png, models/builtin/tiny/unet/config.json
    source: Path
    size: int
    sha256: str
    link: bool = True
    data: bytes | None = None  # the file as it was when the job was bundled (one the job's log still writes to)

    def read(self, offset: int, size: int) -> bytes:
        if self.data is not None:
            return self.data[offset:offset + size]
        with open(self.source, "rb") as f:
            f.seek(offset)
            return f.read(size)


@dataclass
class Bundle:
    parts: list[Part]
    folder: str  # the job's folder on the worker, under its root: workspace/runs/<name>, workspace/mining/<name>
    content: Callable[[str], dict]  # its request file's content for a worker whose job root is ROOT
    notes: list[str] = field(default_factory=list)  # what the job's log says about what travels
    events_at: int = 0  # bytes of the events file that travelled with the job: not relayed back again
    renamed: dict[str, str] = field(default_factory=dict)  # a path under the worker's job root -> the path here

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)


def _files(folder: Path, dest: str, *, top_only: bool = False, hidden: bool = False, link: bool = True) -> list[Part]:
    """The regular files of `folder` (not links; hidden ones only with `hidden`), as parts under `dest`."""
    found = sorted(folder.iterdir() if top_only else folder.rglob("*"))
    out = []
    for path in found:
        rel = path.relative_to(folder)
        if path.is_symlink() or not path.is_file() or (not hidden and any(p.startswith(".") for p in rel.parts)):
            continue
        out.append(_part(path, f"{dest}/{rel.as_posix()}", link))
    return out


def _part(path: Path, dest: str, link: bool = True) -> Part:
    return Part(dest, path, path.stat().st_size, sha256_of(path), link)


def _base(studio, model: str) -> tuple[list[Part], str, list[str]]:
    """A base model's files when they are here (its name on the worker), else (a hub id) its id, resolved there."""
    ref = studio.store.resolve(model)
    if ref.kind == "builtin":
        return _files(ref.path, f"models/builtin/{ref.path.name}"), model, []
    if ref.kind in ("folder", "file"):
        where = f"models/base/{ref.path.name}"
        parts = _files(ref.path, where) if ref.path.is_dir() else [_part(ref.path, where)]
        if Path(model).expanduser().is_absolute():  # a path here: by its name in the worker's models/base/
            return parts, ref.path.name, [f"base {model} travels as {ref.path.name} (the exported header names it so)"]
        return parts, model, []
    return [], model, [f"base {model} is resolved on the worker (its own hub cache or download)"]


def _named(studio, names, sub: str, find) -> tuple[list[Part], list[str]]:
    """LoRAs or embeddings by name: each file into the worker's models/<sub>/, named there by its file name when it
    was named by a path here."""
    parts, there = [], []
    for name in names:
        path = find(name)
        folder = next((f for f in studio.store.model_folders(sub) if path.is_relative_to(f.resolve())), None)
        rel = path.relative_to(folder.resolve()).as_posix() if folder is not None else path.name
        parts.append(_part(path, f"models/{sub}/{rel}"))
        there.append(name if folder is not None else path.name)
    return parts, there


# ---- a run ---------------------------------------------------------------------------------------------------------

def run_bundle(studio, run_dir: Path, *, resume: bool) -> Bundle:
    """What the run in `run_dir` needs on a worker, and the run.json the worker runs."""
    from studio.data.library import find_dataset
    from studio.models.clip import resolve_clip
    from studio.train import checkpoints
    from studio.train.config import RunConfig

    settings, parts, notes = studio.settings, [], []
    config = RunConfig.load(run_dir / "run.json")
    # 1. Every subject's dataset: its top-level pictures, captions, masks and notes (not the uploads kept beside)
    renamed = {}
    for subject in [config.dataset] + [s.dataset for s in config.extra_subjects]:
        folder = find_dataset(settings, subject)
        name = folder.name
        if folder.parent != settings.datasets_dir.resolve():  # a folder named by its path: by its name there
            renamed[subject] = name
        parts += _files(folder, f"workspace/datasets/{name}", top_only=True)
    remote = replace(config, device="", gpus="", processes=0,  # one worker, one GPU: the worker's own device
                     dataset=renamed.get(config.dataset, config.dataset),
                     extra_subjects=[replace(s, dataset=renamed.get(s.dataset, s.dataset))
                                     for s in config.extra_subjects])
    if renamed:
        notes.append(f"datasets named by their folder on the worker: {', '.join(renamed.values())}")
    # 2. The base: its files when they are here, else (a hub id) resolved on the worker
    base, model, said = _base(studio, config.model)
    parts, remote, notes = parts + base, replace(remote, model=model), notes + said
    # 3. A CLIP of models/clip/ it scores with (a builtin one is built there, a hub id resolved there)
    if config.clip_model and not config.clip_model.startswith("builtin:"):
        clip = resolve_clip(settings, config.clip_model)
        if clip.local:
            folder = Path(clip.source)
            parts += _files(folder, f"models/clip/{folder.name}")
            remote = replace(remote, clip_model=folder.name)
    # 4. The run it continues: that run's last epoch weights
    if config.continue_from:
        other = settings.runs_dir / config.continue_from
        last = checkpoints.epoch_file(other, checkpoints.saved_epochs(other)[-1])
        parts.append(_part(last, f"workspace/runs/{config.continue_from}/{last.relative_to(other).as_posix()}"))
    # 5. Resuming: its last checkpoint, what a resume reads (its run.json goes with the start: the config above)
    folder = f"workspace/runs/{config.name}"
    kept = checkpoints.latest_checkpoint(run_dir) if resume else None
    if kept is not None:
        parts += _files(kept.folder, f"{folder}/checkpoints/{kept.folder.name}", link=False)  # (the run's own)
    return Bundle(parts, folder, lambda root: remote.to_json(), notes)


def run_kept(run_dir: Path) -> str:
    """Where a run sent again goes on from, in words ("" when from the start: no checkpoint was copied yet)."""
    from studio.train import checkpoints

    last = checkpoints.latest_checkpoint(run_dir)
    return f"step {last.step}" if last else ""


# ---- a mining job ----------------------------------------------------------------------------------------------

def mining_bundle(studio, job_dir: Path, *, resume: bool) -> Bundle:
    """What the mining job in `job_dir` needs on a worker, and the mine.json the worker runs. A job that decided
    candidates already takes where it stands, its logs first trimmed to its last decided candidate (as the job's own
    continue does), so the worker goes on exactly where it was. `resume` (the kinds' one signature) decides nothing
    here: a new job has no state on disk, and a job sent again after a lost worker must take its state either way."""
    from studio.mine import disk
    from studio.mine.jobs import read_request

    request, parts, notes = read_request(job_dir), [], []
    folder = f"workspace/mining/{request.name}"
    # 1. Its seed face, kept in its folder (or, from an older job, a path)
    if request.seed_face:
        path = job_dir / request.seed_face if (job_dir / request.seed_face).is_file() else Path(request.seed_face)
        parts.append(_part(path, f"{folder}/{path.name}", link=False))
        request = replace(request, seed_face=path.name)
    # 2. What it mines: the pictures (every file the folder holds, as the job reads them), or what generates them
    candidates = None
    if request.candidates is not None:
        source = Path(request.candidates)
        candidates = f"inputs/{source.name}"
        parts += _files(source, candidates, hidden=True) if source.is_dir() else [_part(source, candidates)]
    else:
        base, model, said = _base(studio, request.model or studio.store.default_model)
        loras, lora_names = _named(studio, [c.name for c in request.loras], "lora", studio.store.lora_file)
        embeddings, embedding_names = _named(studio, request.embeddings, "embeddings", studio.store.embedding_file)
        parts, notes = parts + base + loras + embeddings, notes + said
        request = replace(request, model=model, embeddings=tuple(embedding_names),
                          loras=tuple(replace(c, name=n) for c, n in zip(request.loras, lora_names)))
    if request.upscaler:
        from studio.generate.upscale import LANCZOS, check_upscaler_name

        if check_upscaler_name(request.upscaler) != LANCZOS:  # a model of models/upscale/ (Lanczos needs none)
            path = studio.store.upscaler_file(request.upscaler)
            parts.append(_part(path, f"models/upscale/{path.name}"))
            request = replace(request, upscaler=path.stem)
    # 3. Where it stands: the decided candidates, what the worker's continue reads
    saved, events_at = disk.read_state_json(job_dir), 0
    if saved is not None:
        disk.trim_logs(job_dir, saved["step"])
        for name in (disk.STATE, disk.ENCODINGS, disk.EVENTS):  # as they are now (the driver's log goes on here)
            if (job_dir / name).is_file():
                data = (job_dir / name).read_bytes()
                parts.append(Part(f"{folder}/{name}", job_dir / name, len(data), hashlib.sha256(data).hexdigest(),
                                  False, data))
                events_at = len(data) if name == disk.EVENTS else events_at

    def content(root: str) -> dict:  # (the pictures it mines, where they are on the worker)
        return (request if candidates is None else replace(request, candidates=Path(root) / candidates)).to_json()

    return Bundle(parts, folder, content, notes, events_at, {candidates: str(request.candidates)} if candidates else {})


def mining_kept(job_dir: Path) -> str:
    from studio.mine import disk

    saved = disk.read_state_json(job_dir)
    return f"candidate {saved['next']}" if saved and saved["step"] else ""


@dataclass(frozen=True)
class Sent:
    """How a kind's job goes to a worker: its request file, the child that runs it (there as here), its events file,
    what travels with it, and where it goes on from when it is sent again."""

    request: str
    child: str
    events: str
    bundle: Callable  # (studio, folder, resume=) -> Bundle
    kept: Callable  # (folder) -> where it goes on from, in words ("" from the start)
    state: str  # what it goes on from, in words


KINDS = (Sent("run.json", "studio.train.child", "metrics.jsonl", run_bundle, run_kept, "the checkpoint"),
         Sent("mine.json", "studio.mine.child", "events.jsonl", mining_bundle, mining_kept, "the decided candidates"))


def sent_kind(folder: Path) -> Sent:
    """How the job in `folder` goes to a worker, told by its request file."""
    found = [sent for sent in KINDS if (Path(folder) / sent.request).is_file()]
    if not found:
        raise ValueError(f"`folder` {str(folder)!r} holds no job that can go to the workers (no "
                         f"{' or '.join(s.request for s in KINDS)})")
    return found[0]
