"""The child here of a job sent to remote workers (a run, each run of a sweep, a mining job): `python -m
studio.remote.child JOB_DIR <settings> --workers ADDR [--resume]`, started by the queue (or a sweep's driver) as the
job's local child is (it claims no device of this machine). It connects to the Ray cluster, asks for a worker (a
JobWorker actor holding one GPU, or none on a CPU cluster), sends what the job needs (studio.remote.bundle, by the
job's kind; what the worker already keeps is not sent again), starts the job's own child there, and while it works
relays its events into this job's events file and its log into log.txt, keeps its status, and copies the files it
writes (checkpoints, samples, epoch weights, the exports into this user's models/; a mining job's pictures, state
and report) here as they appear. So the job reads as if it had run here, and a resume, here or remote, goes on from
here.

A cancel (the cancel file, SIGTERM) is passed to the worker, whose job stops as it would here (a run after its step
with a checkpoint, a mining job before its next candidate). A worker lost mid-job (its node or process gone, no
answer for POLL_TIMEOUT_S) is said in the log and the job goes on on another worker from what was copied here (a
run's last checkpoint, a mining job's decided candidates), up to MAX_LOST times.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from studio import fileio
from studio.job_child import JobFailed, child_main
from studio.progress import Cancelled
from studio.remote.bundle import CHUNK, Bundle

MAX_LOST = 3  # workers a run may lose before it fails
POLL_S = 1.0
POLL_TIMEOUT_S = 120.0  # a worker that does not answer a poll for this long is taken for lost
PLAIN = ("state", "message", "updated", "pid", "started", "ended", "exit_code")  # status keys the driver keeps its own


class WorkerLost(Exception):
    pass


class Relay:
    """What a worker's job folder becomes here: the local job folder and this user's models folder."""

    def __init__(self, actor, log, job_dir: Path, models_dir: Path, root: str, bundle: Bundle):
        self.actor, self.log, self.job_dir, self.models_dir = actor, log, Path(job_dir), Path(models_dir)
        self.job_rel = bundle.folder + "/"
        self.root = root
        self.pairs = [(f"{root}/{bundle.folder}", str(self.job_dir)), (f"{root}/models", str(self.models_dir)),
                      *((f"{root}/{theirs}", ours) for theirs, ours in bundle.renamed.items())]
        self.seen = {}
        self.events_at, self.log_at = bundle.events_at, 0
        self.fetched = 0  # bytes copied here

    def here(self, rel: str) -> Path | None:
        """Where the worker's file `rel` (relative to its job's root) goes here; None for what is not a result."""
        if rel.startswith(self.job_rel):
            return self.job_dir / rel[len(self.job_rel):]
        if rel.startswith("models/"):
            return self.models_dir / rel[len("models/"):]
        return None

    def rewrite(self, value):
        """`value` (an event, a status field) with the worker's paths made this machine's."""
        if isinstance(value, str):
            for theirs, ours in self.pairs:
                if value.startswith(theirs):
                    return ours + value[len(theirs):]
            return value
        if isinstance(value, list):
            return [self.rewrite(v) for v in value]
        if isinstance(value, dict):
            return {k: self.rewrite(v) for k, v in value.items()}
        return value

    def poll(self, timeout_s: float = POLL_TIMEOUT_S) -> dict:
        """One look at the worker: its events relayed, its log printed, its status kept, its new files copied."""
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            update = ray.get(self.actor.poll.remote(self.events_at, self.log_at), timeout=timeout_s)
        except (RayActorError, GetTimeoutError) as e:
            raise WorkerLost(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        self.events_at, self.log_at = update["events_at"], update["log_at"]
        for line in update["events"].splitlines():
            if line.strip():
                self.log.relay(self.rewrite(json.loads(line)))
        if update["log"]:
            sys.stdout.write(update["log"])
            sys.stdout.flush()
        status = update["status"]  # (its state is said here when the job ends: see _ended)
        if status.get("state") in ("running", "done", "failed", "cancelled"):
            message = status.get("message", "") if status["state"] == "running" else "finishing"
            self.log.status("running", message, **{k: self.rewrite(v) for k, v in status.items() if k not in PLAIN})
        self.copy(update["files"])
        return update

    def copy(self, files: dict) -> None:
        """Copy the worker's new or changed results here (a checkpoint's state.json last: what marks it whole);
        remove here what the worker removed (pruned checkpoints and epochs)."""
        wanted = [rel for rel, stamp in files.items()
                  if self.here(rel) is not None and self.seen.get(rel) != tuple(stamp)]
        pruned = set()  # folders a file of which went while it was being copied (a checkpoint the run pruned)
        for rel in sorted(wanted, key=lambda r: (Path(r).name == "state.json", r)):
            if str(Path(rel).parent) in pruned:
                continue
            try:
                self.fetched += self._fetch(rel, files[rel][0])
            except FileNotFoundError:
                pruned.add(str(Path(rel).parent))
                files = {r: stamp for r, stamp in files.items() if str(Path(r).parent) not in pruned}
                continue
            self.seen[rel] = tuple(files[rel])
        for rel in [r for r in self.seen if r not in files]:
            gone = self.here(rel)
            gone.unlink(missing_ok=True)
            if gone.parent != self.job_dir and not any(gone.parent.iterdir()):  # a pruned checkpoint's folder
                gone.parent.rmdir()
            del self.seen[rel]

    def _fetch(self, rel: str, size: int) -> int:
        """Copy the worker's file `rel` here (whole, or not at all; a .jsonl file the job appends to: its new lines
        only, appended as the job's own logs are); the bytes it took. FileNotFoundError when it went."""
        path = self.here(rel)
        if rel.endswith(".jsonl") and path.is_file() and path.stat().st_size <= size:  # what is here is its start
            with open(path, "ab") as out:
                return self._read(rel, path.stat().st_size, out)
        with fileio.atomic_path(path) as tmp:
            with open(tmp, "wb") as out:
                taken = self._read(rel, 0, out)
            if rel.endswith(".json") and self.root.encode() in Path(tmp).read_bytes():  # a report naming its paths
                fileio.write_json(tmp, self.rewrite(json.loads(Path(tmp).read_text(encoding="utf-8"))))
        return taken

    def _read(self, rel: str, offset: int, out) -> int:
        """The worker's file `rel` from `offset` to its end into `out`; the bytes read."""
        import ray
        from ray.exceptions import RayActorError

        start = offset
        while True:
            try:
                data = ray.get(self.actor.read.remote(rel, offset), timeout=POLL_TIMEOUT_S)
            except RayActorError as e:
                raise WorkerLost(f"{type(e).__name__} while copying {rel}") from e
            out.write(data)
            offset += len(data)
            if len(data) < CHUNK:
                return offset - start


