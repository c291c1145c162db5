"""The one training loop for LoRA, DreamBooth, full fine-tune and textual inversion, on every family: a Trainer
whose state is its fields, set by numbered steps (load, class images, caches, memory, optimizer, resume), and the
loop's methods that read them. What differs by family is asked of the family (its objective, prompt encoding,
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

import json
import math
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from studio import fileio
from studio.models.families.base import BatchDraws
from studio.models.loaders import last_blocks
from studio.progress import Cancelled
from studio.train import checkpoints, data, export, sampling
from studio.train.config import RunConfig, family_defaults
from studio.train.fit import decide_in_child, text_on_cpu
from studio.train.earlier import subject_facts, watched_config
from studio.train.latents import Latents, TextEmbeddings, owner
from studio.train.methods import make_method
from studio.train.objectives import make_objective, mask_weights, reduce
from studio.train.parts import (encode_text, keep_frozen_in, load_denoiser, load_parts, remember_prompts)
from studio.train.runlog import RunLog
from studio.train.setup import (MAX_GRAD_NORM, TrainingDiverged, any_says, debug_nan, diverged, main_says,
                                make_accelerator, make_optimizer, process_seed, take_new_learning_rates)
from studio.train.swap import BlockSwap
from studio.train.watch import RunWatch

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


class Trainer:
    """One training run, its state held in fields that each numbered step sets, and the loop that reads them.

    Set by the steps, in order: `device`, `accelerator`, `parts`, `staged`, `config` (the family's defaults filled
    in), `items`, `method` and `caption` (1); `class_items`, `class_of`, `class_ids` (2); `latents`,
    `class_latents`, `texts` (3); `inherited` ("add a subject": the subjects of the run this one starts from);
    `objective` (4); `repeats`, `per_epoch`, `total`, `epochs`, `optimizer`, `schedule`, `trained`, `denoiser`,
    `encoders`, `params`, `policy` (how checkpoints are written and kept), `processes`, `rank` (5); `step` and
    `history` (6, then the loop); `facts` and `watch` (what a run validates, scores, guards and writes beside the
    steps)."""

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

    # 1. Device, precision, data and the base's parts (a staged family's without its denoiser yet: see
    #    ModelFamily.staged_training)
    def load_base(self) -> None:
        import torch

        store = self.store
        device = self.config.device or self.settings.resolve_device()
        # what a run started outside the queue (a sweep's, a test's) left to "auto", decided for its device
        self.config, decided = decide_in_child(store, self.config, device)
        config = self.config
        self.accelerator = make_accelerator(config, device)
        self.device = str(self.accelerator.device)
        if self.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere and later: faster, same training
        model_id = config.model or store.default_model
        family = store.resolve(model_id).family
        self.staged = family is not None and family.staged_training(config)
        if family is not None:
            family.check_training(replace(config, model=model_id))  # refused before anything loads
        on_cpu = self.staged and text_on_cpu(store, replace(config, model=model_id), self.device)
        if on_cpu:
            decided.append("the text encoders encode the captions on the CPU: the memory plan says they do not fit "
                           "the GPU beside the VAE (slower, once per dataset: the embeddings are cached)")
        self.parts = load_parts(store, model_id, self.device, config, staged=self.staged, text_on_cpu=on_cpu)
        # resolution 0 on a model smaller than its family's (builtin:pocket: 64 px, SD 1.x 512) is its own size
        self.config = config = family_defaults(replace(config, model=model_id), self.parts.family,
                                               self.parts.family.native_size(self.parts.pipe))
        self.items = data.subject_items(self.settings, config)
        # TI adds its tokens before captions are encoded; a staged run makes its method once the denoiser is there
        self.method = None if self.staged else make_method(self.parts, config)
        self.caption = self.method.caption if self.method is not None else (lambda text: text)
        self.log.event("message", text=f"{len(self.items)} images, {config.method} on {config.model} "
                                       f"({self.parts.family.label}), {config.resolution} px, device {self.device}")
        for note in decided + self.parts.family.training_notes(self.parts, config):
            self.log.event("message", text=note)

    # 2. DreamBooth's class images, made once by the untouched base
    #    (one set per class prompt: several subjects of one class share theirs; with several processes the main one
    #    makes them and the others read them from the cache)
    def make_class_images(self) -> None:
        config = self.config
        self.class_items, self.class_of, self.class_ids = [], {}, []
        if config.method != "dreambooth" or not config.prior_preservation:
            return
        prompts = list(dict.fromkeys(s.class_prompt for s in config.subjects))
        for k, prompt in enumerate(prompts):
            with self.accelerator.main_process_first():
                paths = sampling.class_images(self.parts, replace(config, class_prompt=prompt), self.cache_dir,
                                              self.progress)
            self.class_ids.append(list(range(len(self.class_items), len(self.class_items) + len(paths))))
            self.class_items += [data.TrainItem(p, prompt, config.resolution, config.resolution, subject=k)
                                 for p in paths]
        self.class_of = {i: prompts.index(s.class_prompt) for i, s in enumerate(config.subjects)}

    # 3. Latents and text embeddings: cached once when the augmentations allow it (a staged family's text encoders
    #    leave after, and its denoiser comes)
    def cache_inputs(self) -> None:
        config, parts, items = self.config, self.parts, self.items
        self.latents = Latents(parts, items, resolution=config.resolution, buckets=config.buckets,
                               masks=config.masked_loss)
        self.log.event("message", text=data.mask_note(items, config.masked_loss, config.unmasked_weight))
        self.class_latents = Latents(parts, self.class_items, resolution=config.resolution, buckets=False)
        self.texts = None
        trains_text = self.method.trains_text if self.method is not None else False
        if config.cache:
            with self.accelerator.main_process_first():  # encoded once, by the main process; the others read it
                found = self.latents.fill(self.cache_dir, config.flip, self.progress)
                if self.class_items:
                    self.class_latents.fill(self.cache_dir, False, self.progress)
                if not trains_text and not config.shuffle_captions:
                    self.texts = TextEmbeddings(parts, config.max_sequence_length)
                    self.texts.fill(self.cache_dir, [self.caption(i.caption) for i in items + self.class_items],
                                    made_from=owner(items))
            self.log.event("message", text=f"latents {'read from cache' if found else 'cached'}")
        if self.staged:
            remember_prompts(parts, [self.caption(p) for p in config.prompts()], config.max_sequence_length)
            parts.drop_text_encoders()
            self.log.event("message", text=f"text encoders unloaded; loading the transformer "
                                           f"({config.base_precision})")
            load_denoiser(self.store, parts, self.device, config)
            self.method = make_method(parts, config)

    # "Add a subject": the LoRA starts as the earlier run's
    def start_from_earlier_run(self) -> None:
        config = self.config
        self.inherited = []
        if not config.continue_from:
            return
        start, header = checkpoints.start_weights(self.settings.runs_dir, config.continue_from, config)
        self.method.load_state({k: v.to(self.device) for k, v in start.items()})
        self.inherited = json.loads(header["studio.subjects"]) if "studio.subjects" in header else [
            {"dataset": header.get("studio.dataset", ""), "trigger": header.get("studio.trigger", ""),
             "dataset_hash": header.get("studio.dataset_hash", "")}]
        self.log.event("message", text=f"starting from run {config.continue_from}'s LoRA after its epoch "
                                       f"{header.get('studio.epoch')} (it knows "
                                       f"{', '.join(s['trigger'] for s in self.inherited)})")

    # 4. Memory: frozen weights in half precision under mixed precision, checkpointing, the objective
    def fit_memory(self) -> None:
        import torch

        config, parts, method = self.config, self.parts, self.method
        if config.mixed_precision != "no":
            keep_frozen_in(parts, torch.float16 if config.mixed_precision == "fp16" else torch.bfloat16,
                           lora=config.method == "lora", trains_text=method.trains_text,
                           trains_denoiser=config.method != "textual-inversion")
        if parts.family.channels_last:
            parts.denoiser.to(memory_format=torch.channels_last)  # faster convolutions on CPUs (oneDNN) and GPUs
        if config.blocks_to_swap:
            swap = BlockSwap(last_blocks(parts.family, parts.denoiser, config.blocks_to_swap), self.device)
            self.log.event("message", text=f"block swapping: the last {config.blocks_to_swap} of the transformer's "
                                           f"{len(parts.family.blocks(parts.denoiser))} blocks stay on the CPU "
                                           f"({swap.bytes_held / 2**30:.1f} GiB) and are brought in as each runs")
        if config.gradient_checkpointing == "on":
            parts.denoiser.enable_gradient_checkpointing()
            for encoder in parts.text_encoders if method.trains_text else []:
                encoder.gradient_checkpointing_enable()
        self.objective = make_objective(parts, config)
        fileio.write_json(self.run_dir / "denoiser_config.json", dict(parts.denoiser.config))

    # 5. Optimizer and learning-rate schedule
    def make_optimizer(self) -> None:
        import torch
        from diffusers.optimization import get_scheduler

        config, accelerator, parts = self.config, self.accelerator, self.parts
        self.repeats = data.run_repeats(config)  # one number, or one per subject
        self.per_epoch = data.steps_per_epoch(self.items, repeats=self.repeats, batch_size=config.batch_size,
                                              grad_accum=config.grad_accum, resolution=config.resolution,
                                              buckets=config.buckets, processes=accelerator.num_processes,
                                              balance=config.balance)
        self.total = config.max_steps or self.per_epoch * config.epochs
        self.epochs = math.ceil(self.total / self.per_epoch)
        self.processes, self.rank = accelerator.num_processes, accelerator.process_index
        if self.processes > 1:
            self.log.event("message", text=data.shares_note(self.epoch_plan(0)[:self.per_epoch * config.grad_accum],
                                                            self.processes, config.batch_size))
        optimizer = make_optimizer(self.method.param_groups(), config, self.device, self.log)
        self.schedule = get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.warmup_steps,
                                      num_training_steps=self.total, num_cycles=config.lr_cycles)
        # a swapped denoiser is placed already (its swapped blocks must stay where they are)
        self.trained = {name: accelerator.prepare(module, device_placement=[not config.blocks_to_swap])
                        for name, module in self.method.modules().items()}
        self.denoiser = self.trained.get(parts.family.denoiser_name, parts.denoiser)
        if config.compile:  # the training steps' forward only: validation samples with the plain module
            self.log.event("message", text="torch.compile: the denoiser is compiled at the first steps (they are "
                                           "slow)")
            self.denoiser = torch.compile(self.denoiser)
        self.encoders = [self.trained.get(prefix, e)
                         for prefix, e in zip(parts.family.text_encoder_names, parts.text_encoders)]
        self.optimizer = accelerator.prepare(optimizer)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        # how often checkpoints are written and how many are kept, by what was asked, their size and the disk
        ema = self.method.ema
        self.policy = checkpoints.checkpoint_policy(self.run_dir, config, checkpoints.checkpoint_bytes(
            self.params, self.optimizer, averaged=ema.shadow if ema is not None else None))
        for note in (self.policy.note(), ema.cost() if ema is not None else ""):
            if note:
                self.log.event("message", text=note)

    # 6. Resume from the last complete checkpoint
    def resume_checkpoint(self) -> None:
        self.step, self.history = 0, {"epoch_loss": {}, "validations": []}
        ckpt = checkpoints.latest_checkpoint(self.run_dir) if self.resume else None
        if ckpt is None:
            return
        weights, state = checkpoints.load_checkpoint(ckpt)
        self.method.load_state({k: v.to(self.device) for k, v in weights.items()})
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler") and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        self.step, self.history = ckpt.step, state["history"]
        self.log.event("message", text=f"resumed from step {self.step}")
        for changed in take_new_learning_rates(self.optimizer, self.schedule, self.method.param_groups()):
            self.log.event("message", text=changed)

    # What the run validates and scores (with "add a subject", the earlier subjects too), the export's facts
    def watch_run(self) -> None:
        config, items = self.config, self.items
        validate_reference = None  # made by the background at the first scoring: finding faces is CPU work
        watched = watched_config(self.settings, config, [] if self.staged else self.inherited, self.log)
        if config.validation_every and config.prompts():
            validate_reference = partial(sampling.subject_references, self.store, watched,
                                         items if watched is config else data.subject_items(self.settings, watched))
        self.facts = export.Facts(base_model=config.model, method=config.method, trigger=config.token,
                                  name=config.name, dataset=config.dataset, dataset_hash=data.dataset_hash(items),
                                  resolution=config.resolution, rank=config.rank, alpha=config.alpha,
                                  family=self.parts.family.name, lora_layers=config.lora_layers,
                                  subjects=subject_facts(config, items, self.inherited))
        self.watch = RunWatch(store=self.store, parts=self.parts, config=watched, run_dir=self.run_dir,
                              method=self.method, accelerator=self.accelerator, log=self.log, history=self.history,
                              reference=validate_reference, facts=self.facts, device=self.device,
                              pictures=[i.path for i in items], total=self.total, per_epoch=self.per_epoch,
                              cache_dir=self.cache_dir)

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
