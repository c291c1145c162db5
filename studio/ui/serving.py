"""What the web server may hand out: generated outputs, validation samples (of runs and sweeps), dataset pictures
(blurred, as trained), evaluation reports, sweep grids and charts, and exports the user asked for. Never originals,
masks, encodings, caches, run state or models.

gradio serves only what a callback returns (copied into its own cache) and its uploads; nothing of the workspace is
reachable by URL otherwise (launch() allows no folder). Callbacks pass every workspace file they return through
`served()`, which checks it against the rules below, so a slip cannot hand out a private file. The rules are the
session's user's: their workspace is the only one a callback's settings name.

On a studio of several users a URL is theirs too: gradio names the folder of its copy by a hash of the content, so
each copy handed out (and each upload, recorded by studio.ui.gate) is noted with its user (`hand_out`), and the gate
answers another user's request for it as it answers a file that is not there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

from studio.copies import served_folder
from studio.data.library import IMAGE_SUFFIXES

PICTURES = tuple(IMAGE_SUFFIXES)
# workspace sub-folder -> the files under it that may be served: (depth below the sub-folder, allowed suffixes).
# depth None: any depth. Hidden names (a leading ".") are never served at any depth.
_RULES = {
    "outputs": (None, PICTURES),  # outputs/<day>/NNNNN-seed.png
    "evaluations": (None, PICTURES + (".csv", ".json")),  # grids, charts, images, report.csv/json
    "exports": (1, (".zip",)),  # exports/<dataset>.zip (without the originals unless the CLI asked)
    "datasets": (2, PICTURES),  # datasets/<name>/<picture>: the training pictures, blurred as trained
    "runs": (None, PICTURES),  # only under runs/<name>/samples/ (see below)
    "mining": (None, PICTURES),  # mined candidates and group faces (generated or the user's folder)
    "sweeps": (None, PICTURES),  # sweeps/<name>/grid.png and charts, and its runs' samples (see below)
}
_NEVER = (".mask.png",)  # bystander masks beside dataset pictures: what they mark is private


def servable(workspace: Path, path: Path) -> bool:
    """Whether `path` is a file the web studio may hand out, by the rules above."""
    workspace, path = Path(os.path.abspath(workspace)), Path(os.path.abspath(path))
    if not path.is_file() or not path.is_relative_to(workspace):
        return False
    parts = path.relative_to(workspace).parts
    if len(parts) < 2 or any(p.startswith(".") for p in parts) or path.name.lower().endswith(_NEVER):
        return False
    rule = _RULES.get(parts[0])
    if rule is None:
        return False
    depth, suffixes = rule
    if depth is not None and len(parts) - 1 != depth:
        return False
    if parts[0] == "runs" and (len(parts) < 4 or parts[2] != "samples"):
        return False
    if parts[0] == "sweeps" and len(parts) != 3 and (len(parts) < 6 or parts[2] != "runs" or parts[4] != "samples"):
        return False
    return path.suffix.lower() in suffixes


def served(settings, path) -> str:
    """`path` as something a gradio output may carry: checked against the rules (ValueError otherwise), and
    copied beside gradio's cache when it lies where gradio would not take it from (a workspace outside the
    working folder)."""
    path = Path(path)
    if not servable(settings.workspace_dir, path):
        raise ValueError(f"{path.name} is not something the web studio hands out")
    if Path(os.path.abspath(path)).is_relative_to(Path.cwd()):
        return hand_out(settings, str(path))
    stat = path.stat()
    copy = _copy_path(settings, path, f"{stat.st_size}|{stat.st_mtime_ns}", path.name)
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, copy)
    return hand_out(settings, str(copy))


def served_picture(settings, image, source, what: str) -> str:
    """A picture made from workspace file `source` (a mask overlay, the painter's background) as a PNG among the
    served copies of `source`, so Delete subject finds it (and gradio's copy of it) with the file's own copies."""
    import io

    source = Path(source)
    if not servable(settings.workspace_dir, source):
        raise ValueError(f"{source.name} is not something the web studio hands out")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    data = buffer.getvalue()
    copy = _copy_path(settings, source, hashlib.sha256(data).hexdigest(), f"{source.stem}-{what}.png")
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, copy)
    return hand_out(settings, str(copy))


def _copy_path(settings, source: Path, version: str, name: str) -> Path:
    """<served copies of source>/<version key>/<name>: a changed file gets a new copy, never a stale one."""
    return served_folder(settings, source) / hashlib.sha256(version.encode()).hexdigest()[:24] / name


# ---- whose copies: a studio of several users ---------------------------------------------------------------------

_handed: dict[str, set[str]] = {}  # gradio's copy folder (a hash of the content) -> the users it was handed to
_hashes: OrderedDict = OrderedDict()  # (path, size, mtime) -> gradio's hash of it: a file shown again is not re-read
_handed_lock = threading.Lock()
_KEEP_HASHES = 10_000


def hand_out(settings, path: str) -> str:
    """Note that `path` goes to the session's user (on a studio of several users), then return it."""
    if settings.several_users:
        from gradio.processing_utils import hash_file  # gradio's name for the folder of its copy

        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        with _handed_lock:
            folder = _hashes.get(key)
        if folder is None:
            folder = hash_file(path)
        with _handed_lock:
            _hashes[key] = folder
            _hashes.move_to_end(key)
            while len(_hashes) > _KEEP_HASHES:
                _hashes.popitem(last=False)
            _handed.setdefault(folder, set()).add(settings.user)
    return path


def note_upload(folder: str, user: str) -> None:
    """An upload (gradio's folder for it) belongs to the user who sent it."""
    with _handed_lock:
        _handed.setdefault(folder, set()).add(user)


def handed_to(folder: str) -> set[str]:
    """Whom gradio's copy folder `folder` was handed to (empty: nobody's in particular, such as the page's examples)."""
    with _handed_lock:
        return set(_handed.get(folder, ()))


def remove_handed(settings, user: str) -> int:
    """Remove gradio's copies handed to `user` alone (uploads never used among them): the web's part of removing a
    user. Returns how many files went."""
    with _handed_lock:
        folders = [f for f, users in _handed.items() if users == {user}]
        for f in folders:
            del _handed[f]
    removed = 0
    for name in folders:
        folder = Path(settings.gradio_dir) / name
        if folder.is_dir() and not folder.is_symlink():
            removed += sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder)
    return removed
