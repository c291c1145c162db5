"""Training runs as long jobs (studio.jobs): what a run's child is and what its status reads; start, resume (the one
resume rule), status, cancel, wait and list, each the one kind's call.

A run waits in the queue until its device is free, and the studio gives back its cached weights before the child
starts. A run's folder is its whole record, so runs and their status are listed again after the studio restarts; a
child that died without a word shows as `stopped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from studio import claims, fileio, jobs
from studio.joblog import ACTIVE
from studio.models.loaders import check_nf4
from studio.names import check_name
from studio.train import checkpoints, data, fit, sampling
from studio.train.config import RunConfig
from studio.train.runlog import EVENTS, RunLog, read_events, read_status
from studio.train.setup import optimizer_fallback


@dataclass
class RunStatus:
    name: str
    state: str  # starting | running | done | failed | cancelled | stopped (died without a word)
    message: str
    config: RunConfig
    run_dir: Path
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    it_s: float | None = None
    eta_s: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss) for the loss plot
    validations: list[dict] = field(default_factory=list)  # epoch events with grid, scores, mean_score
    best_epoch: int | None = None
    files: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # messages saying the run does less than asked: kept in sight
    checkpoint_step: int | None = None  # the step a resume continues from
    failure_code: int = 1  # how a failed run ended: 2 bad input or a full disk, 3 stopped by a guard (NaN...), 1 else
    signal: str | None = None  # what stopped a run with code 3: nan, loss, images or clip (the collapse guard)
    base_validation: dict | None = None  # the base model's grid and scores, before the first step
    step_validations: list[dict] = field(default_factory=list)  # validation events at validate_at_steps
    saved_epochs: list[int] = field(default_factory=list)  # the epochs whose weights are kept (export_epoch's)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def exit_code(self) -> int:
        """The `train` command's exit code for how the run ended."""
        return {"done": 0, "cancelled": 130}.get(self.state, self.failure_code if self.state == "failed" else 1)

    def line(self) -> str:
        """One line for the CLI and the run list."""
        parts = [f"{self.name}: {self.state}"]
        if self.total_steps:
            parts.append(f"step {self.step}/{self.total_steps}, epoch {self.epoch}/{self.epochs}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.it_s:
            parts.append(f"{self.it_s:.2f} it/s")
        if self.eta_s is not None and self.active:
            hours, rest = divmod(int(self.eta_s), 3600)
            parts.append(f"ETA {hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"ETA {rest // 60}:{rest % 60:02d}")
        if self.message and (not self.active or self.state in ("queued", "cancelling")):
            parts.append(self.message)
        return ", ".join(parts)


def run_dir(settings, name: str) -> Path:
    """Where run `name` lives: workspace/runs/<name>/ (a name, never a path)."""
    return settings.runs_dir / check_name(name, "run")


# What a resumed run may change: it can train longer, or go on at another learning rate.
RESUME_CHANGES = ("epochs", "max_steps", "lr")


def resume_run(studio, name: str, *, force: bool = False, **changes) -> RunStatus:
    """Continue run `name` from its last complete checkpoint with the settings in its run.json. `changes` may give
    epochs, max_steps or lr (None keeps the saved value); each change is said in the run's log. This is the one
    resume rule: the Train tab, the command line and the API all resume through it. `force`: as start_run's."""
    unknown = sorted(set(changes) - set(RESUME_CHANGES))
    if unknown:
        raise ValueError(f"a resumed run keeps its settings; only {', '.join(RESUME_CHANGES)} can change, not "
                         f"{', '.join(unknown)} (start a new run for that)")
    folder = run_dir(studio.settings, name)
    if not (folder / "run.json").is_file():
        raise ValueError(f"`name` {name!r} has no run to resume in {folder}")
    saved = RunConfig.load(folder / "run.json")
    given = {k: v for k, v in changes.items() if v is not None and v != getattr(saved, k)}
    config = replace(saved, **given)
    said = [f"{k} {getattr(saved, k)!r} -> {v!r}" for k, v in given.items()]
    return _start(studio, config, resume=True, force=force, note=f"resumed with {', '.join(said)}" if said else "")


def start_run(studio, config: RunConfig, *, resume: bool = False, force: bool = False,
              vram_gb: float | None = None) -> RunStatus:
    """Check `config`, decide its device-dependent defaults, check that its memory plan fits the device (a
    ValueError naming the preset or settings that would, unless `force`), write run.json and queue the run (it
    starts at once when the device is free). `vram_gb`: plan for a GPU of that many GB instead of the device's own.
    With `resume`, continue the run of the same name from its last complete checkpoint (see resume_run: its saved
    settings, with this config's epochs and max_steps)."""
    if resume:
        return resume_run(studio, config.name, force=force, epochs=config.epochs, max_steps=config.max_steps)
    return _start(studio, config, resume=False, force=force, vram_gb=vram_gb)


def _start(studio, config: RunConfig, *, resume: bool, force: bool = False, vram_gb: float | None = None,
           note: str = "") -> RunStatus:
    # 1. Check inputs before anything is queued
    config = replace(config, model=config.model or studio.store.default_model).check()
    ref = studio.store.resolve(config.model)  # an unknown model fails here, not in the child
    items = data.subject_items(studio.settings, config)  # every subject's dataset is there
    if config.continue_from:  # "add a subject": the run it starts from has a LoRA this run can take
        from studio.train.checkpoints import start_weights

        start_weights(studio.settings.runs_dir, config.continue_from, config)
    device = config.device or studio.settings.device
    if studio.settings.workers:  # sent to a worker: one GPU of its own (or its CPU, on a CPU cluster)
        if config.gpus or config.processes > 1:
            raise ValueError(f"`gpus` and `processes` choose this machine's cards and processes; a run sent to the "
                             f"workers ({studio.settings.workers}) takes one worker's GPU: leave them empty")
        placement = claims.Placement(device, [])
    else:
        if device.startswith("cuda") and not claims.gpu_count():
            raise ValueError(f"`device` is {device!r} but there is no CUDA GPU (the NVIDIA driver lists none)")
        placement = claims.place(device, config.gpus, config.processes)  # the cards asked for, or N CPU processes
        if claims.device_key(placement.device) == "cpu" and config.mixed_precision == "fp16":
            raise ValueError("`mixed_precision` 'fp16' needs a CUDA GPU; on the CPU use 'bf16' or 'no'")
    if config.base_precision == "nf4":
        check_nf4(claims.device_key(placement.device))  # no bitsandbytes, or no GPU: refused now, not after the load
    warning = optimizer_fallback(config, claims.device_key(placement.device))  # said from the start (and again)
    # the defaults that depend on the device, and the memory plan against it: the one check before a run is queued
    # (a run sent to the workers decides on the worker, whose GPU is not known here)
    said = []
    if not studio.settings.workers:
        config, said = fit.fit_or_refuse(studio.store, config, fit.device_for(placement.device, vram_gb), force=force)

    # 2. Queue it: one job on a device at a time (a second would fight the first for memory and time); several
    #    processes (one per GPU) share each micro-batch
    native = ref.family.native_resolution if ref.family else 512
    steps = config.max_steps or config.epochs * data.config_steps_per_epoch(items, config, native,
                                                                             placement.processes)
    on = f" on {placement.processes} processes" if placement.processes > 1 else ""
    on = f" on a remote worker ({studio.settings.workers})" if studio.settings.workers else on
    return jobs.start(studio, RUNS, config.name, lambda folder: _record(config, folder, [note, *said], warning),
                      resume=resume,
                      placement=placement,
                      needs=f"training a {config.method} on {config.model} at {config.resolution or native} px{on}",
                      estimate_s=estimate_seconds(studio, config, steps))


def _record(config: RunConfig, folder: Path, notes: list[str], warning: str = "") -> None:
    fileio.write_json(folder / "run.json", config.to_json())
    if any(notes) or warning:
        log = RunLog(folder)
        for note in filter(None, notes):
            log.event("message", text=note)
        if warning:
            log.event("message", text=warning, warning=True)
        log.close()


def estimate_seconds(studio, config: RunConfig, steps: int) -> float | None:
    """About how long `steps` take: at the pace of the newest run on the same base, method and size."""
    root = studio.settings.runs_dir
    for folder in sorted(root.glob("*/run.json") if root.is_dir() else [], key=lambda p: -p.stat().st_mtime):
        other = RunConfig.load(folder)
        if (other.model, other.method, other.resolution, other.batch_size) == (
                config.model, config.method, config.resolution, config.batch_size):
            paces = [e["it_s"] for e in read_events(folder.parent) if e["type"] == "step" and e.get("it_s")]
            if paces:
                return steps / paces[-1]
    return None


def launch_run(studio, config: RunConfig, folder: Path, *, resume: bool, note: str = "") -> None:
    """Record the run and start its child now, outside the queue: for a sweep's runs, started by the sweep's driver
    (which holds the device)."""
    _record(config, folder, [note])
    jobs.launch(studio.settings, RUNS, folder, config.device or studio.settings.device, resume=resume)


def run_status(studio, name: str) -> RunStatus:
    """What run `name` is doing or how it ended, from its folder."""
    return jobs.status(studio, RUNS, name)


def folder_status(folder: Path, name: str) -> RunStatus:
    """What the run in `folder` is doing or how it ended (a run of workspace/runs/, or a sweep's)."""
    config = RunConfig.load(folder / "run.json")
    status = read_status(folder)
    state, message = jobs.job_state(folder)
    result = RunStatus(name, state, message, config, folder,
                       total_steps=status.get("total_steps", 0), epochs=status.get("epochs", 0),
                       files=status.get("files", []), best_epoch=status.get("best_epoch"),
                       failure_code=int(status.get("exit_code", 1)), signal=status.get("signal"))
    for event in read_events(folder):
        if event["type"] in ("epoch", "validation"):
            _moved_with(folder, event)
        if event["type"] == "step":
            result.step, result.total_steps, result.epoch = event["step"], event["total"], event["epoch"]
            result.loss, result.it_s, result.eta_s = event["loss"], event["it_s"], event["eta_s"]
            if result.losses and result.losses[-1][0] >= event["step"]:  # a resume rewinds the curve
                result.losses = [(s, l) for s, l in result.losses if s < event["step"]]
                result.step_validations = [v for v in result.step_validations if v["step"] < event["step"]]
            result.losses.append((event["step"], event["loss"]))
        elif event["type"] == "epoch":
            result.validations = [v for v in result.validations if v["epoch"] != event["epoch"]] + [event]
        elif event["type"] == "message":
            result.messages.append(event["text"])
            if event.get("warning") and event["text"] not in result.warnings:
                result.warnings.append(event["text"])
        elif event["type"] == "validation" and event["stage"] == "base":
            result.base_validation = event
        elif event["type"] == "validation" and event["stage"] == "step":  # a resume makes a step's grid again
            result.step_validations = [v for v in result.step_validations if v["step"] != event["step"]] + [event]
    if result.best_epoch is None:  # a run under way: the best so far
        result.best_epoch = sampling.run_best_epoch(result.validations)
    last = checkpoints.latest_checkpoint(folder)
    result.checkpoint_step = last.step if last else None
    result.saved_epochs = checkpoints.saved_epochs(folder)
    return result


def _moved_with(folder: Path, event: dict) -> None:
    """An event's pictures where they are now: a run's samples are written under its folder with absolute paths,
    and a workspace moved (or restored from a backup) keeps them under the run's folder, not where it was."""
    def here(path):
        p = Path(path)
        if p.is_relative_to(folder) or "samples" not in p.parts:
            return path
        last = max(k for k, part in enumerate(p.parts) if part == "samples")
        return str(folder.joinpath(*p.parts[last:]))

    if event.get("grid"):
        event["grid"] = here(event["grid"])
    if isinstance(event.get("images"), list):
        event["images"] = [here(p) for p in event["images"]]


def cancel_run(studio, name: str, *, wait_s: float = 0.0) -> RunStatus:
    """Ask run `name` to stop after its current step (it writes a checkpoint first), or take it out of the queue;
    optionally wait for it."""
    return jobs.cancel(studio, RUNS, name, wait_s=wait_s)


def wait_run(studio, name: str, *, poll_s: float = 0.5, timeout_s: float | None = None) -> RunStatus:
    return jobs.wait(studio, RUNS, name, poll_s=poll_s, timeout_s=timeout_s)


def list_runs(studio) -> list[RunStatus]:
    """Every run on disk, newest first."""
    return jobs.list_jobs(studio, RUNS)


RUNS = jobs.declare(jobs.JobKind(
    key="run", noun="run", request="run.json", events=EVENTS, child="studio.train.child",
    root=lambda settings: settings.runs_dir, where=run_dir, read=lambda folder, name: folder_status(folder, name),
    remaining=lambda status: status.eta_s if status.state == "running" else None, multi_gpu=True, remote=True))
