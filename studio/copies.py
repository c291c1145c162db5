"""The web's copies of workspace files: the studio's served copies (one folder per workspace file, pictures made from
it included), gradio's upload and output cache; cleaned by age and kept under a size, and removed by content when
Delete subject removes what they copy. Plain files and folders: the web studio schedules the cleaning, Delete subject
(web or command line) removes the copies of a subject.

gradio keeps a copy of everything a callback returned and everything uploaded, under a folder named by a hash of
its own (seeded, so not the file's sha256): those copies are found by their content, never by their names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

_CHUNK = 1 << 20


def copy_folders(settings) -> list[Path]:
    """Where the web's copies lie: gradio's cache and the studio's served copies."""
    return [settings.gradio_dir, settings.served_dir]


def served_folder(settings, source: Path) -> Path:
    """The folder of the served copies of workspace file `source` (and of pictures made from it): one per file, so
    removing a file removes its copies by name as well as by content."""
    key = hashlib.sha256(os.path.abspath(source).encode()).hexdigest()[:32]
    return settings.served_dir / key


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _sha256_or_none(path: Path) -> str | None:
    try:
        return sha256_of(path)
    except FileNotFoundError:  # gradio's own cleaning took it meanwhile
        return None


@dataclass(frozen=True)
class Copy:
    path: Path
    size: int
    mtime: float


def _copies(settings) -> list[Copy]:
    """Every file under the copy folders (links are never followed, and never counted)."""
    out = []
    for root in copy_folders(settings):
        if not root.is_dir() or root.is_symlink():
            continue
        for folder, _, files in os.walk(root, followlinks=False):
            for name in files:
                path = Path(folder) / name
                try:
                    st = path.lstat()
                except FileNotFoundError:  # removed by gradio meanwhile
                    continue
                if not path.is_symlink():
                    out.append(Copy(path, st.st_size, max(st.st_mtime, st.st_ctime)))
    return out


def _unlink(path: Path, roots: list[Path]) -> None:
    """Remove a copy, and the folders made for it (gradio's hash folder, a served copy's) once they are empty."""
    path.unlink(missing_ok=True)
    for parent in path.parents:
        if parent in roots or not any(parent.is_relative_to(r) for r in roots):
            break
        try:
            parent.rmdir()
        except OSError:  # not empty
            break


@dataclass
class Cleaned:
    removed: list[Path] = field(default_factory=list)
    kept_bytes: int = 0


def clean_copies(settings, *, room: int = 0, now: float | None = None) -> Cleaned:
    """Remove copies older than `settings.web_copies_max_age_s`, then the oldest until they hold at most
    `settings.web_copies_mb` less `room` bytes (what an upload about to arrive needs)."""
    now = time.time() if now is None else now
    limit = settings.web_copies_mb * 1024**2 - room
    copies = sorted(_copies(settings), key=lambda c: c.mtime)
    done, roots = Cleaned(), copy_folders(settings)
    total = sum(c.size for c in copies)
    for c in copies:
        if now - c.mtime > settings.web_copies_max_age_s or total > limit:
            _unlink(c.path, roots)
            done.removed.append(c.path)
            total -= c.size
    done.kept_bytes = total
    return done


def remove_copies(settings, sources: list[Path], hashes: dict[int, set[str]]) -> list[Path]:
    """Remove the served copies of `sources` (by name) and every copy whose content is one of `hashes` (size ->
    sha256s; only files of those sizes are read). Returns what was removed."""
    removed, hashes = [], {size: set(shas) for size, shas in hashes.items()}
    for source in sources:
        folder = served_folder(settings, source)
        if folder.is_dir() and not folder.is_symlink():
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
                hashes.setdefault(path.stat().st_size, set()).add(sha256_of(path))
                removed.append(path)
            shutil.rmtree(folder)
    roots = copy_folders(settings)
    for c in _copies(settings):
        if c.size in hashes and _sha256_or_none(c.path) in hashes[c.size]:
            _unlink(c.path, roots)
            removed.append(c.path)
    return removed


def copy_sizes(settings) -> set[int]:
    """The sizes of the copies there are now: a file of another size has no copy, so it need not be hashed."""
    return {c.size for c in _copies(settings)}
