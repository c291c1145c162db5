"""A sweep's report: one entry per cell (settings, state, the reason, scores, loss, time, its validation pictures),
the base model's scores first, the best cell marked; and its pictures: one grid (a row per cell) and charts of score
against each swept knob. Built from the run folders alone, so it is the same during, after and across restarts."""

from __future__ import annotations

from pathlib import Path

from studio import fileio
from studio.train.sweep import format_value, settings_label

REPORT, GRID = "report.json", "grid.png"
LOSS_POINTS = 400  # a cell's loss curve is thinned to about this many points


def _scores(validation: dict | None) -> dict:
    """CLIP score per prompt, likeness (mean sim-score over faces found), the no-face count and, on a base with a
    checker (builtin:pocket), the share of pictures it sees drawn as their subject's shape, of one validation."""
    if not validation:
        return {"clip": [], "mean_clip": None, "sim": [], "mean_sim": None, "no_face": None, "shape": None}
    sims = validation.get("scores") or []
    checked = [row for row in validation.get("subjects") or [] if row.get("kept") is not None]
    pictures = sum(row["pictures"] for row in checked)
    return {"clip": validation.get("clip_scores") or [], "mean_clip": validation.get("mean_clip"), "sim": sims,
            "mean_sim": validation.get("mean_score"),
            "no_face": sum(s is None for s in sims) if sims else None,  # None: the dataset has no face to look for
            "shape": sum(row["kept"] for row in checked) / pictures if pictures else None}


