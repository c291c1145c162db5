"""Delete subject: everything the studio holds of the person (or pet, or mined identity) one dataset is of, in one
action: the dataset (pictures, captions, masks, kept uploads), every run trained on it (checkpoints, epochs, samples,
its exports in models/), evaluations measured against it or with its models, its exported zips, and the caches
derived from its pictures (face detections, training latents and captions, model hashes); then the web's copies of
what was removed (studio.copies: gradio's upload and output cache and the served copies, found by content, the
uploads the dataset was prepared from included).

Pictures generated with the subject's LoRA (workspace/outputs/) are the user's own pictures: they are listed, and
removed only when asked (`outputs=True`). Nothing else outside workspace/ and models/ is touched and no symbolic link
is followed: a link is removed as a link, and what it points to is listed as left alone.

Each removal is atomic: a file is unlinked, a folder is first renamed to a hidden trash name beside it (so it leaves
every listing at once) and then removed; a crash in between leaves only that trash, which the next start cleans
(studio.fileio.clean_stale_files). The result lists what was removed and what was left, and why.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from studio.copies import copy_sizes, remove_copies, sha256_of
from studio.data.facecache import cached_entries, dataset_hashes
from studio.data.library import UPLOADS, dataset_folder, list_datasets
from studio.fileio import temp_dir

DATASET_EXPORTS = ("{name}.zip", "{name}-kohya.zip")  # what export_dataset writes to workspace/exports/


@dataclass(frozen=True)
class Item:
    path: Path
    what: str  # "dataset", "run", "LoRA", "face cache", ... or, for what is kept, why


@dataclass
class SubjectFiles:
    """What deleting a subject removes (`remove`) and what it leaves (`keep`, each with its reason)."""

    dataset: str
    remove: list[Item] = field(default_factory=list)
    keep: list[Item] = field(default_factory=list)
    loras: list[Path] = field(default_factory=list)  # the exported LoRAs among `remove`, to unload from the cache
    copies: list[Path] = field(default_factory=list)  # the web's copies removed with them (once done)

    def lines(self, done: bool) -> list[str]:
        verb = "removed" if done else "would remove"
        out = [f"{verb} {item.what}: {item.path}" for item in self.remove]
        out += [f"kept {item.path}: {item.what}" for item in self.keep]
        if done:
            out.append(f"removed {len(self.copies)} copies the web studio held of them (uploads, pictures it showed, "
                       f"downloads)")
        else:
            out.append("would remove the web studio's copies of them too (uploads, pictures it showed, downloads)")
        return out


def _inside(path: Path, roots: list[Path]) -> bool:
    """Whether `path` lies under one of `roots` by its name, without following any link on the way."""
    absolute = Path(os.path.abspath(path))
    return any(absolute.is_relative_to(Path(os.path.abspath(root))) for root in roots)


def _walk_files(root: Path, suffixes: tuple[str, ...], *, hidden: bool = False):
    """Files under `root` with one of `suffixes`, never entering a linked folder (nor, unless `hidden`, a hidden one)."""
    if not root.is_dir() or root.is_symlink():
        return
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if hidden or not d.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(suffixes):
                yield Path(folder) / name


def _header(path: Path) -> dict:
    """A safetensors file's metadata ({} when it has none or is not one)."""
    try:
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 0 < length < 100_000_000:
                return {}
            return json.loads(f.read(length)).get("__metadata__") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def _read_json(path: Path) -> dict | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def subject_files(studio, dataset: str, *, outputs: bool = False) -> SubjectFiles:
    """Find everything of dataset `dataset`'s subject (a name under workspace/datasets/); nothing is removed. A run
    on it that is still going is refused: cancel it first."""
    from studio.train.jobs import list_runs

    settings = studio.settings
    workspace, models = settings.workspace_dir, settings.own_models_dir  # (a user: models/users/<user>/ only)
    roots = [workspace, models]
    folder = dataset_folder(settings, dataset)
    name = folder.name
    if not (folder.is_dir() or folder.is_symlink()):
        known = ", ".join(d.name for d in list_datasets(settings)) or "none yet"
        raise ValueError(f"`dataset` {dataset!r} not found in {settings.datasets_dir} (datasets: {known})")
    plan = SubjectFiles(name)
    # What names this dataset in a run.json, an export's header or an evaluation's request: its name, or its folder
    where = {name, str(folder), os.path.abspath(folder), str(folder.resolve())}

    def names_it(value) -> bool:
        if not value:
            return False
        text = str(value).strip()
        return text in where or os.path.abspath(os.path.expanduser(text)) in where

    # 1. The dataset folder (a link: the link only), and the faces found in its pictures and uploads
    shas: set[str] = set()
    if folder.is_symlink():
        plan.remove.append(Item(folder, "dataset (a link)"))
        plan.keep.append(Item(folder.resolve(), "what the dataset link points to; links are not followed"))
    else:
        shas = dataset_hashes(folder)
        plan.remove.append(Item(folder, "dataset"))
    plan.remove += [Item(path, "face cache") for path in cached_entries(workspace / ".cache" / "faces", shas)]

    # 2. Runs trained on it (none may be running), and whatever models/ holds that was trained on it
    def names_in(meta: dict) -> bool:
        """Whether a header (or studio_training.json) names the dataset: `studio.dataset`, or any of the datasets of a
        run with several subjects (`studio.datasets`, JSON)."""
        try:
            more = json.loads(meta.get("studio.datasets") or "[]")
        except (TypeError, ValueError):
            more = []
        return names_it(meta.get("studio.dataset")) or any(names_it(d) for d in more if isinstance(d, str))

    every_run = list_runs(studio)
    runs = [r for r in every_run
            if any(names_it(d) for d in [r.config.dataset, *(s.dataset for s in r.config.extra_subjects)])]
    while True:  # and runs that started from one of their LoRAs ("add a subject"): the subject is in those weights
        names = {r.name for r in runs}
        more = [r for r in every_run if r.name not in names and r.config.continue_from in names]
        if not more:
            break
        runs += more
    busy = [r.name for r in runs if r.active]
    if busy:
        raise ValueError(f"run {busy[0]!r} is training on dataset {name!r}: cancel it first, then delete the subject")
    plan.remove += [Item(r.run_dir, "run") for r in runs]
    run_names = {r.name for r in runs}
    exported: set[str] = set()  # stems of what Generate and evaluations name the subject's models by
    for kind, sub in (("LoRA", "lora"), ("embedding", "embeddings"), ("model", "base")):
        for path in _walk_files(models / sub, (".safetensors",)):
            meta = _header(path)
            if names_in(meta) or (meta.get("studio.name") in run_names
                                                          and "studio.dataset" not in meta):
                plan.remove.append(Item(path, f"exported {kind}"))
                exported.add(path.stem)
                if kind == "LoRA":
                    plan.loras.append(path)
                if path.is_symlink():
                    plan.keep.append(Item(path.resolve(), "what a removed link pointed to; links are not followed"))
    base = models / "base"
    for meta_file in sorted(base.glob("*/studio_training.json")) if base.is_dir() else []:
        meta = _read_json(meta_file) or {}
        if names_in(meta) and not meta_file.parent.is_symlink():
            plan.remove.append(Item(meta_file.parent, "exported model (diffusers folder)"))
            exported.add(meta_file.parent.name)

    # 3. Evaluations against it or of its models, the dataset's exported zips, caches made from it
    for report in sorted((workspace / "evaluations").glob("*/report.json")):
        request = (_read_json(report) or {}).get("request") or {}
        used = {Path(str(x)).stem for v in request.get("variants") or [] if isinstance(v, dict)
                for x in [*(lc.get("name") if isinstance(lc, dict) else lc for lc in v.get("loras") or []),
                          *(v.get("embeddings") or []), v.get("model") or ""] if x}
        if (names_it(request.get("reference")) or any(names_it(a) for a in request.get("also_against") or [])
                or used & exported):
            plan.remove.append(Item(report.parent, "evaluation"))
    for pattern in DATASET_EXPORTS:
        zipped = workspace / "exports" / pattern.format(name=name)
        if zipped.is_file() or zipped.is_symlink():
            plan.remove.append(Item(zipped, "dataset export"))
    for path in _walk_files(workspace / ".cache" / "train", (".safetensors",)):
        if path.name.startswith(("latents-", "text-")):
            header = _header(path)
            made_from = header.get("studio.dataset")
            if made_from is None or names_in(header):  # a cache of unknown origin may be theirs: caches regrow
                plan.remove.append(Item(path, "training cache" if made_from else "training cache (origin unknown)"))

    # 4. Pictures made with the subject's models: the user's, listed (removed only when asked)
    if exported:
        for path in _walk_files(settings.outputs_dir, (".png",)):
            if _made_with(path, exported):
                (plan.remove if outputs else plan.keep).append(
                    Item(path, "generated picture" if outputs else "made with the subject's model; your picture "
                         "(remove it too with --with-outputs)"))

    # Never anything outside workspace/ and models/, whatever a name or header said
    outside = [i for i in plan.remove if not _inside(i.path, roots)]
    plan.remove = [i for i in plan.remove if _inside(i.path, roots)]
    plan.keep += [Item(i.path, "outside workspace/ and models/: left alone") for i in outside]
    return plan


