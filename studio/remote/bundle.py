"""What travels with a run sent to a remote worker: its run.json (as the worker runs it), the pictures, captions and
masks of every subject's dataset, the base model's files when they are on this machine (a builtin, a folder or file
of models/base/, a path), the run it continues ("add a subject": its last epoch weights) and, when it resumes, its
last checkpoint. A hub id travels as its id and is resolved on the worker (its own hub cache). Each file goes by
content (sha256), so a worker that kept one from an earlier job is not sent it again. No Ray here."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from studio.copies import sha256_of
from studio.train import checkpoints

CHUNK = 32 * 1024 * 1024  # bytes per message when a file is sent or fetched


@dataclass(frozen=True)
class Part:
    """One file that travels: where it goes under the job's folder on the worker, where it is here."""

    dest: str  # e.g. workspace/datasets/ds/000.png, models/builtin/tiny/unet/config.json
    source: Path
    size: int
    sha256: str


@dataclass
class Bundle:
    parts: list[Part]
    config: object  # the RunConfig the worker runs (device choices its own, a path-named dataset or base renamed)
    notes: list[str]  # what the run's log says about what travels

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)


def _files(folder: Path, dest: str, *, top_only: bool = False) -> list[Part]:
    """The regular files of `folder` (not hidden ones, nor links), as parts under `dest`."""
    found = sorted(folder.iterdir() if top_only else folder.rglob("*"))
    out = []
    for path in found:
        rel = path.relative_to(folder)
        if path.is_symlink() or not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        out.append(Part(f"{dest}/{rel.as_posix()}", path, path.stat().st_size, sha256_of(path)))
    return out


def run_bundle(studio, config, run_dir: Path, *, resume: bool) -> Bundle:
    """What run `config` (in `run_dir`) needs on a worker, and the config the worker runs."""
    from studio.data.library import find_dataset

    settings, parts, notes = studio.settings, [], []
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
    ref = studio.store.resolve(config.model)
    if ref.kind == "builtin":
        parts += _files(ref.path, f"models/builtin/{ref.path.name}")
    elif ref.kind in ("folder", "file"):
        where = f"models/base/{ref.path.name}"
        parts += _files(ref.path, where) if ref.path.is_dir() else [
            Part(where, ref.path, ref.path.stat().st_size, sha256_of(ref.path))]
        if Path(config.model).expanduser().is_absolute():  # a path here: by its name in the worker's models/base/
            remote = replace(remote, model=ref.path.name)
            notes.append(f"base {config.model} travels as {ref.path.name} (the exported header names it so)")
    else:
        notes.append(f"base {config.model} is resolved on the worker (its own hub cache or download)")
    # 3. The run it continues: that run's last epoch weights
    if config.continue_from:
        other = settings.runs_dir / config.continue_from
        last = checkpoints.epoch_file(other, checkpoints.saved_epochs(other)[-1])
        parts.append(Part(f"workspace/runs/{config.continue_from}/{last.relative_to(other).as_posix()}", last,
                          last.stat().st_size, sha256_of(last)))
    # 4. Resuming: its last checkpoint, what a resume reads (its run.json goes with the start: the config above)
    kept = checkpoints.latest_checkpoint(run_dir) if resume else None
    if kept is not None:
        parts += _files(kept.folder, f"workspace/runs/{config.name}/checkpoints/{kept.folder.name}")
    return Bundle(parts, remote, notes)