CONNECT_TRIES = 3  # a Ray Client server may refuse a connection while it starts its side of it: tried again


def _connect(settings, log) -> int:
    """Connect to the workers' cluster (the studio's code travels with the connection); the GPUs a job asks for."""
    import ray

    import studio

    for attempt in range(1, CONNECT_TRIES + 1):
        try:
            ray.init(address=settings.workers, namespace="likeness-studio", log_to_driver=False,
                     logging_level="WARNING", runtime_env={"py_modules": [str(Path(studio.__file__).resolve().parent)],
                                                           "excludes": ["__pycache__", "*.pyc"]})
            break
        except ConnectionError as e:
            said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if attempt == CONNECT_TRIES:
                raise ValueError(f"`workers` {settings.workers}: no connection after {attempt} tries ({said})") from e
            log.event("message", text=f"connecting to the workers failed ({said}); trying again in 5 s")
            ray.shutdown()
            time.sleep(5)
    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0


def _send(actor, bundle: Bundle, log) -> tuple[int, int]:
    """Send the bundle's files the worker does not keep yet: (bytes sent, bytes it already had)."""
    import ray

    lacking = set(ray.get(actor.missing.remote([(p.dest, p.sha256, p.link) for p in bundle.parts])))
    sent, by_sha = 0, {}
    for part in bundle.parts:
        if part.sha256 in lacking:
            by_sha.setdefault(part.sha256, []).append(part)
    for sha, parts in by_sha.items():
        dests = [(p.dest, p.link) for p in parts]
        offset = 0
        while True:
            data = parts[0].read(offset, CHUNK)
            last = len(data) < CHUNK
            ray.get(actor.receive.remote(sha, offset, data, last, dests))
            offset += len(data)
            if last:
                break
        sent += parts[0].size
    kept = bundle.size - sum(p.size for ps in by_sha.values() for p in ps)
    return sent, kept


def _wait_for_worker(actor, should_stop, log) -> dict | None:
    """Which worker took the job (its where()), once Ray has placed it; None when cancelled before."""
    import ray

    ref, said = actor.where.remote(), False
    while True:
        ready, _ = ray.wait([ref], timeout=POLL_S)
        if ready:
            return ray.get(ref)
        if should_stop():
            return None
        if not said:
            log.status("running", "waiting for a free worker (Ray places the job where a GPU is free)")
            said = True


