"""Sweeps as long jobs (studio.jobs): a driver in a child process starts the sweep's runs one after another, one per
GPU where several are present (each a run of studio.train.jobs, launched by the driver, which holds the devices),
or with the studio's --workers each run sent to the workers as a remote run (the driver claims nothing here);
start, watch, cancel and continue are the one kind's calls; and a cell's weights are exported from here.

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

from studio import children, claims, fileio, jobs
from studio.joblog import ACTIVE, JobLog, ask_to_stop, read_events, read_status
from studio.names import check_name
from studio.progress import Cancelled
from studio.train import data
from studio.train.config import RunConfig
from studio.train.jobs import estimate_seconds, folder_status, launch_run
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
        said = self.message and (not self.active or self.state in ("queued", "cancelling"))
        end = f": {self.message}" if said else ""
        return f"sweep {self.name}: {self.state}, {len(self.report['cells'])} cells ({cells}){best}{end}"


# ---- the plan on disk ----------------------------------------------------------------------------------------------

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
    state = state or jobs.job_state(folder)[0]
    report = build_report(request.name, request, runs, cells, notes, _statuses(folder, runs), state)
    if state not in ACTIVE:
        grid = write_grid(folder, report)
        report["grid_image"] = str(grid) if grid else None
        report["charts"] = [str(p) for p in write_charts(folder, report)]
    write_report(folder, report)
    return report


# ---- the studio's side ---------------------------------------------------------------------------------------------

def start_sweep(studio, request: SweepRequest, *, resume: bool = False) -> SweepStatus:
    """Check `request` and every cell's settings, plan the runs, write sweep.json and queue the driver (it starts at
    once when the devices are free). With `resume`, continue the sweep of that name as planned (the request given is
    not used but for its name)."""
    if resume:
        return resume_sweep(studio, request.name)
    # 1. Check inputs before anything is queued: the request, the model, the dataset, every cell's settings
    request = request.check()
    settings = studio.settings
    request.base = base = replace(request.base, model=request.base.model or studio.store.default_model)
    ref = studio.store.resolve(base.model)
    items = data.subject_items(settings, base)  # every subject's pictures
    if base.clip_model:
        from studio.models.clip import resolve_clip

        resolve_clip(settings, base.clip_model)
    native = ref.family.native_resolution if ref.family else 512
    runs, cells, notes = plan(request, lambda config: data.config_steps_per_epoch(items, config, native))
    saved = {"request": request.to_json(), "runs": [{"id": r.id, "config": r.config.to_json(), "cells": r.cells}
                                                    for r in runs],
             "cells": [c.__dict__ for c in cells], "notes": notes, "created": time.time()}

    def prepare(folder: Path) -> None:
        fileio.write_json(folder / REQUEST, saved)
        refresh_report(folder, "queued")

    # 2. Queue the driver: it holds every device its runs take (none here when they go to the workers)
    steps = sum(r.config.max_steps for r in runs)
    remote = f" on the remote workers ({settings.workers})" if settings.workers else ""
    return jobs.start(studio, SWEEPS, request.name, prepare, placement=_placement(settings),
                      needs=f"a sweep of {len(runs)} runs on {base.model}{remote}",
                      estimate_s=estimate_seconds(studio, base, steps))


def resume_sweep(studio, name: str) -> SweepStatus:
    """Continue sweep `name`: runs done or failed stay as they are, the others start or resume from their
    checkpoint."""
    def prepare(folder: Path) -> None:
        log = JobLog(folder, EVENTS)
        log.event("message", text="continued")
        log.close()

    return jobs.start(studio, SWEEPS, name, prepare, resume=True, placement=_placement(studio.settings),
                      needs=f"the sweep {name!r}")


def sweep_status(studio, name: str) -> SweepStatus:
    """What sweep `name` is doing or how it ended, with its report built from its run folders now."""
    return jobs.status(studio, SWEEPS, name)


def folder_sweep_status(folder: Path, name: str) -> SweepStatus:
    state, message = jobs.job_state(folder)
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
    """Ask sweep `name` to stop (its running runs stop after their step with a checkpoint; resume continues), or take
    it out of the queue."""
    return jobs.cancel(studio, SWEEPS, name, wait_s=wait_s)


def wait_sweep(studio, name: str, *, poll_s: float = 0.5, timeout_s: float | None = None) -> SweepStatus:
    return jobs.wait(studio, SWEEPS, name, poll_s=poll_s, timeout_s=timeout_s)


def list_sweeps(studio) -> list[SweepStatus]:
    """Every sweep on disk, newest first."""
    return jobs.list_jobs(studio, SWEEPS)


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
                       studio.settings.own_models_dir, out_name=f"{name}-{cell}")


# ---- the driver (in its child process) -----------------------------------------------------------------------

def _slots(settings) -> list[str]:
    """Where runs go: one per CUDA GPU (cuda:0, cuda:1, ...) when the studio's device is "auto" or "cuda", else the
    one device: the devices the sweep claims."""
    return claims.every_gpu() if settings.device in ("auto", "cuda") else [claims.device_key(settings.device)]


def _placement(settings) -> claims.Placement:
    """What the sweep's driver claims here: every device its runs take, or, with --workers, none: its runs go to
    the workers, each a remote run of its own (studio.remote), so each is cancelled, and goes on on another worker
    when its worker is lost, as a single run does."""
    return claims.Placement(settings.device, [] if settings.workers else _slots(settings))


def _worker_slots(settings, log: JobLog) -> list[str]:
    """With --workers, as many runs at once as the workers' cluster runs jobs (its GPUs; on a CPU cluster its
    CPUs), asked when the sweep starts: more would only wait there, each holding a connection."""
    from studio.remote.child import worker_slots

    return [f"worker {k}" for k in range(1, worker_slots(settings, log) + 1)]


def drive(studio, folder: Path, log: JobLog, should_stop, poll_s: float = 0.5) -> str:
    """Run the sweep's runs, as many at once as there are slots, until all ended; a run that ends early never
    stops the others. Raises Cancelled (after stopping its runs) when `should_stop()` turns true."""
    request, runs, cells, _ = _read(folder)
    workers = studio.settings.workers
    slots = _worker_slots(studio.settings, log) if workers else _slots(studio.settings)
    todo = [r for r in runs if _state(folder, r) not in ("done", "failed")]
    running: dict[str, PlannedRun] = {}  # slot -> run
    where = f"on the remote workers ({workers}), {len(slots)} at once" if workers else f"on {', '.join(slots)}"
    log.event("message", text=f"{len(runs)} runs for {len(cells)} cells; {len(runs) - len(todo)} already ended; "
                              f"{where}")
    while todo or running:
        if should_stop():
            for slot, run in running.items():
                ask_to_stop(_run_folder(folder, run.id))
            while any(jobs.job_state(_run_folder(folder, r.id))[0] in ACTIVE for r in running.values()):
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
                config = run.config if workers else replace(run.config, device=slot)
                resume = (run_folder / "run.json").is_file()
                launch_run(studio, config, run_folder, resume=resume,
                           note=f"sweep {request.name}: cells {', '.join(run.cells)}")
                log.event("message", text=f"{run.id} ({', '.join(run.cells)}) {'resumed' if resume else 'started'} "
                                          f"on {slot}")
            running[slot] = run
        for slot, run in list(running.items()):
            run_folder = _run_folder(folder, run.id)
            state, message = jobs.job_state(run_folder)
            if state in ACTIVE:
                continue
            children.reap_finished()
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
    return jobs.job_state(run_folder)[0] if (run_folder / "run.json").is_file() else "pending"


SWEEPS = jobs.declare(jobs.JobKind(
    key="sweep", noun="sweep", request=REQUEST, events=EVENTS, child="studio.train.sweep_child", root=sweeps_dir,
    where=sweep_folder, read=folder_sweep_status))
