"""Evaluations on disk (workspace/evaluations/<name>/): report.json and report.csv written atomically, read, listed."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from studio.evaluate.request import EvaluationRequest
from studio.evaluate.scoring import GroupSummary, ImageScore, summarise
from studio.fileio import write_json, write_text
from studio.names import check_name

FORMAT_VERSION = 1  # fields added since (notes, asked, the checker's) are optional: older reports still read
CSV_COLUMNS = ("variant", "prompt", "seed", "sim_score", "no_face", "clip_score", "drawn", "drawn_color",
               "asked_label", "asked_color", "label_ok", "color_ok", "file")


def evaluations_dir(settings) -> Path:
    return settings.workspace_dir / "evaluations"


@dataclass
class EvaluationReport:
    name: str
    folder: Path
    request: EvaluationRequest
    rows: list[ImageScore]  # variant-major, then prompt, then seed: the order they were made
    status: str  # "complete" or "cancelled" (then rows hold what was finished)
    created: str  # ISO time the run started
    seconds: float
    reference: str  # where the subject's faces came from, and how many ("" when no reference was given)
    clip_note: str  # what the CLIP column means here (none chosen, random builtin weights, or the model used)
    grid: str | None = None  # file names inside `folder`
    charts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was scored and what was not, and why, in words
    asked: dict[str, str] = field(default_factory=dict)  # prompt -> what it asks the pocket checker ("red star")

    @property
    def has_clip(self) -> bool:
        return any(r.clip_score is not None for r in self.rows)

    @property
    def has_likeness(self) -> bool:
        return any(r.likeness for r in self.rows)

    @property
    def has_checker(self) -> bool:
        return any(r.drawn is not None for r in self.rows)

    def by_variant(self) -> list[GroupSummary]:
        return summarise(self.rows, [v.label for v in self.request.variants], None, self.request.tolerance)

    def by_prompt(self) -> list[GroupSummary]:
        return summarise(self.rows, [v.label for v in self.request.variants], list(self.request.prompts),
                         self.request.tolerance)

    def to_json(self) -> dict:
        return {
            "format": FORMAT_VERSION, "name": self.name, "status": self.status, "created": self.created,
            "seconds": round(self.seconds, 3), "reference": self.reference, "clip_note": self.clip_note,
            "grid": self.grid, "charts": self.charts, "notes": self.notes, "asked": self.asked,
            "request": self.request.to_json(),
            "images": [asdict(r) for r in self.rows],
            # Derived from "images"; written so other tools need not recompute them.
            "summary": [asdict(s) for s in self.by_variant()],
            "per_prompt": [asdict(s) for s in self.by_prompt()],
        }


def report_csv(report: EvaluationReport) -> str:
    """One line per image; an empty sim_score with no_face=1 is seed 000's "no face found", with no_face empty the
    picture was not scored for likeness. The checker's columns are empty but for builtin:pocket bases."""
    def cell(value) -> str:
        return "" if value is None else str(int(value)) if isinstance(value, bool) else str(value)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    others = list(dict.fromkeys(k for r in report.rows for k in r.sim_against))  # also_against, in the request's order
    writer.writerow([*CSV_COLUMNS, *(f"sim_score_vs_{name}" for name in others)])
    for r in report.rows:
        against = [r.sim_against.get(name) for name in others]
        writer.writerow([r.variant, r.prompt, r.seed, "" if r.sim_score is None else f"{r.sim_score:.6f}",
                         cell(r.no_face if r.likeness else None), "" if r.clip_score is None else f"{r.clip_score:.4f}",
                         cell(r.drawn), cell(r.drawn_color), cell(r.asked_label), cell(r.asked_color),
                         cell(r.label_ok), cell(r.color_ok), r.file, *("" if a is None else f"{a:.6f}" for a in against)])
    return buffer.getvalue()


def write_report(report: EvaluationReport) -> None:
    """report.csv, then report.json (the file whose presence makes the evaluation listed), each in one rename."""
    write_text(report.folder / "report.csv", report_csv(report))
    write_json(report.folder / "report.json", report.to_json())


def read_report(folder: Path) -> EvaluationReport:
    meta = Path(folder) / "report.json"
    if not meta.is_file():
        raise ValueError(f"evaluation folder {folder} has no report.json")
    d = json.loads(meta.read_text(encoding="utf-8"))
    if d.get("format") != FORMAT_VERSION:
        raise ValueError(f"evaluation {Path(folder).name} has format {d.get('format')!r}; this studio reads "
                         f"{FORMAT_VERSION}")
    return EvaluationReport(
        name=d["name"], folder=Path(folder), request=EvaluationRequest.from_json(d["request"]),
        rows=[ImageScore(**r) for r in d["images"]], status=d["status"], created=d["created"], seconds=d["seconds"],
        reference=d["reference"], clip_note=d["clip_note"], grid=d.get("grid"), charts=list(d.get("charts", [])),
        notes=list(d.get("notes", [])), asked=dict(d.get("asked", {})),
    )


def load_evaluation(settings, name: str) -> EvaluationReport:
    folder = evaluations_dir(settings) / check_name(name, "evaluation")
    if not (folder / "report.json").is_file():
        known = ", ".join(e.name for e in list_evaluations(settings)) or "none yet"
        raise ValueError(f"evaluation {name!r} not found in {evaluations_dir(settings)} (evaluations: {known})")
    return read_report(folder)


@dataclass(frozen=True)
class EvaluationSummary:
    name: str
    created: str
    status: str
    variants: list[str]
    images: int


def list_evaluations(settings) -> list[EvaluationSummary]:
    """Every evaluation under workspace/evaluations/, newest first (a run still being made is hidden)."""
    root = evaluations_dir(settings)
    out = []
    for meta in root.glob("*/report.json") if root.is_dir() else []:
        if meta.parent.name.startswith("."):
            continue
        d = json.loads(meta.read_text(encoding="utf-8"))
        out.append(EvaluationSummary(d["name"], d["created"], d["status"],
                                     [v["label"] for v in d["request"]["variants"]], len(d["images"])))
    return sorted(out, key=lambda e: (e.created, e.name), reverse=True)