def drive(args, settings, log, should_stop) -> str:
    import ray
    from ray.exceptions import RayActorError

    from studio.context import Studio
    from studio.remote.bundle import sent_kind
    from studio.remote.worker import JobWorker

    studio = Studio.open(settings)
    folder = Path(args.folder)
    kind = sent_kind(folder)
    gpus = _connect(settings, log)
    resume, lost, sent, kept, fetched = args.resume, 0, 0, 0, 0
    try:
        while True:
            log.close()  # (making the bundle may rewrite the job's logs: the events file is opened again after)
            bundle = kind.bundle(studio, folder, resume=resume)
            for note in bundle.notes:
                log.event("message", text=note)
            actor = JobWorker.options(num_gpus=gpus, num_cpus=1).remote()
            relay = None
            try:
                where = _wait_for_worker(actor, should_stop, log)
                if where is None:
                    raise Cancelled("cancelled before a worker took the job")
                log.event("message", text=f"sent to worker {where['host']} (process {where['pid']}"
                                          f"{', GPU ' + ','.join(map(str, where['gpus'])) if where['gpus'] else ', CPU'})"
                                          f"{f', resuming from {kind.state} copied here' if resume else ''}")
                out, had = _send(actor, bundle, log)
                sent, kept = sent + out, kept + had
                log.event("message", text=f"{len(bundle.parts)} files, {bundle.size / 1e6:.1f} MB: {out / 1e6:.1f} MB "
                                          f"sent, {had / 1e6:.1f} MB the worker kept from earlier jobs")
                ray.get(actor.start.remote(kind.child, bundle.folder, kind.request, kind.events,
                                           bundle.content(where["root"]), resume, not settings.allow_downloads))
                relay = Relay(actor, log, folder, settings.own_models_dir, where["root"], bundle)
                asked = False
                while (update := relay.poll())["exit"] is None:
                    if not asked and should_stop():
                        actor.stop.remote()
                        asked = True
                    time.sleep(POLL_S)
                fetched += relay.fetched
                log.status("running", "finishing", bytes_sent=sent, bytes_fetched=fetched)
                return _ended(update, relay)
            except WorkerLost as e:
                fetched += relay.fetched if relay is not None else 0
                at = kind.kept(folder) or "the start (nothing to go on from was copied yet)"
                log.event("message", text=f"worker lost ({e}); the job goes on on another worker from {at}")
                if should_stop():
                    raise Cancelled(f"cancelled; the worker was lost meanwhile: resume continues from {at}") from e
                lost += 1
                if lost > MAX_LOST:
                    raise JobFailed(f"{lost} workers were lost; the job stopped (resume continues from {at})",
                                    1) from e
                resume = bool(kind.kept(folder))
            finally:
                try:
                    ray.get(actor.close.remote(), timeout=30)
                except (RayActorError, ray.exceptions.GetTimeoutError):
                    pass
                ray.kill(actor)
    finally:
        ray.shutdown()


def worker_slots(settings, log) -> int:
    """How many jobs the workers' cluster runs at once: its GPUs (a job takes one), or on a cluster without any its
    CPUs (a job takes one)."""
    import ray

    gpus = _connect(settings, log)
    try:
        resources = ray.cluster_resources()
        return max(1, int(resources.get("GPU" if gpus else "CPU", 1)))
    finally:
        ray.shutdown()


def _ended(update: dict, relay: Relay) -> str:
    """How the run ended on the worker, as this child ends: its message (done), Cancelled, or JobFailed."""
    status = update["status"]
    state, message = status.get("state"), relay.rewrite(status.get("message", ""))
    if state == "done":
        return message
    if state == "cancelled":
        raise Cancelled(message)
    if state == "failed":
        fields = {k: v for k, v in status.items() if k not in PLAIN}
        raise JobFailed(message, int(status.get("exit_code", 1)), **relay.rewrite(fields))
    raise JobFailed(f"the job's process on the worker ended with code {update['exit']} without a word (its log is in "
                    f"log.txt)", 1)


def main(argv: list[str] | None = None) -> int:
    from studio.remote.bundle import sent_kind

    argv = sys.argv[1:] if argv is None else argv
    events = sent_kind(Path(argv[0])).events if argv and Path(argv[0]).is_dir() else "events.jsonl"  # (FOLDER first)
    return child_main("python -m studio.remote.child", events, drive, "connecting to the workers", argv)


if __name__ == "__main__":
    sys.exit(main())
