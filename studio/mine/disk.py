"""A mining job's folder, workspace/mining/<name>/, and its report:

    mine.json        the request (MiningRequest), as asked
    status.json      what the job is doing now: starting, running, done, failed, cancelled (studio.jobs)
    state.json       where the job stands, rewritten (atomically) after every decided candidate: the next candidate,
                     the counts, the group (members and their running sums), the drops, the group-size history;
                     what makes a continued job decide exactly as one uninterrupted job
    events.jsonl     one line per decided candidate (decision, sim-score, seed or file, seconds per stage), per drop
                     (with its reason) and per message
    encodings.jsonl  one line per face found: candidate index, the picture's sha256, the 128 floats
    images/          the pictures of the seed face, the members (dropped ones too) and the near misses, as encoded;
                     generated ones carry their A1111 parameters, so PNG Info or the seed regenerates them
    faces/           a small crop of each of those faces, for the live strip
    report.json      the members (file or seed), dropped members with reasons, the near misses, counts and timings
    cancel, log.txt  the cancel file and the child's output (studio.jobs)

Lines of events.jsonl and encodings.jsonl that belong to a decision carry its `step`; state.json counts the steps it
has recorded, and a continued job first removes the lines of a step it never recorded (the candidate in flight).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.fileio import write_bytes, write_json, write_text
from studio.mine.group import Rules, SimGroup
from studio.names import check_name

REQUEST, STATE, EVENTS, ENCODINGS, REPORT = "mine.json", "state.json", "events.jsonl", "encodings.jsonl", "report.json"
IMAGES, FACES = "images", "faces"
# What state.json counts: candidates decided, faces found, each decision, members dropped, and whether each face
# was computed now ("encoded") or came from the face cache ("cached").
COUNTS = ("candidates", "faces", "seed", "admitted", "near_miss", "rejected", "duplicate", "no_face", "refused",
          "dropped", "encoded", "cached")
STAGES = ("generate", "load", "upscale", "faces", "compare", "save")
KEPT = ("seed", "admitted", "near miss")  # decisions whose pictures are kept in images/
MESSAGES_KEPT = 20


def mining_folder(settings, name: str) -> Path:
    return settings.workspace_dir / "mining" / check_name(name)


def count_key(decision: str) -> str:
    """A decision's name in `counts` ("near miss" -> "near_miss")."""
    return decision.replace(" ", "_")


@dataclass
class MiningState:
    group: SimGroup
    step: int = 0  # decisions recorded (the candidates', and a seed face the user gave)
    next: int = 0  # the next candidate's index; a generated candidate's seed is seed_start + index
    counts: dict = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    seconds: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))  # time spent per stage, all runs
    elapsed: float = 0.0  # mining seconds over every run
    dropped: list[dict] = field(default_factory=list)  # the member, its mean distance, when, why
    history: list[list] = field(default_factory=list)  # [candidate index, group size, group mean] at each change
    messages: list[str] = field(default_factory=list)  # the latest few

    @property
    def per_minute(self) -> float | None:
        return 60.0 * self.counts["candidates"] / self.elapsed if self.elapsed > 0 else None

    def to_json(self) -> dict:
        return {"step": self.step, "next": self.next, "counts": self.counts, "seconds": self.seconds,
                "elapsed": self.elapsed, "group": self.group.to_state(), "dropped": self.dropped,
                "history": self.history, "messages": self.messages[-MESSAGES_KEPT:],
                "group_mean": self.group.mean_distance}


def save_state(folder: Path, state: MiningState) -> None:
    write_json(folder / STATE, state.to_json())


