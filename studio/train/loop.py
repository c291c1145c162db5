"""The one training loop for LoRA, DreamBooth, full fine-tune and textual inversion, on every family: a Trainer
whose state is its fields, set by numbered steps (load, class images, caches, memory, optimizer, resume:
train/start.py), and the loop's methods that read them. What differs by family is asked of the family (its objective, prompt encoding,
latents: studio/models/families/); what a run validates, scores and guards is train/watch.py's.

Every random draw of a step comes from a generator seeded by (seed, micro-step) and every epoch's order from
(seed, epoch), so a run resumed from a checkpoint ends with the same weights as one never interrupted.

Several processes (one per GPU, or `processes` on the CPU) share each micro-batch: the epoch is planned in batches
of batch_size x processes and each process takes its part (data.share), drawing its pictures' noise and timesteps
as its rows of the whole batch's draws (BatchDraws), so N processes x batch b train as one process x batch N*b
would. What stops a run (cancel, a NaN, the collapse guard) is decided once for all of them (setup.any_says,
main_says; the losses are read as their mean over processes).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from studio.models.families.draws import BatchDraws
from studio.progress import Cancelled
from studio.train import checkpoints, data, export, sampling
from studio.train.config import RunConfig
from studio.train.objectives import mask_weights, reduce
from studio.train.parts import encode_text
from studio.train.runlog import RunLog
from studio.train.setup import MAX_GRAD_NORM, TrainingDiverged, any_says, debug_nan, diverged, main_says, process_seed
from studio.train.start import RunStart

__all__ = ["RunResult", "Trainer", "TrainingDiverged", "train"]


@dataclass
class RunResult:
    steps: int
    epochs: int
    files: list[Path] = field(default_factory=list)
    validations: list[sampling.EpochValidation] = field(default_factory=list)
    best_epoch: int | None = None
    first_loss: float | None = None  # mean loss over the first epoch
    last_loss: float | None = None  # mean loss over the last epoch
    base_validation: dict | None = None  # the base model's grid and scores, before the first step
    step_validations: list[dict] = field(default_factory=list)  # at validate_at_steps, with the guard's verdicts


class Trainer(RunStart):
    """One training run, its state held in fields that each numbered step sets, and the loop that reads them.

    Set by the steps, in order: `device`, `accelerator`, `parts`, `staged`, `config` (the family's defaults filled
    in), `items`, `method` and `caption` (1); `class_items`, `class_of`, `class_ids` (2); `latents`,
    `class_latents`, `texts` (3); `inherited` ("add a subject": the subjects of the run this one starts from);
    `objective` (4); `repeats`, `per_epoch`, `total`, `epochs`, `optimizer`, `schedule`, `trained`, `denoiser`,
    `encoders`, `params`, `policy` (how checkpoints are written and kept), `processes`, `rank` (5); `step` and
    `history` (6, then the loop); `facts` and `watch` (what a run validates, scores, guards and writes beside the
    steps). Steps 1 to 6 are studio/train/start.py's (RunStart); the loop's methods are here."""

    def __init__(self, store, settings, config: RunConfig, run_dir: Path, *, log: RunLog, should_stop,
                 resume: bool = False, progress=lambda fraction, message: None):
        self.store, self.settings, self.config, self.run_dir = store, settings, config, Path(run_dir)
        self.log, self.should_stop, self.resume, self.progress = log, should_stop, resume, progress
        self.cache_dir = settings.workspace_dir / ".cache" / "train"

    def run(self) -> RunResult:
        """Train, writing events, checkpoints, epoch weights, samples and exports in the run's folder.

        Raises Cancelled (after a checkpoint) when `should_stop()` turns true, TrainingDiverged on a NaN/inf loss
        (guard.CollapseDetected, a TrainingDiverged, when the collapse guard fires)."""
        self.load_base()
        self.make_class_images()
        self.cache_inputs()
        self.start_from_earlier_run()
        self.fit_memory()
        self.make_optimizer()
        self.resume_checkpoint()
        self.watch_run()
        self.watch.begin(self.step, self.base_loss)  # a fresh run: the base model's loss and pictures, the guard's
        self.log.status("running", total_steps=self.total, epochs=self.epochs, steps_per_epoch=self.per_epoch)
        for module in self.trained.values():
            module.train()
        for epoch in range(self.step // self.per_epoch, self.epochs):
            self.train_epoch(epoch)
            if self.end_epoch(epoch):
                break
        return self.export()

    # ---- what the loop does ----------------------------------------------------------------------------------
    def save(self, epoch_done: int, forced: bool = False) -> None:
        """A checkpoint, but only of finite weights: the one kept is always one a resume can go on from (and none
        while the collapse guard watches a high loss, unless the run ends or is cancelled now). Written beside the
        next steps, from a copy, where the copy fits in memory."""
        watch, step = self.watch, self.step
        if not self.policy.at_all or not watch.may_checkpoint(step, forced):
            return
        weights = self.method.state()
        if not main_says(self.accelerator, checkpoints.all_finite(weights)):
            watch.settle()  # the checkpoints handed over are on disk: the message names the one kept
            raise TrainingDiverged(diverged(f"the weights became NaN or infinite at step {step}", self.run_dir,
                                            self.config))
        history_now = watch.history_now()
        scaler = self.accelerator.scaler
        training = {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None}
        meta = {"total": self.total, "validated": watch.validated_at(step)}
        if self.accelerator.is_main_process:
            run_dir, keep_validated = self.run_dir, self.policy.keep_validated

            def write(w, t):
                checkpoints.save_checkpoint(run_dir, step, epoch_done, w, {**t, "history": history_now}, meta,
                                            keep_validated=keep_validated)

            watch.write(write, weights, training)

    def micro_loss(self, samples, sizes, target, loader, draws):
        """One micro-batch's loss (this process's part of it): latents sampled from their cached distribution,
        normalized as the VAE's family wants them, the captions' conditioning, and the family's objective; `draws`
        (BatchDraws) gives this part's random draws."""
        import torch

        config, parts = self.config, self.parts
        mean, std = loader.batch([s.index for s in samples], [s.flip for s in samples])
        captions = [self.method.caption(s.caption) for s in samples]
        cond = self.texts.batch(captions) if self.texts is not None else encode_text(
            parts, captions, self.encoders, config.max_sequence_length)
        eps = draws.randn(mean.shape)
        lat = parts.family.normalize_latents(parts.vae, mean + std * eps).to(self.device)
        if parts.family.channels_last:
            lat = lat.to(memory_format=torch.channels_last)
        error, weight = self.objective.loss_map(self.denoiser, lat, cond, [sizes[s.index] for s in samples], target,
                                                draws, self.accelerator.autocast)
        mask = loader.mask_batch([s.index for s in samples], [s.flip for s in samples], tuple(mean.shape[-2:]))
        return reduce(error, weight, mask_weights(mask, config.unmasked_weight))

    def epoch_plan(self, epoch: int) -> list[list[data.Sample]]:
        """Epoch `epoch`'s micro-batches, each the whole batch of every process (batch_size x processes)."""
        config = self.config
        return data.epoch_plan(self.items, epoch=epoch, seed=config.seed, repeats=self.repeats,
                               batch_size=config.batch_size * self.processes, resolution=config.resolution,
                               buckets=config.buckets, flip=config.flip, shuffle_captions=config.shuffle_captions,
                               keep_tokens=config.keep_tokens, balance=config.balance)

    def base_loss(self) -> float:
        """The untouched model's mean loss over epoch 1's first micro-batches (about 16 images), with noise from a
        generator of its own: no step's draws change."""
        import torch

        config = self.config
        plan = self.epoch_plan(0)[:max(1, -(-16 // (config.batch_size * self.processes)))]
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 - 1)
        found = []
        with torch.no_grad():
            for whole in plan:
                part = data.share(whole, self.processes, self.rank, config.batch_size)
                loss = self.micro_loss(part.samples, self.latents.sizes,
                                       self.items[whole[0].index].bucket(config.resolution, config.buckets),
                                       self.latents, BatchDraws(generator, len(whole), part.rows))
                found.append(part.weight * loss.item())  # (mean_over_processes then gives the batches' mean)
        return sum(found) / len(found)

    def synced(self, last: bool) -> ExitStack:
        """Gradient accumulation: the processes add up their gradients only at a step's last micro-batch (no_sync
        before it), not at every one."""
        stack = ExitStack()
        if not last:
            for module in self.trained.values():
                stack.enter_context(self.accelerator.no_sync(module))
        return stack

    def stop_asked(self) -> bool:
        """Whether to stop now, one verdict for every process: any of them asked (its cancel file, a SIGTERM)."""
        return any_says(self.accelerator, self.should_stop())

    def step_loss(self, batches: list) -> object:
        """One optimizer step's micro-batches (each the whole batch of every process; this process computes its
        part), each one's loss back-propagated (with prior preservation, its class images' too): their mean loss, on
        the device."""
        import torch

        config, rank, step_loss = self.config, self.rank, 0.0
        for j, whole in enumerate(batches):
            micro = self.step * config.grad_accum + j
            # LoRA dropout draws from the global generator: a seed of each process's own
            torch.manual_seed(process_seed(config.seed * 1_000_003 + micro, rank))
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + micro)
            part = data.share(whole, self.processes, rank, config.batch_size)  # this process's pictures of it
            draws = BatchDraws(generator, len(whole), part.rows)
            target = self.items[whole[0].index].bucket(config.resolution, config.buckets)
            with self.synced(j == len(batches) - 1):
                loss = self.micro_loss(part.samples, self.latents.sizes, target, self.latents, draws)
                if self.class_items:  # prior preservation: class images of each picture's class keep what the base knew
                    prior = []
                    for row, sample in zip(part.rows, part.samples):
                        ids = self.class_ids[self.class_of[self.items[sample.index].subject]]
                        index = ids[(micro * len(whole) + row) % len(ids)]
                        prior.append(data.Sample(index, False, self.class_items[index].caption))
                    sizes = {s.index: self.class_latents.sizes.get(s.index, (config.resolution,) * 2 + (0, 0))
                             for s in prior}
                    loss = loss + config.prior_loss_weight * self.micro_loss(
                        prior, sizes, (config.resolution,) * 2, self.class_latents, draws)
                if part.weight != 1.0:  # its share of the whole batch (0: a copy, for a process left without)
                    loss = loss * part.weight
                loss = debug_nan(loss, self.step + 1, rank)
                self.accelerator.backward(loss / config.grad_accum)
            step_loss = step_loss + loss.detach() / config.grad_accum  # on the device: read every few steps
        return step_loss

    # 7. The loop: epochs of micro-batches, `grad_accum` of them per optimizer step
    def train_epoch(self, epoch: int) -> None:
        config, watch = self.config, self.watch
        plan = self.epoch_plan(epoch)[:self.per_epoch * config.grad_accum]
        for k in range((self.step - epoch * self.per_epoch) * config.grad_accum, len(plan), config.grad_accum):
            loss = self.step_loss(plan[k:k + config.grad_accum])
            self.accelerator.clip_grad_norm_(self.params, MAX_GRAD_NORM)
            self.optimizer.step()
            self.schedule.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.method.after_step()
            self.step += 1
            # the loss read every few steps: the step events, the NaN check, the collapse guard's loss signal
            watch.step_done(self.step, epoch + 1, loss, self.schedule.get_last_lr()[0])
            watch.at_step(self.step, epoch + 1)  # validate_at_steps (the weights kept) and validation by steps
            if self.step >= self.total:
                return
            if config.checkpoint_every_steps and self.step % config.checkpoint_every_steps == 0 and self.policy.between:
                self.save(epoch)
            if k + config.grad_accum < len(plan) and self.stop_asked():  # at an epoch's end, it is finished first
                self.save(epoch, forced=True)
                watch.settle()  # the checkpoint is on disk before the run says so
                raise Cancelled(f"cancelled at step {self.step}; resume continues from there")

    # 8. Epoch end: loss, validation grid and scores when the validation plan says (judged by the collapse guard),
    #    then the checkpoint and epoch weights (at validated epochs, or as save_every_epochs says): a checkpoint
    #    after a validation holds pictures seen to be sound. True when the run is over.
    def end_epoch(self, epoch: int) -> bool:
        config, watch, history, done = self.config, self.watch, self.history, epoch + 1
        history["epoch_loss"][str(done)] = watch.epoch_loss(done)
        stopping = self.step < self.total and self.stop_asked()
        result = watch.epoch_end(done, self.step)
        watch.epoch_done(done, self.step, history["epoch_loss"][str(done)], result)
        ending = self.step >= self.total or stopping
        if watch.saves(done) or ending:
            if self.policy.between or ending:
                self.save(done, forced=ending)
            if self.accelerator.is_main_process and not config.whole_model:
                header, run_dir = self.facts.header(self.step, done), self.run_dir

                def keep_epoch(weights):
                    checkpoints.save_epoch_weights(run_dir, done, weights, header)
                    checkpoints.prune_epoch_weights(run_dir, config.keep_epochs)

                watch.write(keep_epoch, self.method.state())
        if self.step >= self.total:
            return True
        if stopping:
            watch.settle()
            raise Cancelled(f"cancelled after epoch {done}; resume continues from there")
        return False

    # 9. Export the final weights (finetune's EMA average) where Generate, A1111 and ComfyUI find them
    def export(self) -> RunResult:
        config, parts, history = self.config, self.parts, self.history
        self.watch.finish()  # the background's scores and writes done and logged
        files = []
        if self.accelerator.is_main_process and not config.export:
            self.log.event("message", text="not exported (`export` is off: a sweep exports the cell chosen)")
        elif self.accelerator.is_main_process:
            with self.method.averaged():
                files = export.export_final(self.method, parts, config, self.settings.own_models_dir, self.run_dir,
                                            self.facts.header(self.step, self.epochs))
            if config.whole_model and len(files) == 1:
                self.log.event("message", text=f"{parts.family.label}: exported as a diffusers folder only (no "
                                               f"single file)")
        losses_by_epoch = [v for v in history["epoch_loss"].values() if v is not None]
        validations = [sampling.EpochValidation(**v) for v in history["validations"]]
        return RunResult(self.step, self.epochs, files, validations, sampling.run_best_epoch(validations),
                         losses_by_epoch[0] if losses_by_epoch else None,
                         losses_by_epoch[-1] if losses_by_epoch else None, history.get("base_validation"),
                         history["step_validations"])


def train(store, settings, config: RunConfig, run_dir: Path, *, log: RunLog, should_stop, resume: bool = False,
          progress=lambda fraction, message: None) -> RunResult:
    """Train `config` in `run_dir` (see Trainer.run)."""
    return Trainer(store, settings, config, run_dir, log=log, should_stop=should_stop, resume=resume,
                   progress=progress).run()