def cell_entry(cell, status) -> dict:
    """One cell from its run's status (train.jobs.RunStatus; None when the run has not started)."""
    entry = {"id": cell.id, "settings": cell.settings, "label": settings_label(cell.settings), "run": cell.run,
             "step": cell.step, "state": "pending", "reason": "", "scores": _scores(None), "grid": None,
             "images": [], "loss": None, "losses": [], "time_s": None}
    if status is None:
        return entry
    found = {v["step"]: v for v in status.step_validations}.get(cell.step)
    losses = [(s, l) for s, l in status.losses if s <= cell.step]
    recent = [l for _, l in losses[-10:]]
    every = max(1, len(losses) // LOSS_POINTS)
    entry.update(loss=sum(recent) / len(recent) if recent else None, losses=losses[::every])
    if found is not None:
        entry.update(scores=_scores(found), grid=found.get("grid"), images=found.get("images", []),
                     time_s=found.get("elapsed_s"))
        if found.get("passed", True):
            entry["state"] = "done"
        else:  # its pictures were judged collapsed (the run went on when it had no checkpoint to fall back to yet)
            stopped = status.state == "failed" and status.failure_code == 3 and status.step == cell.step
            entry.update(state="collapsed", reason=f"{'stopped' if stopped else 'judged collapsed'} by the collapse "
                                                   f"guard ({status.signal if stopped else 'images'} signal) at step "
                                                   f"{cell.step}: {found.get('guard')}")
        return entry
    if status.state == "failed" and status.failure_code == 3:
        entry.update(state="collapsed", reason=status.message)  # it names the step and the signal
    elif status.state == "failed":
        entry.update(state="failed", reason=status.message)
    elif status.state in ("cancelled", "stopped"):
        entry.update(state=status.state, reason=status.message)
    elif status.state == "done" and not status.config.prompts():
        entry["state"] = "done"  # no validation prompts: nothing to score, the run reached the step
    elif status.state == "done":
        entry.update(state="failed", reason=f"the run ended without validating step {cell.step}")
    elif status.active:
        entry["state"] = "running" if status.step < cell.step else "validating"
    return entry


def best_cell(cells: list[dict]) -> tuple[str | None, str | None]:
    """(cell id, what chose it): among done cells, by likeness when the dataset has faces (most faces found, then the
    lowest mean sim-score, as best_epoch), else by the base's checker (the most pictures drawn as the subject's shape,
    then CLIP), else by the highest mean CLIP score."""
    done = [c for c in cells if c["state"] == "done"]
    faced = [c for c in done if c["scores"]["mean_sim"] is not None]
    if faced:
        return min(faced, key=lambda c: (c["scores"]["no_face"], c["scores"]["mean_sim"]))["id"], "likeness"
    shaped = [c for c in done if c["scores"].get("shape") is not None]
    if shaped:
        return max(shaped, key=lambda c: (c["scores"]["shape"], c["scores"]["mean_clip"] or 0))["id"], "checker"
    clipped = [c for c in done if c["scores"]["mean_clip"] is not None]
    if clipped:
        return max(clipped, key=lambda c: c["scores"]["mean_clip"])["id"], "clip"
    return None, None


def build_report(name: str, request, runs, cells, notes: list[str], statuses: dict, state: str) -> dict:
    """The report of sweep `name`: `statuses` holds each started run's RunStatus by run id."""
    entries = [cell_entry(c, statuses.get(c.run)) for c in cells]
    best, best_by = best_cell(entries)
    for entry in entries:
        entry["best"] = entry["id"] == best
    base = next((s.base_validation for s in statuses.values() if s.base_validation), None)
    clip = request.base.clip_model
    notes = list(notes)
    if clip and clip.startswith("builtin:"):
        notes.append(f"CLIP scores by {clip}: random weights for offline tests, they rank nothing")
    if not clip:
        notes.append("no CLIP model: no CLIP scores (set clip_model)")
    if base is not None and not base.get("scores"):
        notes.append("no face in the dataset: no likeness (sim-score) or no-face counts")
    steps_run, steps_separate = sum(r.config.max_steps for r in runs), sum(c.step for c in cells)
    return {"name": name, "state": state, "dataset": request.base.dataset, "method": request.base.method,
            "model": request.base.model, "grid": request.grid, "preset": request.preset,
            "base": None if base is None else {"grid": base.get("grid"), "images": base.get("images", []),
                                               "prompts": base.get("prompts", []), "scores": _scores(base)},
            "cells": entries, "best": best, "best_by": best_by, "notes": notes,
            "runs": {r.id: {"cells": r.cells, "steps": r.config.max_steps,
                            "state": statuses[r.id].state if r.id in statuses else "pending"} for r in runs},
            "steps_run": steps_run, "steps_separate": steps_separate}


def write_report(folder: Path, report: dict) -> None:
    fileio.write_json(Path(folder) / REPORT, report)


# ---- pictures ------------------------------------------------------------------------------------------------

def write_grid(folder: Path, report: dict) -> Path | None:
    """grid.png: the base model's validation pictures, then a row per cell (state and settings on the left)."""
    from PIL import Image, ImageDraw

    rows = ([("base model", "", report["base"]["images"])] if report.get("base") else []) + [
        (f"{c['id']} {c['state']}{' (best)' if c['best'] else ''}", c["label"], c["images"]) for c in report["cells"]]
    pictures = [Image.open(p).convert("RGB") for _, _, paths in rows for p in paths if Path(p).is_file()]
    if not pictures:
        return None
    columns = max(len(paths) for _, _, paths in rows)
    side = max(128, max(p.height for p in pictures))  # pocket's 64 px pictures are doubled to be seen
    label = 240
    grid = Image.new("RGB", (label + columns * side, len(rows) * side), "white")
    draw = ImageDraw.Draw(grid)
    for r, (title, text, paths) in enumerate(rows):
        draw.text((6, r * side + 6), title, fill="black")
        for i, line in enumerate(_wrap(text, 36)[:6]):
            draw.text((6, r * side + 24 + 14 * i), line, fill=(60, 60, 60))
        for c in range(columns):
            box = (label + c * side, r * side)
            if c < len(paths) and Path(paths[c]).is_file():
                grid.paste(Image.open(paths[c]).convert("RGB").resize((side, side), Image.NEAREST), box)
            else:
                draw.rectangle([box, (box[0] + side - 1, box[1] + side - 1)], fill=(225, 225, 225))
    path = Path(folder) / GRID
    with fileio.atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return path


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


def write_charts(folder: Path, report: dict) -> list[Path]:
    """chart_<score>_vs_<knob>.png for each swept knob: mean CLIP score (and likeness, with faces) per value, a line
    per setting of the other knobs, the base model's score dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    knobs = list(report["grid"])
    scores = [("clip", "mean_clip", "mean CLIP score (higher follows the prompt better)")]
    if any(c["scores"]["mean_sim"] is not None for c in report["cells"]):
        scores.append(("likeness", "mean_sim", "mean sim-score (lower is more alike)"))
    if any(c["scores"].get("shape") is not None for c in report["cells"]):
        scores.append(("shape", "shape", "share drawn as its shape (the base's checker)"))
    for score, key, label in scores:
        base = (report.get("base") or {}).get("scores", {}).get(key)
        for knob in knobs:
            values = report["grid"][knob]
            fig = Figure(figsize=(6.4, 4.0), dpi=100)
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
            lines: dict[str, list] = {}
            for cell in report["cells"]:
                others = settings_label({k: v for k, v in cell["settings"].items() if k != knob}) or knob
                lines.setdefault(others, []).append((values.index(cell["settings"][knob]), cell))
            for n, (others, points) in enumerate(lines.items()):
                done = [(i, c["scores"][key]) for i, c in points if c["state"] == "done" and c["scores"][key] is not None]
                ax.plot([i for i, _ in done], [v for _, v in done], marker="o", color=f"C{n % 10}", label=others)
                stopped = [(i, c["scores"][key]) for i, c in points if c["state"] == "collapsed"
                           and c["scores"][key] is not None]  # the pictures the guard stopped on
                ax.plot([i for i, _ in stopped], [v for _, v in stopped], linestyle="none", marker="x", markersize=9,
                        color=f"C{n % 10}", label=f"{others}: collapsed" if stopped else None)
            if base is not None:
                ax.axhline(base, color="0.3", linestyle="--", linewidth=1, label="base model")
            ax.set_xticks(range(len(values)), [format_value(v) for v in values])
            ax.set_xlabel(knob.replace("max_steps", "steps"))
            ax.set_ylabel(label)
            ax.set_title(f"{score} vs {knob.replace('max_steps', 'steps')}")
            ax.legend(fontsize=8)
            fig.tight_layout()
            path = Path(folder) / f"chart_{score}_vs_{knob.replace('max_steps', 'steps')}.png"
            with fileio.atomic_path(path) as tmp:
                fig.savefig(tmp, format="png")
            written.append(path)
    return written