def _made_with(path: Path, stems: set[str]) -> bool:
    """Whether a generated PNG's parameters name one of the models `stems` (LoRA tag or hash, TI, model)."""
    from PIL import Image

    from studio.generate.parameters import parse_parameters

    try:
        with Image.open(path) as im:
            text = im.info.get("parameters") or ""
    except OSError:
        return False
    if not text:
        return False
    parsed = parse_parameters(text)
    named = {part.split(":")[0].strip() for part in parsed.get("Lora hashes", "").split(",") if part.strip()}
    named |= {t.strip() for t in parsed.get("TI", "").split(",") if t.strip()}
    named.add(parsed.get("Model", "").strip())
    return bool(named & stems) or any(f"<lora:{stem}:" in parsed.get("prompt", "") for stem in stems)


def delete_subject(studio, dataset: str, *, outputs: bool = False) -> SubjectFiles:
    """Remove everything subject_files finds (each file or folder atomically), unload the subject's LoRAs from the
    model cache, drop the model hashes of removed files, and return what was removed and kept."""
    plan = subject_files(studio, dataset, outputs=outputs)
    for held in studio.cache.holdings():  # a LoRA still loaded in memory goes first
        if held.kind == "base":
            for path in plan.loras:
                studio.cache.unload_lora(held.model_id, path)
    resolved = [i.path.resolve() for i in plan.remove if not i.path.is_symlink()]
    sources, hashes = copied(studio.settings, [i.path for i in plan.remove],
                             [i.path for i in plan.remove if i.what == "dataset"])  # read before the files go
    for item in plan.remove:
        remove_item(item.path)
    studio.store.hashes.forget(resolved)  # entries name files by path; the names may be the subject's
    plan.copies = remove_copies(studio.settings, sources, hashes)
    return plan


