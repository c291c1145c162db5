"""What a run sets up around its steps: the accelerator (autocast, fp16 scaling, multi-GPU), the optimizer, a
resumed run's new learning rates, and the words for a run that diverged."""

from __future__ import annotations

from pathlib import Path

from studio.train import checkpoints
from studio.train.config import RunConfig
from studio.train.runlog import RunLog

MAX_GRAD_NORM = 1.0


class TrainingDiverged(Exception):
    """The loss or the weights became NaN or infinite (or the collapse guard fired: guard.CollapseDetected); the
    last good checkpoint is kept. `signal` names what fired."""

    signal = "nan"
    step: int | None = None


def diverged(what: str, run_dir: Path, config: RunConfig, why_good: str = "its weights are finite") -> str:
    last = checkpoints.latest_checkpoint(run_dir)
    kept = f"the checkpoint of step {last.step} is kept ({why_good})" if last else "no checkpoint yet"
    return f"{what}; stopped, {kept}. Lower the learning rate (now {config.unet_lr:g}) and resume or start again."


def mean_over_processes(accelerator, value: float) -> float:
    """The mean of `value` over a multi-GPU run's processes (each saw its own micro-batches), so every process
    judges the same loss; the value itself with one process."""
    if accelerator.num_processes == 1:
        return value
    import torch

    return float(accelerator.reduce(torch.tensor([value], device=accelerator.device), reduction="mean").item())


def main_says(accelerator, flag: bool) -> bool:
    """The main process's `flag` on every process (only it validates), so all of them stop together."""
    if accelerator.num_processes == 1:
        return flag
    import torch
    from accelerate.utils import broadcast

    return bool(broadcast(torch.tensor([int(flag)], device=accelerator.device), from_process=0).item())


def any_says(accelerator, flag: bool) -> bool:
    """Whether any process's `flag` is set, on every process (a cancel file one of them saw first, a SIGTERM one of
    them got), so all of them stop at the same step and none waits for the others in the next all-reduce."""
    if accelerator.num_processes == 1:
        return flag
    import torch

    return bool(accelerator.reduce(torch.tensor([int(flag)], device=accelerator.device), reduction="sum").item())


def process_seed(seed: int, rank: int) -> int:
    """The seed of process `rank` for draws each process makes on its own (LoRA dropout, from the global generator):
    `seed` itself for the first, so one process draws as before; others apart by a large odd stride."""
    return seed + rank * 7_919_000_003


DEBUG_NAN = "STUDIO_DEBUG_NAN"  # "STEP" or "STEP:RANK": see debug_nan


def debug_nan(loss, step: int, rank: int):
    """`loss`, made NaN from optimizer step STEP on (on process RANK only, when given) when the environment variable
    STUDIO_DEBUG_NAN says so: to see on a real run how a NaN stops it (docs/training.md, "Several GPUs"); without
    the variable, `loss` itself."""
    import os

    asked = os.environ.get(DEBUG_NAN)
    if not asked:
        return loss
    at, _, only = asked.partition(":")
    if step >= int(at) and (not only or int(only) == rank):
        return loss * float("nan")
    return loss


def take_new_learning_rates(optimizer, schedule, asked: list[dict]) -> list[str]:
    """After a resume restored the optimizer and schedule, use the learning rates the run asks for now (a resume
    may change lr): the schedule goes on from where it was, at the new base rate. Returns what changed, in words."""
    said = []
    for i, (group, want) in enumerate(zip(optimizer.param_groups, asked)):
        had = schedule.base_lrs[i]
        if abs(had - want["lr"]) > 1e-12 * max(abs(had), 1.0):
            schedule.base_lrs[i] = group["initial_lr"] = want["lr"]
            group["lr"] = want["lr"] * schedule.lr_lambdas[i](schedule.last_epoch)
            said.append(f"learning rate {want['lr']:g} from step {schedule.last_epoch} on (it was {had:g})")
    return said


def optimizer_fallback(config: RunConfig, device: str) -> str:
    """Why 8-bit AdamW, when asked for, cannot be had on `device` ("" when it can): the run's warning. Told without
    torch, so the studio says it when the run is queued as well as the run when it starts."""
    import importlib.util

    if config.optimizer != "adamw8bit":
        return ""
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes, which is not installed here (pip install bitsandbytes; requirements.txt "
                       "installs it on Linux x86-64)")
    if not device.startswith("cuda"):
        missing.append(f"a CUDA GPU (the device is {device})")
    if not missing:
        return ""
    return (f"8-bit AdamW needs {' and '.join(missing)}: this run uses AdamW, whose state takes 4x the memory "
            f"(8 bytes per trained weight instead of 2)")


def make_optimizer(groups: list[dict], config: RunConfig, device: str, log: RunLog):
    """AdamW (fused on CUDA, see below); 8-bit AdamW (bitsandbytes) when asked for and both bitsandbytes and a CUDA
    GPU are present, else AdamW, saying so as a warning (the Train tab keeps it in sight, the command line says it
    again at the end)."""
    import torch

    if config.optimizer == "adamw8bit":
        fallback = optimizer_fallback(config, device)
        if not fallback:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(groups, weight_decay=1e-2)
        log.event("message", text=fallback, warning=True)
    fused = device.startswith("cuda") and all(p.is_cuda and p.is_floating_point() for g in groups for p in g["params"])
    if fused:  # one kernel per step: the same update, fewer launches
        return torch.optim.AdamW(groups, weight_decay=1e-2, fused=True)
    # Elsewhere a LoRA's or an embedding's tensors are updated all at once (torch's foreach path): bit for bit the
    # per-tensor loop's update, in half the time a LoRA's hundred small tensors spend in Python. Not for a whole
    # model: foreach holds temporaries of every tensor at once, a second copy of its weights.
    return torch.optim.AdamW(groups, weight_decay=1e-2, foreach=not config.whole_model)


def make_accelerator(config: RunConfig, device: str):
    """accelerate handles autocast, fp16 loss scaling and, under `accelerate launch`, DDP across GPUs."""
    import os

    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"`device` is {device!r} but torch sees no CUDA GPU")
    if config.mixed_precision == "fp16" and not device.startswith("cuda"):
        raise ValueError(f"`mixed_precision` fp16 needs a CUDA GPU but the device is {device!r}; use bf16 or no")
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one global state per process; a second run in the same process (tests, notebooks)
        # with another precision would be refused, so a single-process run starts from a clean state
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        # one process on a card named by number (cuda:1): accelerate would take the first card, so it is told
        os.environ.pop("ACCELERATE_TORCH_DEVICE", None)
        if device.startswith("cuda:"):
            os.environ["ACCELERATE_TORCH_DEVICE"] = device
    # (several processes: studio.ranks started each with its card as LOCAL_RANK and without the user's accelerate
    # settings, so accelerate's own choices are the studio's)
    return Accelerator(mixed_precision=config.mixed_precision, cpu=device == "cpu")
