"""Benchmark: where a sweep cell's time goes on builtin:pocket, as the Train tab starts it.

    .venv/bin/python bench/sweep_cell.py [--steps 20] [--before 512]

A one-cell sweep (grid `steps=N`) of the Train tab's default settings (a LoRA, resolution 0: "the model's own size")
on pocket's star dataset, through the sweep's driver and a training child as the studio runs it, twice in fresh
workspaces: at `--before` px (what resolution 0 trained pocket at before: its family's 512) and at resolution 0 (now
pocket's own 64 px). Each prints its phases from the sweep's and the run's logs (start and model load, latents, the
base model's loss and grid, the steps, the validations, the report) and the ratio of the two wall times.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _phases(sweep_folder: Path, started: float, ended: float) -> dict[str, float]:
    """Seconds per phase, from the run's events (each phase ends at the event that says it is done)."""
    events = _events(sweep_folder / "runs" / "r01" / "metrics.jsonl")

    def at(test) -> float:
        return next(e["time"] for e in events if test(e))

    loaded = at(lambda e: e["type"] == "message" and " px, device " in e.get("text", ""))
    latents = at(lambda e: e["type"] == "message" and e.get("text", "").startswith("latents "))
    base_loss = at(lambda e: e["type"] == "message" and e.get("text", "").startswith("base model's loss"))
    base = at(lambda e: e["type"] == "validation" and e.get("stage") == "base")
    done = at(lambda e: e["type"] == "done")
    validations = [e for e in events if e["type"] == "validation" and e.get("stage") != "base"]
    steps = [e for e in events if e["type"] == "step"]
    validating = sum(v["time"] - max(s["time"] for s in steps if s["time"] <= v["time"]) for v in validations)
    return {"start, imports, model load": loaded - started, "latents": latents - loaded,
            "base model's loss": base_loss - latents, "base model's grid (and first step)": base - base_loss,
            f"{len(steps) - 1} more steps": done - base - validating,
            f"{len(validations)} validation(s)": validating, "report, grid, charts": ended - done}


def _cell(root: Path, steps: int, resolution: int) -> tuple[float, dict, int]:
    from studio.context import Studio
    from studio.pocket.concept import write_concept_dataset
    from studio.settings import Settings
    from studio.train import sweep_jobs
    from studio.train.config import RunConfig
    from studio.train.sweep import SweepRequest

    models = root / "models"
    models.mkdir(parents=True)
    (models / "builtin").symlink_to(Path(__file__).resolve().parent.parent / "models" / "builtin")
    studio = Studio.open(Settings(root=root, models_dir=models, allow_downloads=False, device="cpu",
                                  default_model="builtin:pocket"))
    write_concept_dataset(studio.settings.datasets_dir / "zq", trigger="zq", shape="star", count=8)
    base = RunConfig(name="cell", dataset="zq", trigger="zq", model="builtin:pocket", resolution=resolution)
    started = time.time()
    sweep_jobs.start_sweep(studio, SweepRequest("cell", base, {"max_steps": [steps]}))
    status = sweep_jobs.wait_sweep(studio, "cell", poll_s=0.5, timeout_s=1800)
    ended = time.time()
    if status.state != "done":
        raise SystemExit(f"the sweep ended {status.state}: {status.message}")
    said = next(e["text"] for e in _events(status.folder / "runs" / "r01" / "metrics.jsonl")
                if " px, device " in e.get("text", ""))  # "8 images, lora on builtin:pocket (SD 1.x), 64 px, ..."
    return ended - started, _phases(status.folder, started, ended), int(said.split(" px, ")[0].rsplit(" ", 1)[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--before", type=int, default=512, help="the resolution resolution 0 meant on pocket before")
    args = parser.parse_args()
    walls = {}
    for label, resolution in ((f"before: {args.before} px", args.before), ("now: resolution 0", 0)):
        with tempfile.TemporaryDirectory(prefix="bench-sweep-cell-") as tmp:
            wall, phases, px = _cell(Path(tmp), args.steps, resolution)
        walls[label] = wall
        print(f"{label} (trained at {px} px): a {args.steps}-step cell, {wall:.1f} s from start to report")
        for name, seconds in phases.items():
            print(f"  {name:38s} {seconds:7.1f} s")
    before, now = walls.values()
    print(f"now / before: x{now / before:.2f} wall")


if __name__ == "__main__":
    main()
