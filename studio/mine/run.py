"""The mining loop: candidates from the studio's generator (seed by seed) or a folder, each optionally upscaled, its
face found and encoded once (face cache), judged against the sim-group, and the decision recorded before the next."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from studio import fileio
from studio.data.facecache import DetectSettings, FaceCache
from studio.data.ingest import Limits, Refused, SourceFile, collect, load_image
from studio.faces.detect import main_face
from studio.joblog import JobLog
from studio.mine import disk
from studio.mine.disk import ENCODINGS, EVENTS, KEPT, MiningState
from studio.mine.group import Member, SimGroup
from studio.mine.request import RESUME_CHANGES, MiningRequest
from studio.progress import Cancelled, ProgressFn, StopFn, never_stop, no_progress

Upscale = Callable[[object], object]  # PIL image -> PIL image


@dataclass
class Candidate:
    index: int
    source: str  # "seed 1234", or the file's name in the folder
    seed: int | None = None  # generated candidates: the seed that regenerates it
    image: object | None = None  # PIL image, RGB and upright
    data: bytes | None = None  # a file's own bytes (folder candidates)
    suffix: str = ".png"
    parameters: str = ""  # generated candidates: the A1111 parameters text, kept in the PNG
    refused: str = ""  # why a file could not be used
    seconds: float = 0.0  # to generate or load it


@dataclass
class MiningResult:
    state: MiningState
    ended: str  # why the job stopped: target reached, a budget spent, the folder done


MINING_UPSCALE = 4.0  # seed 000 ran Real-ESRGAN x4 over each candidate before looking for its face


def resolve_upscaler(studio, name: str) -> Upscale | None:
    """The upscaler called `name` as a picture -> picture function (MINING_UPSCALE times the side, through
    studio.generate.upscale: Lanczos or a model in models/upscale/), or None when no upscaling was asked for.
    An unknown name raises ValueError here, before any candidate is drawn."""
    from studio.generate.upscale import LANCZOS, check_upscaler_name, target_size, upscale_to

    if not name:
        return None
    name = check_upscaler_name(name)
    if name != LANCZOS:
        studio.store.upscaler_file(name)
    return lambda image: upscale_to(studio, image, name, target_size(image.size, MINING_UPSCALE))[0]


def mine(studio, request: MiningRequest, folder: Path, *, should_stop: StopFn = never_stop,
         upscale: Upscale | None = None, progress: ProgressFn = no_progress) -> MiningResult:
    """Mine in `folder` until the target or a budget stops the job; a folder with a saved state continues after
    its last decided candidate. `upscale` overrides the request's upscaler. Raises Cancelled when `should_stop()`
    turns true (the candidate in flight is dropped; every decided one is on disk)."""
    # 1. Where the job stands: a fresh state, or the saved one, with the lines of an undecided candidate removed
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if request.candidates is not None and not request.candidates.exists():
        raise ValueError(f"`candidates` {str(request.candidates)!r} is not a folder, .zip or image file")
    upscale = upscale or resolve_upscaler(studio, request.upscaler)  # the caller's, else the request's
    _record_request(folder, request)
    state = disk.load_state(folder, request.rules) or MiningState(SimGroup(request.rules))
    disk.trim_logs(folder, state.step)
    events, encodings = JobLog(folder, EVENTS), JobLog(folder, ENCODINGS)
    miner = _Miner(studio, request, folder, state, events, encodings)
    miner.upscale = upscale
    ended = ""
    try:
        # 2. A seed face the user gave founds the group, once
        if request.seed_face and state.step == 0:
            miner.seed_from_file(_seed_face_path(folder, request.seed_face))
        # 3. Candidates, one decision each, until the target, a budget or the folder ends the job
        source = _generated(studio, request, state.next, should_stop) if request.from_generator else \
            _from_folder(request, _decided_sources(folder), state.next, miner.limits)
        while not (ended := _limit_reached(request, state)):
            if should_stop():
                raise Cancelled(f"stopped after {state.counts['candidates']} candidates")
            candidate = next(source, None)
            if candidate is None:
                ended = "every picture in the folder was looked at"
                break
            miner.decide(candidate)
            progress(_fraction(request, state), miner.line())
        miner.say(f"finished: {ended}")
        return MiningResult(state, ended)
    except Cancelled:
        ended = "cancelled"
        miner.say(f"cancelled after {state.counts['candidates']} candidates")
        raise
    finally:
        if miner.deciding:  # failed mid-candidate: what is on disk (the last decided candidate) is the truth
            state = disk.load_state(folder, request.rules) or MiningState(SimGroup(request.rules))
        else:
            disk.save_state(folder, state)  # the last messages
        disk.write_report(folder, request, state, ended or "failed")
        events.close()
        encodings.close()


class _Miner:
    """One job's decisions: each is recorded (picture, encoding, events, state) before the next begins."""

    def __init__(self, studio, request: MiningRequest, folder: Path, state: MiningState, events: JobLog,
                 encodings: JobLog):
        self.request, self.folder, self.state = request, folder, state
        self.events, self.encodings = events, encodings
        # the Dataset tab's face cache and settings: turning the group into a dataset detects nothing again
        self.cache = FaceCache(studio.settings.workspace_dir / ".cache" / "faces", DetectSettings())
        self.limits = Limits(max_pixels=studio.settings.max_image_pixels)  # the largest picture decoded
        self.upscale: Upscale | None = None
        self.deciding = False  # a candidate is being decided: the state in memory is not yet the state on disk

    def say(self, text: str) -> None:
        self.events.event("message", text=text)
        self.state.messages = (self.state.messages + [text])[-disk.MESSAGES_KEPT:]

    def line(self) -> str:
        c, group = self.state.counts, self.state.group
        mean = f", group mean {group.mean_distance:.3f}" if group.mean_distance is not None else ""
        return (f"{c['candidates']} candidates: {group.size} in the group{mean}; {c['near_miss']} near misses, "
                f"{c['rejected']} rejected, {c['no_face']} without a face, {c['dropped']} dropped")

    def seed_from_file(self, path: Path) -> None:
        try:
            loaded = load_image(SourceFile(path.name, path.stat().st_size, path.read_bytes), self.limits)
        except Refused as e:
            raise ValueError(f"`seed_face` {path.name} cannot be used: {e}") from None
        self.decide(Candidate(-1, f"seed face {path.name}", None, loaded.image, loaded.data, loaded.suffix),
                    seed_face=True)

    def decide(self, c: Candidate, seed_face: bool = False) -> None:
        self.deciding = True
        seconds = {"load" if c.seed is None else "generate": c.seconds}
        record = {"index": c.index, "source": c.source, "seed": c.seed}
        if c.refused:
            self._record("refused", {**record, "reason": c.refused}, None, seconds, seed_face)
            return
        # 1. Upscale; the bytes the face cache knows the picture by; its face, from the cache or found now
        image = c.image
        if self.upscale is not None:
            started = time.perf_counter()
            image = self.upscale(image)
            seconds["upscale"] = time.perf_counter() - started
        started = time.perf_counter()
        data = c.data if c.data is not None and image is c.image else disk.png_bytes(image, c.parameters)
        sha256 = hashlib.sha256(data).hexdigest()
        seconds["save"] = time.perf_counter() - started
        started, misses = time.perf_counter(), self.cache.misses
        faces = self.cache.faces(sha256, image)
        seconds["faces"] = time.perf_counter() - started
        self.state.counts["encoded" if self.cache.misses > misses else "cached"] += 1
        face = main_face(faces)
        if face is None or not face.is_candidate:
            if seed_face:
                raise ValueError(f"`seed_face` {c.source} shows no face dlib is sure of")
            self._record("no face", record, None, seconds, seed_face)
            return

        # 2. The rules
        picture = disk.picture_name(c.index, c.source, c.seed, c.suffix if data is c.data else ".png")
        started = time.perf_counter()
        verdict = self.state.group.consider(Member(c.index, c.source, picture, sha256, c.seed), face.encoding)
        seconds["compare"] = time.perf_counter() - started
        record.update(sha256=sha256, distance=verdict.distance, nearest=verdict.nearest,
                      faces=sum(f.is_candidate for f in faces))

        # 3. A kept face's picture and crop, and every face's encoding, before the state says it was decided
        started = time.perf_counter()
        if verdict.decision in KEPT:
            record["file"] = picture
            fileio.write_bytes(self.folder / picture, data)
            disk.write_face(self.folder, picture, image, face)
        self.encodings.event("face", step=self.state.step, index=c.index, sha256=sha256,
                             encoding=[float(v) for v in face.encoding])
        seconds["save"] += time.perf_counter() - started
        self._record(verdict.decision, record, verdict, seconds, seed_face)

    def _record(self, decision: str, record: dict, verdict, seconds: dict, seed_face: bool) -> None:
        state, group, limit = self.state, self.state.group, self.request.rules.drop_limit
        state.counts[disk.count_key(decision)] += 1
        if not seed_face:
            state.counts["candidates"] += 1
            state.counts["faces"] += decision not in ("refused", "no face")
            state.next = record["index"] + 1
        for kind, spent in seconds.items():
            state.seconds[kind] += spent
        state.elapsed += sum(seconds.values())
        self.events.event("candidate", step=state.step, decision=decision, group_size=group.size,
                          seconds={k: round(v, 4) for k, v in seconds.items()}, **record)
        for drop in verdict.dropped if verdict else []:
            entry = {**drop.member.to_json(), "mean": drop.mean, "at": drop.at, "reason": drop.reason(limit)}
            state.dropped.append(entry)
            state.counts["dropped"] += 1
            self.events.event("drop", step=state.step, **entry)
        if decision in ("seed", "admitted"):
            mean = group.mean_distance
            state.history.append([record["index"], group.size, None if mean is None else round(mean, 4)])
        state.step += 1
        disk.save_state(self.folder, state)
        self.deciding = False