def read_state_json(folder: Path) -> dict | None:
    """state.json as saved (for status views, which need no encodings); None before the first decision."""
    try:
        return json.loads((folder / STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def load_state(folder: Path, rules: Rules) -> MiningState | None:
    """The saved state with its group rebuilt from encodings.jsonl; None when nothing was decided yet."""
    d = read_state_json(folder)
    if d is None:
        return None
    encodings = {line["index"]: np.asarray(line["encoding"], dtype=np.float64)
                 for line in read_lines(folder / ENCODINGS) if line.get("step", 0) < d["step"]}
    group = SimGroup.from_state(rules, d["group"], encodings)
    return MiningState(group, d["step"], d["next"], {**dict.fromkeys(COUNTS, 0), **d["counts"]},
                       {**dict.fromkeys(STAGES, 0.0), **d["seconds"]}, d["elapsed"], d["dropped"], d["history"],
                       d["messages"])


def read_lines(path: Path) -> list[dict]:
    """Every whole line of a .jsonl file (a half-written last one, from a crash mid-line, is left out)."""
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                out.append(json.loads(line))
    return out


def trim_logs(folder: Path, step: int) -> None:
    """Remove from events.jsonl and encodings.jsonl the lines of steps state.json never recorded (and a
    half-written last line), so the job goes on from its last decided candidate."""
    for name in (EVENTS, ENCODINGS):
        path = folder / name
        if not path.is_file() or path.stat().st_size == 0:
            continue
        lines = read_lines(path)
        kept = [line for line in lines if line.get("step", -1) < step]
        with open(path, "rb") as f:
            f.seek(-1, 2)
            half_written = f.read(1) != b"\n"
        if len(kept) != len(lines) or half_written:
            write_text(path, "".join(json.dumps(line) + "\n" for line in kept))


def picture_name(index: int, source: str, seed: int | None, suffix: str) -> str:
    """The kept picture's path in the job folder: images/000042-seed1234.png, images/000007-<file stem>.jpg."""
    if index < 0:
        return f"{IMAGES}/seed-face{suffix}"
    if seed is not None:
        return f"{IMAGES}/{index:06d}-seed{seed}{suffix}"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(source).stem)[:40] or "image"
    return f"{IMAGES}/{index:06d}-{stem}{suffix}"


def face_name(picture: str) -> str:
    return f"{FACES}/{Path(picture).stem}.jpg"


def png_bytes(image, parameters: str = "") -> bytes:
    """A candidate as PNG bytes (what its sha256 and the face cache key are taken of), with its A1111 parameters."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=info, compress_level=1)  # level 6 costs ~5x the time for ~10% smaller files
    return buffer.getvalue()


def write_face(folder: Path, picture: str, image, face, side: int = 128) -> None:
    """A square crop of `face` (with room around it) for the live strip."""
    grow = 0.35 * max(face.width, face.height)
    cx, cy = face.center
    half = max(face.width, face.height) / 2 + grow
    crop = image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    buffer = io.BytesIO()
    crop.convert("RGB").resize((side, side)).save(buffer, "JPEG", quality=85)
    write_bytes(folder / face_name(picture), buffer.getvalue())


def write_report(folder: Path, request, state: MiningState, ended: str) -> dict:
    """report.json: the group's members (file or seed), the dropped members and why, the near misses, counts and
    where the time went. `ended` says how this run ended."""
    near = [{k: line.get(k) for k in ("index", "source", "seed", "file", "sha256", "distance")}
            for line in read_lines(folder / EVENTS) if line.get("type") == "candidate"
            and line.get("decision") == "near miss"]
    means = state.group.mean_to_rest()
    members = [{**m.to_json(), "mean_to_rest": float(means[i]) if state.group.size > 1 else None}
               for i, m in enumerate(state.group.members)]
    report = {"name": request.name, "ended": ended, "request": request.to_json(), "counts": state.counts,
              "group_size": state.group.size, "group_mean": state.group.mean_distance, "members": members,
              "dropped": state.dropped, "near_misses": near, "history": state.history,
              "elapsed_s": round(state.elapsed, 3), "candidates_per_minute": state.per_minute,
              "seconds_per_stage": {k: round(v, 3) for k, v in state.seconds.items()}}
    write_json(folder / REPORT, report)
    return report


def read_report(folder: Path) -> dict | None:
    try:
        return json.loads((folder / REPORT).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
