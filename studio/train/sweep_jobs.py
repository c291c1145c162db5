"""Sweep jobs: start a sweep (a driver in a child process that starts its runs one after another, one per GPU where
several are present, through the training jobs' own machinery), watch it, cancel it, continue it, export a cell.

workspace/sweeps/<name>/ holds sweep.json (the request and its plan), status.json, events.jsonl, log.txt, runs/<rNN>/
(each a whole run folder), report.json, grid.png and the charts. A cell that ends early (collapsed, failed) never
stops the sweep; a sweep whose driver died goes on from where it was when continued: finished runs stay, an
interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from studio import fileio
from studio.jobs import (ACTIVE, JobLog, ask_to_stop, cancel_job, job_state, one_start_at_a_time, reap, read_events,
                         read_status, settings_args, start_child, wait_job)
from studio.names import check_name
from studio.progress import Cancelled
from studio.train import data
from studio.train.config import RunConfig
from studio.train.jobs import folder_status, launch_run, list_runs
from studio.train.sweep import Cell, PlannedRun, SweepRequest, plan
from studio.train.sweep_report import REPORT, build_report, write_charts, write_grid, write_report

REQUEST = "sweep.json"
EVENTS = "events.jsonl"


def sweeps_dir(settings) -> Path:
    return settings.workspace_dir / "sweeps"


def sweep_folder(settings, name: str) -> Path:
    return sweeps_dir(settings) / check_name(name, "sweep")


@dataclass
class SweepStatus:
    name: str
    state: str  # starting | running | done | failed | cancelled | stopped (the driver died without a word)
    message: str
    request: SweepRequest
    folder: Path
    report: dict
    messages: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def exit_code(self) -> int:
        """The `sweep` command's: 0 when it ran to the end (collapsed cells included), 130 cancelled, 1 else."""
        return {"done": 0, "cancelled": 130}.get(self.state, 1)

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for cell in self.report["cells"]:
            found[cell["state"]] = found.get(cell["state"], 0) + 1
        return found

    def line(self) -> str:
        cells = ", ".join(f"{n} {state}" for state, n in self.counts().items())
        best = f", best {self.report['best']} (by {self.report['best_by']})" if self.report.get("best") else ""
        end = f": {self.message}" if self.message and not self.active else ""
        return f"sweep {self.name}: {self.state}, {len(self.report['cells'])} cells ({cells}){best}{end}"


# ---- the plan on disk ----------------------------------------------------------------------------------------------

def _steps_per_epoch(items, native: int):
    def count(config: RunConfig) -> int:
        return data.steps_per_epoch(items, repeats=data.run_repeats(config), batch_size=config.batch_size,
                                    grad_accum=config.grad_accum, resolution=config.resolution or native,
                                    buckets=config.buckets, balance=config.balance)
    return count


def _read(folder: Path) -> tuple[SweepRequest, list[PlannedRun], list[Cell], list[str]]:
    saved = json.loads((folder / REQUEST).read_text(encoding="utf-8"))
    runs = [PlannedRun(r["id"], RunConfig.from_json(r["config"]), r["cells"]) for r in saved["runs"]]
    return (SweepRequest.from_json(saved["request"]), runs, [Cell(**c) for c in saved["cells"]], saved["notes"])


def _run_folder(folder: Path, run_id: str) -> Path:
    return folder / "runs" / run_id


def _statuses(folder: Path, runs: list[PlannedRun]) -> dict:
    return {r.id: folder_status(_run_folder(folder, r.id), r.config.name) for r in runs
            if (_run_folder(folder, r.id) / "run.json").is_file()}


def refresh_report(folder: Path, state: str | None = None) -> dict:
    """Rebuild report.json from the run folders (and, with `state` done/failed/cancelled, the grid and charts)."""
    request, runs, cells, notes = _read(folder)
    state = state or job_state(folder)[0]
    report = build_report(request.name, request, runs, cells, notes, _statuses(folder, runs), state)
    if state not in ACTIVE:
        grid = write_grid(folder, report)
        report["grid_image"] = str(grid) if grid else None
        report["charts"] = [str(p) for p in write_charts(folder, report)]
    write_report(folder, report)
    return report


# ---- the studio's side ---------------------------------------------------------------------------------------------