def copied(settings, paths: list[Path], datasets: list[Path]) -> tuple[list[Path], dict[int, set[str]]]:
    """What the web may hold copies of: every file of `paths` (files or folders, about to be removed: their served
    copies are found by name), the content of those a copy has the size of, and the uploads `datasets` were prepared
    from (UPLOADS)."""
    sizes = copy_sizes(settings)
    sources, hashes = [], {}
    for item in paths:
        files = [item] if item.is_file() else list(_walk_files(item, ("",), hidden=True))
        for path in files:
            if path.is_symlink():
                continue
            sources.append(path)
            size = path.stat().st_size
            if size in sizes:
                hashes.setdefault(size, set()).add(sha256_of(path))
    for dataset in datasets:
        for upload in _read_json_list(dataset / UPLOADS):
            if isinstance(upload, dict) and isinstance(upload.get("size"), int) and upload.get("sha256"):
                hashes.setdefault(upload["size"], set()).add(str(upload["sha256"]))
    return sources, hashes


def _read_json_list(path: Path) -> list:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return found if isinstance(found, list) else []


def remove_item(path: Path) -> None:
    """One file or link unlinked, or one folder renamed out of sight and then removed (links inside it are removed
    as links: shutil.rmtree never follows them)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        trash = temp_dir(path, "deleted")
        os.replace(path, trash / path.name)
        shutil.rmtree(trash)
