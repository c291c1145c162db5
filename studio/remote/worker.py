"""The worker's side of a remote job: a Ray actor (one per job, holding the GPU it asked for) that receives the
job's files into a folder of its own, runs the job's child there exactly as the studio would run it locally
(`python -m studio.train.child FOLDER ...` for a run, `studio.mine.child` for a mining job), and answers the
driver's polls with what the child wrote since (events, log lines, its status, the files it made or changed), the
files' bytes when asked, and a stop (the child's cancel file).

Files it received are kept by content in a cache of the worker box ($STUDIO_WORKER_CACHE, default
~/.cache/likeness-studio/blobs), so a base or a dataset sent once is not sent again (an input is placed as a link to
that cache, a job's own file as a copy it may change); the job's folder goes when the job ends. The child dies with
the actor (PR_SET_PDEATHSIG): a lost worker leaves no work behind.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import ray

from studio.copies import sha256_of
from studio.joblog import CANCEL_FILE, LOG_FILE, read_status
from studio.ranks import _die_with_parent
from studio.remote.bundle import CHUNK

CACHE_ENV = "STUDIO_WORKER_CACHE"
KEPT = ("status.json", LOG_FILE, CANCEL_FILE, "ending.json")  # a job folder's files that are not its results


def _cache() -> Path:
    folder = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "likeness-studio" / "blobs")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _place(blob: Path, target: Path, link: bool) -> tuple[int, int]:
    """`blob` at `target`: with `link` a hard link where the file system allows (an input no job changes), else a
    copy (a job's own file, which it may append to: never the cached blob); its (size, mtime) as placed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        if not link:
            raise OSError("a copy")
        os.link(blob, target)
    except OSError:
        shutil.copyfile(blob, target)
    stat = target.stat()
    return stat.st_size, stat.st_mtime_ns


@ray.remote(max_restarts=0)
class JobWorker:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="likeness-job-"))
        self.child: subprocess.Popen | None = None
        self.folder: Path | None = None
        self.events = self.request = ""  # the job's events file's and request file's names
        self.placed: dict[str, tuple[int, int]] = {}  # what the driver sent, as placed: not sent back unchanged

    def where(self) -> dict:
        """Which worker this is: its host, process and folder (the driver's log names them)."""
        return {"host": socket.gethostname(), "pid": os.getpid(), "root": str(self.root),
                "gpus": ray.get_gpu_ids()}

    # ---- files in --------------------------------------------------------------------------------------------

    def missing(self, parts: list[tuple[str, str, bool]]) -> list[str]:
        """Of (dest, sha256, link) parts, place those the cache holds; return the sha256 of the others (to be
        sent)."""
        cache, lacking = _cache(), []
        for dest, sha, link in parts:
            blob = cache / sha
            if blob.is_file():
                self.placed[dest] = _place(blob, self.root / dest, link)
            else:
                lacking.append(sha)
        return lacking

    def receive(self, sha: str, offset: int, data: bytes, last: bool, dests: list[tuple[str, bool]]) -> None:
        """A piece of the file whose content is `sha`; at the `last`, it is checked, kept in the cache and placed at
        every one of `dests` ((dest, link) pairs)."""
        partial = self.root / ".incoming" / sha
        partial.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.write(data)
        if not last:
            return
        got = sha256_of(partial)
        if got != sha:
            raise ValueError(f"a file sent to the worker arrived damaged (sha256 {got}, not {sha})")
        blob = _cache() / sha
        os.replace(partial, blob)
        for dest, link in dests:
            self.placed[dest] = _place(blob, self.root / dest, link)

    # ---- the job ---------------------------------------------------------------------------------------------

    def start(self, child: str, folder: str, request: str, events: str, content: dict, resume: bool,
              offline: bool) -> None:
        """Run the job's child (`python -m CHILD`) on job folder `folder` (under this job's root: its `request` file
        written from `content`; `events` its events file), on the device Ray gave this actor (auto: its GPU, else
        the CPU)."""
        import studio

        self.events, self.request = events, request
        self.folder = self.root / folder
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / request).write_text(json.dumps(content, indent=2))
        (self.folder / CANCEL_FILE).unlink(missing_ok=True)
        argv = [sys.executable, "-m", child, str(self.folder), "--root", str(self.root), "--models-dir",
                str(self.root / "models"), "--workspace", str(self.root / "workspace"), "--device", "auto"]
        argv += ["--offline"] * offline + ["--resume"] * resume
        package_parent = str(Path(studio.__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p))
        with open(self.folder / LOG_FILE, "ab") as out:
            self.child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(self.root),
                                          preexec_fn=_die_with_parent)

    def poll(self, events_at: int, log_at: int) -> dict:
        """What the child wrote since: event lines from byte `events_at` of its events file (whole lines), log text from
        byte `log_at`, its status, the files of its job folder and of models/ (path -> [size, mtime]; not its
        request, nor a file sent to it and unchanged, nor the builtins the worker built for itself), and its exit
        code once it has ended (None while it runs)."""
        code = self.child.poll() if self.child is not None else None
        events, events_end = self._tail(self.folder / self.events, events_at, whole_lines=True)
        log, log_end = self._tail(self.folder / LOG_FILE, log_at)
        return {"events": events, "events_at": events_end, "log": log, "log_at": log_end,
                "status": read_status(self.folder), "files": self._results(), "exit": code}

    def _results(self) -> dict[str, list]:
        """The files the job made or changed: path (under the job's root) -> [size, mtime]."""
        skipped = {self.folder / self.events, self.folder / self.request}
        files = {}
        for top in (self.folder, self.root / "models"):
            for path in sorted(top.rglob("*")) if top.is_dir() else []:
                rel = path.relative_to(self.root).as_posix()
                if (not path.is_file() or path.name in KEPT or path in skipped or "/." in "/" + rel
                        or rel.startswith("models/builtin/")):
                    continue
                stat = path.stat()
                if self.placed.get(rel) != (stat.st_size, stat.st_mtime_ns):
                    files[rel] = [stat.st_size, stat.st_mtime]
        return files

    def read(self, rel: str, offset: int) -> bytes:
        """Up to CHUNK bytes of the job's file `rel` (relative to its root) from `offset`."""
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"`rel` {rel!r} is outside the job's folder")
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(CHUNK)

    def stop(self) -> None:
        """Ask the child to stop after its step (it writes a checkpoint first), as a local cancel does."""
        if self.folder is not None:
            (self.folder / CANCEL_FILE).touch()

    def close(self) -> None:
        """The job is over here: its child ended (killed if it still runs), its folder removed."""
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _tail(path: Path, at: int, whole_lines: bool = False) -> tuple[str, int]:
        if not path.is_file():
            return "", at
        with open(path, "rb") as f:
            f.seek(at)
            data = f.read()
        if whole_lines:
            data = data[:data.rfind(b"\n") + 1]
        return data.decode("utf-8", errors="replace"), at + len(data)
