"""Training: run configs, the one loop for LoRA/DreamBooth/textual inversion, checkpoints, validation, export, jobs."""

from studio.train.config import PRESETS, RunConfig, apply_preset
from studio.train.data import dataset_trigger, list_datasets
from studio.train.export import export_epoch
from studio.train.jobs import RunStatus, cancel_run, list_runs, run_status, start_run, wait_run

__all__ = ["PRESETS", "RunConfig", "RunStatus", "apply_preset", "cancel_run", "dataset_trigger", "export_epoch",
           "list_datasets", "list_runs", "run_status", "start_run", "wait_run"]