def _record_request(folder: Path, request: MiningRequest) -> None:
    """Write mine.json; a folder that holds another job's request (other candidates or rules) is refused."""
    path = folder / disk.REQUEST
    if path.is_file():
        saved = MiningRequest.from_json(json.loads(path.read_text(encoding="utf-8")))
        changes = {k: getattr(request, k) for k in RESUME_CHANGES}
        if saved.continued(**changes) != request:
            raise ValueError(f"{folder} holds mining job {saved.name!r} with other candidates or rules; only "
                             f"{', '.join(RESUME_CHANGES)} may change when it continues")
    fileio.write_json(path, request.to_json())


def _limit_reached(request: MiningRequest, state: MiningState) -> str:
    """Why the job should stop before the next candidate ("" to go on)."""
    if state.group.size >= request.target:
        return f"target reached: {state.group.size} members"
    if request.max_candidates and state.counts["candidates"] >= request.max_candidates:
        return f"candidate budget spent: {state.counts['candidates']} candidates"
    if request.max_seconds and state.elapsed >= request.max_seconds:
        return f"time budget spent: {state.elapsed:.0f} s"
    return ""


def _fraction(request: MiningRequest, state: MiningState) -> float:
    parts = [state.group.size / request.target]
    if request.max_candidates:
        parts.append(state.counts["candidates"] / request.max_candidates)
    if request.max_seconds:
        parts.append(state.elapsed / request.max_seconds)
    return min(1.0, max(parts))


