"""Checkpoints: trained weights, optimizer and schedule state at a step, written as a whole folder or not at all.

A checkpoint folder is built under a temporary name and renamed into place, so a run killed mid-write keeps its
previous checkpoint; only then are older ones removed.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from studio import fileio

KEEP = 1  # complete checkpoints kept per run (epoch weights for LoRA/TI are kept separately, see epoch_file)
# ...and besides it the newest one written right after a validation the collapse guard passed ("validated"), so a
# run stopped by the guard can go back to weights whose pictures were seen to be sound


@dataclass
class Checkpoint:
    folder: Path
    step: int
    epoch: int  # epochs completed when it was written
    meta: dict


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a run writes checkpoints and how many it keeps, from what was asked, one checkpoint's size and the disk.
    A whole-model run's checkpoint (every weight, the EMA average, the optimizer's state: 10-14 GB for SD 1.5, ~40 GB
    for SDXL) is written only where `save_every_epochs` or `checkpoint_every_steps` asks, at the end and when
    cancelled; a LoRA's (small) as the validation plan says. Kept: the latest and, where the disk has room for three
    (the two kept and the one being written), the last one after a passed validation too."""

    size: int  # bytes of one checkpoint (estimated before the first: checkpoint_bytes)
    free: int  # bytes free on the run's disk at the start
    room: int  # checkpoints the disk holds, those of this run already there included
    whole_model: bool
    asked: bool  # save_every_epochs or checkpoint_every_steps given

    @property
    def keep_validated(self) -> bool:
        return self.room >= 3

    @property
    def between(self) -> bool:
        """Whether checkpoints are written before the end (and a cancel)."""
        return self.room >= 2 and (self.asked or not self.whole_model)

    @property
    def at_all(self) -> bool:
        return self.room >= 1

    def note(self) -> str:
        """The run log's line on this policy ("" for a LoRA on a roomy disk: nothing to say)."""
        size, free = f"{self.size / 1e9:.2f} GB", f"{self.free / 1e9:.1f} GB"
        if not self.at_all:
            return (f"no checkpoints: one takes {size} and the disk has {free} free, so a cancelled run cannot "
                    f"resume; free some space first")
        if self.room == 1:
            return (f"checkpoints only at the end and when cancelled: one takes {size} and the disk holds one more "
                    f"({free} free)")
        said = []
        if self.whole_model:
            said.append(f"whole-model checkpoints take {size} each (the weights, the EMA average and the "
                        f"optimizer's state): written " + ("as save_every_epochs / checkpoint_every_steps ask, "
                                                           if self.asked else "") +
                        "at the end and when cancelled" + ("" if self.asked else
                                                           "; save_every_epochs or checkpoint_every_steps ask for "
                                                           "more"))
        if not self.keep_validated:
            said.append(f"the disk holds {self.room} checkpoints of {size} ({free} free): only the latest is kept "
                        f"(not also the one after the last passed validation)")
        return "; ".join(said)


def checkpoint_policy(run_dir: Path, config, size: int) -> CheckpointPolicy:
    """The policy for a run of `config` in `run_dir` whose checkpoints take `size` bytes each."""
    import shutil

    root = Path(run_dir)
    free = shutil.disk_usage(root if root.exists() else root.parent).free
    there = len(list((root / "checkpoints").glob("step-*")))
    room = there + free // max(size, 1)
    return CheckpointPolicy(size, free, room, config.whole_model,
                            bool(config.save_every_epochs or config.checkpoint_every_steps))