def start_sweep(studio, request: SweepRequest, *, resume: bool = False) -> SweepStatus:
    """Check `request` and every cell's settings, plan the runs, write sweep.json and start the driver. With
    `resume`, continue the sweep of that name as planned (the request given is not used but for its name)."""
    if resume:
        return resume_sweep(studio, request.name)
    # 1. Check inputs before anything starts: the request, the model, the dataset, every cell's settings
    request = request.check()
    settings = studio.settings
    folder = sweep_folder(settings, request.name)
    request.base = base = replace(request.base, model=request.base.model or studio.store.default_model)
    ref = studio.store.resolve(base.model)
    items = data.subject_items(settings, base)  # every subject's pictures
    if base.clip_model:
        from studio.models.clip import resolve_clip

        resolve_clip(settings, base.clip_model)
    native = ref.family.native_resolution if ref.family else 512
    runs, cells, notes = plan(request, _steps_per_epoch(items, native))

    # 2. One job on the device at a time: the runs' start lock covers sweeps too
    with one_start_at_a_time(settings.runs_dir):
        if (folder / REQUEST).is_file():
            raise ValueError(f"`name` {request.name!r} is taken by an earlier sweep; resume it or choose another name")
        _not_busy(studio, request.name)
        saved = {"request": request.to_json(), "runs": [{"id": r.id, "config": r.config.to_json(), "cells": r.cells}
                                                        for r in runs],
                 "cells": [c.__dict__ for c in cells], "notes": notes, "created": time.time()}
        fileio.write_json(folder / REQUEST, saved)
        refresh_report(folder, "starting")
        _start_driver(studio, folder)
    return sweep_status(studio, request.name)


def resume_sweep(studio, name: str) -> SweepStatus:
    """Continue sweep `name`: runs done or failed stay as they are, the others start or resume from their
    checkpoint."""
    folder = sweep_folder(studio.settings, name)
    if not (folder / REQUEST).is_file():
        raise ValueError(f"`name` {name!r} has no sweep to resume in {folder}")
    with one_start_at_a_time(studio.settings.runs_dir):
        _not_busy(studio, name)
        JobLog(folder, EVENTS).event("message", text="continued")
        _start_driver(studio, folder)
    return sweep_status(studio, name)


def _not_busy(studio, name: str) -> None:
    busy = [r.name for r in list_runs(studio) if r.active] + [s for s in active_sweeps(studio) if s != name]
    if busy:
        raise ValueError(f"{busy[0]!r} is training; cancel it or wait for it before starting sweep {name!r}")
    if name in active_sweeps(studio):
        raise ValueError(f"sweep {name!r} is already running")


def _start_driver(studio, folder: Path) -> None:
    fileio.write_json(folder / "status.json", {"state": "starting", "message": "starting", "updated": time.time()})
    studio.cache.release()  # its runs load the model; the studio's copy would only take the device's memory
    s = studio.settings
    start_child(folder, ["-m", "studio.train.sweep_child", str(folder), *settings_args(s, s.device)], cwd=s.root)


def active_sweeps(studio) -> list[str]:
    root = sweeps_dir(studio.settings)
    found = [p for p in root.iterdir() if (p / REQUEST).is_file()] if root.is_dir() else []
    return [p.name for p in found if job_state(p)[0] in ACTIVE]


def sweep_status(studio, name: str) -> SweepStatus:
    """What sweep `name` is doing or how it ended, with its report built from its run folders now."""
    folder = sweep_folder(studio.settings, name)
    if not (folder / REQUEST).is_file():
        raise ValueError(f"`name` {name!r} is not a sweep (no {folder / REQUEST})")
    state, message = job_state(folder)
    request, runs, cells, notes = _read(folder)
    report = build_report(name, request, runs, cells, notes, _statuses(folder, runs), state)
    written = _saved_report(folder)
    report["grid_image"], report["charts"] = written.get("grid_image"), written.get("charts", [])
    messages = [e["text"] for e in read_events(folder, EVENTS) if e["type"] == "message"]
    return SweepStatus(name, state, message, request, folder, report, messages)


