"""Training: run configs, the one loop for LoRA/DreamBooth/textual inversion, checkpoints, validation, export, jobs."""

from studio.train.config import RunConfig

from studio.train.presets import PRESETS, apply_preset
from studio.train.export import export_epoch
from studio.train.jobs import RunStatus, cancel_run, list_runs, resume_run, run_status, start_run, wait_run

__all__ = ["PRESETS", "RunConfig", "RunStatus", "apply_preset", "cancel_run", "export_epoch", "list_runs", "resume_run",
           "run_status", "start_run", "wait_run"]