def _generated(studio, request: MiningRequest, start: int, should_stop: StopFn) -> Iterator[Candidate]:
    """Candidates start, start + 1, ... from the studio's generator, candidate i with seed seed_start + i. Batches
    begin at multiples of the batch size, so a continued job draws exactly the pictures an uninterrupted one did."""
    from studio.generate import generate

    size = request.batch_size
    index = start
    while True:
        first = index - index % size
        started = time.perf_counter()
        result = generate(studio, request.generation(request.seed_of(first), size), should_stop=should_stop)
        each = (time.perf_counter() - started) / size
        for k, made in enumerate(result.images):
            if first + k >= index:
                yield Candidate(first + k, f"seed {made.seed}", made.seed, made.image, parameters=made.parameters,
                                seconds=each)
        index = first + size


def _from_folder(request: MiningRequest, decided: set[str], start: int, limits: Limits) -> Iterator[Candidate]:
    """The folder's pictures in name order (as the Dataset tab takes them), but those already decided; a file that
    cannot be used is a candidate refused with the reason."""
    sources, refused, _ = collect([request.candidates], limits)
    items = sorted([(s.name, s) for s in sources] + [(r.name, r) for r in refused], key=lambda item: item[0])
    index = start
    for name, item in items:
        if name in decided:
            continue
        started = time.perf_counter()
        if not isinstance(item, SourceFile):
            yield Candidate(index, name, refused=item.reason)
        else:
            try:
                loaded = load_image(item, limits)
            except Refused as e:
                yield Candidate(index, name, refused=str(e), seconds=time.perf_counter() - started)
            else:
                yield Candidate(index, name, None, loaded.image, loaded.data, loaded.suffix,
                                seconds=time.perf_counter() - started)
        index += 1


def _decided_sources(folder: Path) -> set[str]:
    return {line["source"] for line in disk.read_lines(folder / EVENTS) if line.get("type") == "candidate"}


def _seed_face_path(folder: Path, seed_face: str) -> Path:
    """The seed face the job keeps in its folder (start_mining copies it there), else a path to a picture."""
    for path in (folder / seed_face, Path(seed_face).expanduser()):
        if path.is_file():
            return path
    raise ValueError(f"`seed_face` {seed_face!r} is not a picture file")