def _saved_report(folder: Path) -> dict:
    try:
        return json.loads((folder / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def cancel_sweep(studio, name: str, *, wait_s: float = 0.0) -> SweepStatus:
    """Ask sweep `name` to stop: its running runs stop after their step with a checkpoint; resume continues."""
    return cancel_job(sweep_folder(studio.settings, name), lambda: sweep_status(studio, name), wait_s=wait_s)


def wait_sweep(studio, name: str, *, poll_s: float = 0.5, timeout_s: float | None = None) -> SweepStatus:
    return wait_job(sweep_folder(studio.settings, name), lambda: sweep_status(studio, name), f"sweep {name!r}",
                    poll_s=poll_s, timeout_s=timeout_s)


def list_sweeps(studio) -> list[SweepStatus]:
    """Every sweep on disk, newest first."""
    root = sweeps_dir(studio.settings)
    folders = sorted((p for p in root.iterdir() if (p / REQUEST).is_file()) if root.is_dir() else [],
                     key=lambda p: -(p / REQUEST).stat().st_mtime)
    return [sweep_status(studio, p.name) for p in folders]


def export_cell(studio, name: str, cell: str = "") -> list[Path]:
    """Export a cell's kept weights (the best cell by default) as `<sweep>-<cell>`: a base model in models/base/
    (diffusers folder and single file) for finetune and DreamBooth, a LoRA or an embedding for the others."""
    from studio.train.export import export_step

    status = sweep_status(studio, name)
    cell = cell or status.report.get("best") or ""
    if not cell:
        raise ValueError(f"sweep {name!r} has no best cell (no done cell with a score): name the cell to export")
    entry = next((c for c in status.report["cells"] if c["id"] == cell), None)
    if entry is None:
        raise ValueError(f"`cell` {cell!r} is not a cell of sweep {name!r} "
                         f"({', '.join(c['id'] for c in status.report['cells'])})")
    if entry["state"] != "done":
        raise ValueError(f"`cell` {cell} is {entry['state']}: only a done cell has weights to export")
    return export_step(studio.store, _run_folder(status.folder, entry["run"]), entry["step"],
                       studio.settings.models_dir, out_name=f"{name}-{cell}")


# ---- the driver (in its child process) -----------------------------------------------------------------------

def _slots(settings) -> list[str]:
    """Where runs go: one per CUDA GPU (cuda:0, cuda:1, ...), else the one device."""
    device = settings.resolve_device()
    if device == "cuda":
        import torch

        return [f"cuda:{i}" for i in range(max(1, torch.cuda.device_count()))]
    return [device]


def drive(studio, folder: Path, log: JobLog, should_stop, poll_s: float = 0.5) -> str:
    """Run the sweep's runs, as many at once as there are slots, until all ended; a run that ends early never
    stops the others. Raises Cancelled (after stopping its runs) when `should_stop()` turns true."""
    request, runs, cells, _ = _read(folder)
    slots = _slots(studio.settings)
    todo = [r for r in runs if _state(folder, r) not in ("done", "failed")]
    running: dict[str, PlannedRun] = {}  # slot -> run
    log.event("message", text=f"{len(runs)} runs for {len(cells)} cells; {len(runs) - len(todo)} already ended; "
                              f"on {', '.join(slots)}")
    while todo or running:
        if should_stop():
            for slot, run in running.items():
                ask_to_stop(_run_folder(folder, run.id))
            while any(job_state(_run_folder(folder, r.id))[0] in ACTIVE for r in running.values()):
                time.sleep(poll_s)
            raise Cancelled(f"cancelled; {len(todo) + len(running)} runs left (resume continues)")
        for slot in slots:
            if slot in running or not todo:
                continue
            run = todo.pop(0)
            run_folder = _run_folder(folder, run.id)
            state = _state(folder, run)
            if state in ACTIVE:  # the run a killed driver left training goes on: watch it
                log.event("message", text=f"{run.id} still training from before; watching it")
            else:
                config = replace(run.config, device=slot)
                resume = (run_folder / "run.json").is_file()
                with one_start_at_a_time(studio.settings.runs_dir):
                    launch_run(studio, config, run_folder, resume=resume,
                               note=f"sweep {request.name}: cells {', '.join(run.cells)}")
                log.event("message", text=f"{run.id} ({', '.join(run.cells)}) {'resumed' if resume else 'started'} "
                                          f"on {slot}")
            running[slot] = run
        for slot, run in list(running.items()):
            run_folder = _run_folder(folder, run.id)
            state, message = job_state(run_folder)
            if state in ACTIVE:
                continue
            reap(run_folder)
            if state == "stopped":  # died while watched (out of memory, killed): failed, and the sweep goes on
                JobLog(run_folder, "metrics.jsonl").status("failed", message, exit_code=1)
                state = "failed"
            del running[slot]
            log.event("message", text=f"{run.id} {state}: {read_status(run_folder).get('message', message)}")
            refresh_report(folder, "running")
        time.sleep(poll_s)
    report = refresh_report(folder, "done")
    done = sum(c["state"] == "done" for c in report["cells"])
    return f"{done} of {len(report['cells'])} cells done" + (f", best {report['best']}" if report["best"] else "")


def _state(folder: Path, run: PlannedRun) -> str:
    run_folder = _run_folder(folder, run.id)
    return job_state(run_folder)[0] if (run_folder / "run.json").is_file() else "pending"