def checkpoint_bytes(params: list, optimizer, *, averaged: dict | None = None) -> int:
    """One checkpoint's bytes, told before the first is written: the trained `params` (as they are kept), the EMA
    average (`averaged`: name -> tensor) and the optimizer's state (AdamW: two float32 moments a parameter; 8-bit
    AdamW: two bytes)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the optimizer
    per_param = 2 if "8bit" in type(inner).__name__ else 8
    weights = sum(p.numel() * p.element_size() for p in params)
    return weights + tensor_bytes(averaged or {}) + per_param * sum(p.numel() for p in params)


def save_checkpoint(run_dir: Path, step: int, epoch: int, weights: dict, training_state: dict, meta: dict, *,
                    keep_validated: bool = True) -> Path:
    """Write checkpoints/step-NNNNNNN/ (weights.safetensors, training.pt, state.json) atomically; `meta`
    "validated" marks one written right after a passed validation, kept beside the latest when `keep_validated`
    (see KEEP)."""
    import torch
    from safetensors.torch import save_file

    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    with fileio.atomic_dir(final) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / "weights.safetensors"))
        torch.save(training_state, tmp / "training.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "epoch": epoch, **meta}, indent=2, default=str))
    older = sorted(p for p in root.glob("step-*") if p != final)
    validated = [p for p in older if _validated(p)]
    spared = validated[-1] if validated and not meta.get("validated") and keep_validated else None
    for old in older[:max(0, len(older) - (KEEP - 1))]:
        if old != spared:
            shutil.rmtree(old)
    return final


COPY_SHARE = 0.25  # a checkpoint is copied and written off the training thread when its copy takes at most this
# share of the memory available now; a larger one (a whole model's weights and optimizer) is written in place


def copied(tree, clone: bool = True):
    """`tree` (dicts, lists, tuples of tensors and plain values: weights, an optimizer's state) with every tensor
    copied to the CPU, into pinned memory when it is on a GPU, so it can be written while the originals change.
    `clone` False: tensors already on the CPU are taken as they are (a tree that is a copy of its own already)."""
    import torch

    if isinstance(tree, torch.Tensor):
        if tree.device.type == "cpu":
            return tree.detach().clone() if clone else tree.detach()
        out = torch.empty(tree.shape, dtype=tree.dtype, pin_memory=True)
        return out.copy_(tree.detach(), non_blocking=True)
    if isinstance(tree, dict):
        return {k: copied(v, clone) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(copied(v, clone) for v in tree)
    return tree


def tensor_bytes(tree, cpu: bool = True) -> int:
    """The bytes of `tree`'s tensors (`cpu` False: of those not on the CPU only)."""
    import torch

    if isinstance(tree, torch.Tensor):
        return tree.numel() * tree.element_size() if cpu or tree.device.type != "cpu" else 0
    if isinstance(tree, dict):
        return sum(tensor_bytes(v, cpu) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return sum(tensor_bytes(v, cpu) for v in tree)
    return 0


def save_later(background, write, *trees, private: int = 0) -> bool:
    """Hand `write(*copies of trees)` to `background` (a train.background.Background) after copying the trees off the
    device: True. The first `private` trees are copies of their own already (method.state()): only moved off a GPU.
    False, and nothing done, when the copies would not fit in COPY_SHARE of the memory available now (the caller
    writes from the originals)."""
    import psutil
    import torch

    needed = sum(tensor_bytes(t, cpu=i >= private) for i, t in enumerate(trees))
    if needed > COPY_SHARE * psutil.virtual_memory().available:
        return False
    copies = [copied(t, clone=i >= private) for i, t in enumerate(trees)]
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # the non-blocking copies into pinned memory are complete before the thread reads

    def job():
        write(*copies)  # what it returns (the path written) is not an event for the log

    background.submit(job)
    return True


def _validated(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "state.json").read_text()).get("validated"))
    except (OSError, ValueError):
        return False


def set_aside(run_dir: Path, after_step: int) -> list[Path]:
    """Rename the checkpoints of steps after `after_step` to collapsed-step-NNNNNNN (kept to look at, never resumed
    from), so the run's latest checkpoint is the last good one; returns the new names."""
    moved = []
    for folder in sorted((Path(run_dir) / "checkpoints").glob("step-*")):
        if int(folder.name.split("-")[1]) > after_step:
            target = folder.with_name("collapsed-" + folder.name)
            if target.exists():
                shutil.rmtree(target)
            folder.rename(target)
            moved.append(target)
    return moved


