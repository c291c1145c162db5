"""Atomic file writes and unique output names: a crash never leaves a half-written file where a good one was, a full or
read-only disk is a one-line error naming what could not be written where, and what a killed writer left behind
(its temporary files and folders, named after its process id) is removed at the next start."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

# Temporary names are ".<target name>.<pid>-<kind>-<random><suffix>", so a cleaner can tell whose they were.
TEMP_KINDS = ("tmp", "old", "building", "deleted")
_TEMP = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-(?P<kind>" + "|".join(TEMP_KINDS) + r")-[^/]*$")
# Names earlier versions used (no process id): removed once they are a day old.
_LEGACY = re.compile(r"^\..+\.(tmp.*|old|building-.+|deleted-.+|replaced-\d+)$")
_DISK_ERRORS = {errno.ENOSPC: "no space left on the disk", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "the disk is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied"}


class WriteError(ValueError):
    """A file could not be written (full disk, read-only folder, no permission): says what and where, in one line."""


def write_error(path: Path, error: Exception) -> WriteError | None:
    """The WriteError for a failed write of `path`, or None when `error` is not about the disk. torch reports a full
    disk as a RuntimeError ("PytorchStreamWriter failed writing file"), so that is recognised too."""
    path = Path(path)
    reason = _DISK_ERRORS.get(getattr(error, "errno", None))
    if reason is None and isinstance(error, RuntimeError) and "write" in str(error).lower():
        folder = next((p for p in [path.parent, *path.parents] if p.exists()), Path("/"))
        if not os.access(folder, os.W_OK):
            reason = "the folder is not writable"
        elif shutil.disk_usage(folder).free < 64 * 1024**2:
            reason = "no space left on the disk"
    if reason is None:
        return None
    return WriteError(f"could not write {path.name} in {path.parent}: {reason}")


@contextmanager
def writing(path: Path):
    """Turn disk errors while writing `path` into a WriteError (other errors pass through unchanged)."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        if (found := write_error(path, e)) is not None:
            raise found from e
        raise


def temp_prefix(path: Path, kind: str) -> str:
    if kind not in TEMP_KINDS:
        raise ValueError(f"`kind` must be one of {', '.join(TEMP_KINDS)} but is {kind!r}")
    return f".{Path(path).name}.{os.getpid()}-{kind}-"


def temp_dir(path: Path, kind: str = "tmp") -> Path:
    """A new folder beside `path` (mode 0755: what the studio writes is the user's to share), named so that
    clean_stale_files can remove it if this process dies."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        made = Path(tempfile.mkdtemp(prefix=temp_prefix(path, kind), dir=path.parent))
    made.chmod(0o755)
    return made


@contextmanager
def atomic_path(path: Path, mode: int = 0o644):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename (with permissions `mode`),
    on error it is removed."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path, "tmp"), suffix=path.suffix, dir=path.parent)
        os.close(fd)
    try:
        with writing(path):
            yield Path(tmp)
            os.chmod(tmp, mode)  # mkstemp makes files private (0600); what the studio writes is the user's to share
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: Path):
    """Yield a temporary folder beside `path`; on success it takes `path`'s place (an old one is swapped out first
    and removed after), on error it is removed. Readers see the old folder or the new one, never half of one."""
    path = Path(path)
    tmp = temp_dir(path)
    try:
        with writing(path):
            yield tmp
            old = None
            if path.exists():
                old = temp_dir(path, "old")
                os.replace(path, old / path.name)
            os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def inside(folder: Path, name: str) -> Path | None:
    """`folder / name` when `name` stays inside `folder` (no `..`, not absolute), else None. Symbolic links inside
    the folder may point anywhere: a user who links an A1111 models folder in means it."""
    candidate = Path(os.path.normpath(Path(folder) / name))
    return candidate if name and candidate.is_relative_to(os.path.normpath(folder)) else None


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    with atomic_path(path, mode) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def reserve_unique(folder: Path, stem: str, suffix: str) -> Path:
    """Create and return `folder/stem-N.suffix` with the lowest free N; creating it exclusively means two
    writers never get the same name and an existing file is never overwritten. Write it with fill_reserved."""
    with writing(Path(folder) / f"{stem}{suffix}"):
        folder.mkdir(parents=True, exist_ok=True)
        n = len(list(folder.glob(f"*{suffix}")))
        while True:
            candidate = folder / f"{n:05d}-{stem}{suffix}"
            try:
                fd = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                n += 1
                continue
            os.close(fd)
            return candidate


@contextmanager
def fill_reserved(path: Path):
    """atomic_path for a name reserve_unique made: if the write fails, the empty reservation goes too, so no
    0-byte file is left among the outputs."""
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def clean_stale_files(root: Path) -> list[Path]:
    """Remove the temporary files and folders that writers killed mid-write left under `root` (those of processes
    that are no longer running; legacy names once a day old). Returns what was removed."""
    removed = []
    if not Path(root).is_dir():
        return removed
    day_ago = time.time() - 86400
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            if not name.startswith("."):
                continue
            path = Path(folder) / name
            match = _TEMP.match(name)
            if match:
                stale = not _running(int(match["pid"]))
            else:
                stale = _LEGACY.match(name) is not None and path.lstat().st_mtime < day_ago
            if stale:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                removed.append(path)
        dirs[:] = [d for d in dirs if (Path(folder) / d).exists()]
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True