def kept_at_or_before(run_dir: Path, step: int) -> bool:
    """Whether a complete checkpoint of a step no later than `step` (and after the start) is on disk: what a run
    stopped at `step`'s pictures would fall back to."""
    return any(0 < int(p.name.split("-")[1]) <= step for p in (Path(run_dir) / "checkpoints").glob("step-*")
               if (p / "state.json").is_file())


def step_file(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "steps" / f"step-{step:07d}.safetensors"


def save_step_weights(run_dir: Path, step: int, weights: dict, meta: dict, *, half: bool) -> Path:
    """The weights a run had at a validation step it was asked to keep (a sweep's cell), to export later;
    `half`: a whole model's in float16, as A1111 checkpoints are (half the disk of a float32 copy)."""
    from safetensors.torch import save_file

    path = step_file(run_dir, step)
    with fileio.atomic_path(path) as tmp:
        save_file({k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
                   for k, v in weights.items()}, str(tmp), metadata={k: str(v) for k, v in meta.items()})
    return path


def latest_checkpoint(run_dir: Path) -> Checkpoint | None:
    folders = sorted(p for p in (Path(run_dir) / "checkpoints").glob("step-*") if (p / "state.json").is_file())
    if not folders:
        return None
    meta = json.loads((folders[-1] / "state.json").read_text())
    return Checkpoint(folders[-1], int(meta.pop("step")), int(meta.pop("epoch")), meta)


def load_checkpoint(checkpoint: Checkpoint) -> tuple[dict, dict]:
    """(weights, training state) of a checkpoint, on the CPU."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(checkpoint.folder / "weights.safetensors"))
    training = torch.load(checkpoint.folder / "training.pt", map_location="cpu", weights_only=True)
    return weights, training


def epoch_file(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "epochs" / f"epoch-{epoch:03d}.safetensors"


def save_epoch_weights(run_dir: Path, epoch: int, weights: dict, meta: dict) -> Path:
    """The trained weights after an epoch (LoRA or embedding, small), for choosing and exporting an epoch later."""
    from safetensors.torch import save_file

    path = epoch_file(run_dir, epoch)
    with fileio.atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp),
                  metadata={k: str(v) for k, v in meta.items()})
    return path


def prune_epoch_weights(run_dir: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` saved epoch weights (keep 0: none removed); returns what went."""
    if keep <= 0:
        return []
    gone = [epoch_file(run_dir, e) for e in saved_epochs(run_dir)[:-keep]]
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


def all_finite(weights: dict) -> bool:
    import torch

    return all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())


def saved_epochs(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (Path(run_dir) / "epochs").glob("epoch-*.safetensors"))


def start_weights(runs_dir: Path, name: str, config) -> tuple[dict, dict]:
    """The last saved epoch weights of finished LoRA run `name` and their header, to start `config` from ("add a
    subject"); a ValueError naming `continue_from` when they cannot be: no such run, no saved LoRA, another base,
    rank or layer set."""
    from safetensors import safe_open

    run = Path(runs_dir) / name
    epochs = saved_epochs(run)
    if not epochs:
        raise ValueError(f"`continue_from` {name!r} has no saved LoRA weights in {run} (a finished LoRA run saves "
                         f"them after its epochs)")
    with safe_open(str(epoch_file(run, epochs[-1])), framework="pt") as f:
        meta, state = dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
    theirs = {"method": meta.get("studio.method"), "base_model": meta.get("studio.base_model"),
              "rank": meta.get("studio.rank"), "lora_layers": meta.get("studio.lora_layers", "attention")}
    ours = {"method": config.method, "base_model": config.model, "rank": str(config.rank),
            "lora_layers": config.lora_layers}
    for key in ours:
        if theirs[key] != ours[key]:
            raise ValueError(f"`continue_from` {name!r} was trained with {key} {theirs[key]!r}, this run has "
                             f"{ours[key]!r}: a run continues a LoRA of its own kind")
    if config.text_encoder_lr and not any(k.startswith("text_encoder") for k in state):
        raise ValueError(f"`continue_from` {name!r} has no text-encoder LoRA but this run trains one "
                         f"(`text_encoder_lr`): set it to 0")
    return state, meta
