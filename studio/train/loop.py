"""The one training loop for LoRA, DreamBooth, full fine-tune and textual inversion, on SD 1.x, SDXL and FLUX.1
(what differs by family is its objective, in train/objectives.py, and its parts, in train/parts.py; what a run
validates and the collapse guard, in train/watch.py).

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
from studio.progress import Cancelled
from studio.train import checkpoints, data, export, sampling
from studio.train.config import RunConfig, family_defaults
from studio.train.latents import Latents, TextEmbeddings, owner
from studio.train.methods import make_method
from studio.train.objectives import make_objective, mask_weights, reduce
from studio.train.parts import (encode_text, keep_frozen_in, load_denoiser, load_parts, remember_prompts)
from studio.train.runlog import RunLog
from studio.train.setup import (MAX_GRAD_NORM, TrainingDiverged, any_says, debug_nan, diverged, main_says,
                                make_accelerator, make_optimizer, process_seed, take_new_learning_rates)
from studio.train.watch import RunWatch

__all__ = ["RunResult", "TrainingDiverged", "train"]


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


def _subject_facts(config: RunConfig, items, inherited: list[dict]) -> list[dict]:
    """The export header's subjects (none for a plain one-subject run): this run's, after those of the run it
    continued (whose LoRA it started from, so they are in its weights too)."""
    own = [{"dataset": s.dataset, "trigger": s.trigger,
            "dataset_hash": data.dataset_hash([i for i in items if i.subject == k])}
           for k, s in enumerate(config.subjects)]
    if not config.extra_subjects and not inherited:
        return []
    mine = {s["trigger"] for s in own}
    return [s for s in inherited if s["trigger"] not in mine] + own


def _watched(settings, config: RunConfig, inherited: list[dict], log) -> RunConfig:
    """The config validation sees: the run's, and for a run that continues another's LoRA ("add a subject") its
    earlier subjects too, as extra subjects whose prompts and scores are validated (the base grid, made with the
    earlier LoRA before the first step, is their "before"); they are not trained on. An earlier subject whose dataset
    is gone is left out, saying so. (A staged FLUX run encodes its prompts before it knows them: not there.)"""
    from studio.data.library import find_dataset
    from studio.train.config import Subject

    mine = {s.trigger.lower() for s in config.subjects}
    earlier = []
    for s in inherited:
        if s["trigger"].lower() in mine:
            continue
        try:
            find_dataset(settings, s["dataset"])
        except ValueError:
            log.event("message", text=f"earlier subject {s['trigger']!r}: dataset {s['dataset']!r} is not there, so "
                                      f"what this run leaves of it is not validated")
            continue
        earlier.append(Subject(s["dataset"], s["trigger"]))
    if not earlier:
        return config
    log.event("message", text=f"validating the earlier subjects too ({', '.join(s.trigger for s in earlier)}): the "
                              f"grid before the first step is what run {config.continue_from} draws")
    return replace(config, extra_subjects=[*config.extra_subjects, *earlier])


def train(store, settings, config: RunConfig, run_dir: Path, *, log: RunLog, should_stop, resume: bool = False,
          progress=lambda fraction, message: None) -> RunResult:
    """Train `config` in `run_dir`, writing events, checkpoints, epoch weights, samples and exports there.

    Raises Cancelled (after a checkpoint) when `should_stop()` turns true, TrainingDiverged on a NaN/inf loss
    (guard.CollapseDetected, a TrainingDiverged, when the collapse guard fires).
    """
    import torch

    # 1. Device, precision, data and the base's parts (a staged family's without its denoiser yet: see
    #    ModelFamily.staged_training)
    device = config.device or settings.resolve_device()
    accelerator = make_accelerator(config, device)
    device = str(accelerator.device)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on Ampere and later: faster, same training
    model_id = config.model or store.default_model
    family = store.resolve(model_id).family
    staged = family is not None and family.staged_training(config)
    parts = load_parts(store, model_id, device, base_precision="auto" if staged else config.base_precision,
                       staged=staged)
    config = family_defaults(replace(config, model=model_id), parts.family)
    items = data.subject_items(settings, config)
    method = None if staged else make_method(parts, config)  # TI adds its tokens before captions are encoded
    caption = method.caption if method is not None else (lambda text: text)
    cache_dir = settings.workspace_dir / ".cache" / "train"
    log.event("message", text=f"{len(items)} images, {config.method} on {config.model} ({parts.family.label}), "
                              f"{config.resolution} px, device {device}")
    for note in parts.family.training_notes(parts, config):
        log.event("message", text=note)

    # 2. DreamBooth's class images, made once by the untouched base
    #    (one set per class prompt: several subjects of one class share theirs; with several processes the main one
    #    makes them and the others read them from the cache)
    class_items, class_of, class_ids = [], {}, []
    if config.method == "dreambooth" and config.prior_preservation:
        prompts = list(dict.fromkeys(s.class_prompt for s in config.subjects))
        for k, prompt in enumerate(prompts):
            with accelerator.main_process_first():
                paths = sampling.class_images(parts, replace(config, class_prompt=prompt), cache_dir, progress)
            class_ids.append(list(range(len(class_items), len(class_items) + len(paths))))
            class_items += [data.TrainItem(p, prompt, config.resolution, config.resolution, subject=k) for p in paths]
        class_of = {i: prompts.index(s.class_prompt) for i, s in enumerate(config.subjects)}

    # 3. Latents and text embeddings: cached once when the augmentations allow it
    latents = Latents(parts, items, resolution=config.resolution, buckets=config.buckets, masks=config.masked_loss)
    log.event("message", text=data.mask_note(items, config.masked_loss, config.unmasked_weight))
    class_latents = Latents(parts, class_items, resolution=config.resolution, buckets=False)
    texts = None
    trains_text = method.trains_text if method is not None else False
    if config.cache:
        with accelerator.main_process_first():  # encoded once, by the main process; the others read its files
            found = latents.fill(cache_dir, config.flip, progress)
            if class_items:
                class_latents.fill(cache_dir, False, progress)
            if not trains_text and not config.shuffle_captions:
                texts = TextEmbeddings(parts, config.max_sequence_length)
                texts.fill(cache_dir, [caption(i.caption) for i in items + class_items], made_from=owner(items))
        log.event("message", text=f"latents {'read from cache' if found else 'cached'}")
    if staged:
        remember_prompts(parts, [caption(p) for p in config.prompts()], config.max_sequence_length)
        parts.drop_text_encoders()
        log.event("message", text=f"text encoders unloaded; loading the transformer ({config.base_precision})")
        load_denoiser(store, parts, device, config.base_precision)
        method = make_method(parts, config)

    inherited = []  # "add a subject": the subjects of the run this one starts from
    if config.continue_from:
        start, header = checkpoints.start_weights(settings.runs_dir, config.continue_from, config)
        method.load_state({k: v.to(device) for k, v in start.items()})
        inherited = json.loads(header["studio.subjects"]) if "studio.subjects" in header else [
            {"dataset": header.get("studio.dataset", ""), "trigger": header.get("studio.trigger", ""),
             "dataset_hash": header.get("studio.dataset_hash", "")}]
        log.event("message", text=f"starting from run {config.continue_from}'s LoRA after its epoch "
                                  f"{header.get('studio.epoch')} (it knows {', '.join(s['trigger'] for s in inherited)})")

    # 4. Memory: frozen weights in half precision under mixed precision, checkpointing, the objective
    if config.mixed_precision != "no":
        keep_frozen_in(parts, torch.float16 if config.mixed_precision == "fp16" else torch.bfloat16,
                       lora=config.method == "lora", trains_text=method.trains_text,
                       trains_denoiser=config.method != "textual-inversion")
    if parts.family.channels_last:
        parts.denoiser.to(memory_format=torch.channels_last)  # faster convolutions on CPUs (oneDNN) and GPUs alike
    if config.gradient_checkpointing:
        parts.denoiser.enable_gradient_checkpointing()
        for encoder in parts.text_encoders if method.trains_text else []:
            encoder.gradient_checkpointing_enable()
    objective = make_objective(parts, config)
    fileio.write_json(Path(run_dir) / "denoiser_config.json", dict(parts.denoiser.config))

    # 5. Optimizer and learning-rate schedule
    from diffusers.optimization import get_scheduler

    repeats = data.run_repeats(config)  # one number, or one per subject
    per_epoch = data.steps_per_epoch(items, repeats=repeats, batch_size=config.batch_size,
                                     grad_accum=config.grad_accum, resolution=config.resolution, buckets=config.buckets,
                                     processes=accelerator.num_processes, balance=config.balance)
    total = config.max_steps or per_epoch * config.epochs
    epochs = math.ceil(total / per_epoch)
    processes, rank = accelerator.num_processes, accelerator.process_index

    def plan_of(epoch: int) -> list[list[data.Sample]]:
        """Epoch `epoch`'s micro-batches, each the whole batch of every process (batch_size x processes)."""
        return data.epoch_plan(items, epoch=epoch, seed=config.seed, repeats=repeats,
                               batch_size=config.batch_size * processes, resolution=config.resolution,
                               buckets=config.buckets, flip=config.flip, shuffle_captions=config.shuffle_captions,
                               keep_tokens=config.keep_tokens, balance=config.balance)

    if processes > 1:
        log.event("message", text=data.shares_note(plan_of(0)[:per_epoch * config.grad_accum], processes,
                                                   config.batch_size))
    optimizer = make_optimizer(method.param_groups(), config, device, log)
    schedule = get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.warmup_steps,
                             num_training_steps=total, num_cycles=config.lr_cycles)
    trained = {name: accelerator.prepare(module) for name, module in method.modules().items()}
    denoiser = trained.get(parts.family.denoiser_name, parts.denoiser)
    if config.compile:  # the training steps' forward only: validation samples with the plain module
        log.event("message", text="torch.compile: the denoiser is compiled at the first steps (they are slow)")
        denoiser = torch.compile(denoiser)
    encoders = [trained.get(prefix, e) for prefix, e in zip(parts.family.text_encoder_names, parts.text_encoders)]
    optimizer = accelerator.prepare(optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"]]

    # 6. Resume from the last complete checkpoint
    step, history = 0, {"epoch_loss": {}, "validations": []}
    ckpt = checkpoints.latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        weights, state = checkpoints.load_checkpoint(ckpt)
        method.load_state({k: v.to(device) for k, v in weights.items()})
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if state.get("scaler") and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        step, history = ckpt.step, state["history"]
        log.event("message", text=f"resumed from step {step}")
        for changed in take_new_learning_rates(optimizer, schedule, method.param_groups()):
            log.event("message", text=changed)
    validate_reference = None  # made by the background at the first scoring: finding faces is CPU work
    watched = _watched(settings, config, [] if staged else inherited, log)  # with "add a subject", the earlier subjects validated too
    if config.validation_every and config.prompts():
        validate_reference = partial(sampling.subject_references, store, watched,
                                     items if watched is config else data.subject_items(settings, watched))
    facts = export.Facts(base_model=config.model, method=config.method, trigger=config.token, name=config.name,
                         dataset=config.dataset, dataset_hash=data.dataset_hash(items), resolution=config.resolution,
                         rank=config.rank, alpha=config.alpha, family=parts.family.name,
                         lora_layers=config.lora_layers,
                         subjects=_subject_facts(config, items, inherited))

    watch = RunWatch(store=store, parts=parts, config=watched, run_dir=run_dir, method=method, accelerator=accelerator,
                     log=log, history=history, reference=validate_reference, facts=facts, device=device,
                     pictures=[i.path for i in items], total=total, per_epoch=per_epoch, cache_dir=cache_dir)

    def save(epoch_done: int, forced: bool = False) -> None:
        """A checkpoint, but only of finite weights: the one kept is always one a resume can go on from (and none
        while the collapse guard watches a high loss, unless the run ends or is cancelled now). Written beside the
        next steps, from a copy, where the copy fits in memory."""
        if not watch.may_checkpoint(step, forced):
            return
        weights = method.state()
        if not main_says(accelerator, checkpoints.all_finite(weights)):
            watch.settle()  # the checkpoints handed over are on disk: the message names the one kept
            raise TrainingDiverged(diverged(f"the weights became NaN or infinite at step {step}", run_dir, config))
        history_now = watch.history_now()
        training = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None}
        meta, at = {"total": total, "validated": watch.validated_at(step)}, step
        if accelerator.is_main_process:
            def write(w, t):
                checkpoints.save_checkpoint(run_dir, at, epoch_done, w, {**t, "history": history_now}, meta)

            watch.write(write, weights, training)

    def micro_loss(samples, sizes, target, loader, draws):
        """One micro-batch's loss (this process's part of it): latents sampled from their cached distribution,
        normalized as the VAE's family wants them, the captions' conditioning, and the family's objective; `draws`
        (BatchDraws) gives this part's random draws."""
        mean, std = loader.batch([s.index for s in samples], [s.flip for s in samples])
        captions = [method.caption(s.caption) for s in samples]
        cond = texts.batch(captions) if texts is not None else encode_text(parts, captions, encoders,
                                                                        config.max_sequence_length)
        eps = draws.randn(mean.shape)
        lat = parts.family.normalize_latents(parts.vae, mean + std * eps).to(device)
        if parts.family.channels_last:
            lat = lat.to(memory_format=torch.channels_last)
        error, weight = objective.loss_map(denoiser, lat, cond, [sizes[s.index] for s in samples], target,
                                           draws, accelerator.autocast)
        mask = loader.mask_batch([s.index for s in samples], [s.flip for s in samples], tuple(mean.shape[-2:]))
        return reduce(error, weight, mask_weights(mask, config.unmasked_weight))

    def base_loss() -> float:
        """The untouched model's mean loss over epoch 1's first micro-batches (about 16 images), with noise from a
        generator of its own: no step's draws change."""
        plan = plan_of(0)[:max(1, -(-16 // (config.batch_size * processes)))]
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 - 1)
        found = []
        with torch.no_grad():
            for whole in plan:
                part = data.share(whole, processes, rank, config.batch_size)
                loss = micro_loss(part.samples, latents.sizes, items[whole[0].index].bucket(config.resolution,
                                                                                           config.buckets),
                                  latents, BatchDraws(generator, len(whole), part.rows))
                found.append(part.weight * loss.item())  # (mean_over_processes then gives the batches' mean)
        return sum(found) / len(found)

    def synced(last: bool) -> ExitStack:
        """Gradient accumulation: the processes add up their gradients only at a step's last micro-batch (no_sync
        before it), not at every one."""
        stack = ExitStack()
        if not last:
            for module in trained.values():
                stack.enter_context(accelerator.no_sync(module))
        return stack

    def stop_asked() -> bool:
        """Whether to stop now, one verdict for every process: any of them asked (its cancel file, a SIGTERM)."""
        return any_says(accelerator, should_stop())

    # 7. The loop: epochs of micro-batches, `grad_accum` of them per optimizer step
    watch.begin(step, base_loss)  # a fresh run: the base model's loss and pictures, the guard's references
    log.status("running", total_steps=total, epochs=epochs, steps_per_epoch=per_epoch)
    for module in trained.values():
        module.train()
    for epoch in range(step // per_epoch, epochs):
        plan = plan_of(epoch)[:per_epoch * config.grad_accum]  # every process's whole micro-batches, the same plan
        for k in range((step - epoch * per_epoch) * config.grad_accum, len(plan), config.grad_accum):
            step_loss = 0.0
            batches = plan[k:k + config.grad_accum]
            for j, whole in enumerate(batches):
                micro = step * config.grad_accum + j
                # LoRA dropout draws from the global generator: a seed of each process's own
                torch.manual_seed(process_seed(config.seed * 1_000_003 + micro, rank))
                generator = torch.Generator().manual_seed(config.seed * 1_000_003 + micro)
                part = data.share(whole, processes, rank, config.batch_size)  # this process's pictures of it
                draws = BatchDraws(generator, len(whole), part.rows)
                target = items[whole[0].index].bucket(config.resolution, config.buckets)
                with synced(j == len(batches) - 1):
                    loss = micro_loss(part.samples, latents.sizes, target, latents, draws)
                    if class_items:  # prior preservation: class images of each picture's class keep what the base knew
                        prior = []
                        for row, sample in zip(part.rows, part.samples):
                            ids = class_ids[class_of[items[sample.index].subject]]
                            index = ids[(micro * len(whole) + row) % len(ids)]
                            prior.append(data.Sample(index, False, class_items[index].caption))
                        sizes = {s.index: class_latents.sizes.get(s.index, (config.resolution,) * 2 + (0, 0))
                                 for s in prior}
                        loss = loss + config.prior_loss_weight * micro_loss(prior, sizes, (config.resolution,) * 2,
                                                                            class_latents, draws)
                    if part.weight != 1.0:  # its share of the whole batch (0: a copy, for a process left without)
                        loss = loss * part.weight
                    loss = debug_nan(loss, step + 1, rank)
                    accelerator.backward(loss / config.grad_accum)
                step_loss = step_loss + loss.detach() / config.grad_accum  # on the device: read every few steps
            accelerator.clip_grad_norm_(params, MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            method.after_step()
            step += 1
            # the loss read every few steps: the step events, the NaN check, the collapse guard's loss signal
            watch.step_done(step, epoch + 1, step_loss, schedule.get_last_lr()[0])
            watch.at_step(step, epoch + 1)  # validate_at_steps (the weights kept) and validation by steps
            if step >= total:
                break
            if config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
                save(epoch)
            if k + config.grad_accum < len(plan) and stop_asked():  # at an epoch's end, the epoch is finished first
                save(epoch, forced=True)
                watch.settle()  # the checkpoint is on disk before the run says so
                raise Cancelled(f"cancelled at step {step}; resume continues from there")

        # 8. Epoch end: loss, validation grid and scores when the validation plan says (judged by the collapse
        #    guard), then the checkpoint and epoch weights (at validated epochs, or as save_every_epochs says): a
        #    checkpoint after a validation holds pictures seen to be sound
        history["epoch_loss"][str(epoch + 1)] = watch.epoch_loss(epoch + 1)
        stopping = step < total and stop_asked()
        result = watch.epoch_end(epoch + 1, step)
        watch.epoch_done(epoch + 1, step, history["epoch_loss"][str(epoch + 1)], result)
        if watch.saves(epoch + 1) or step >= total or stopping:
            save(epoch + 1, forced=step >= total or stopping)
            if accelerator.is_main_process and not config.whole_model:
                header = facts.header(step, epoch + 1)

                def keep_epoch(weights, done=epoch + 1, header=header):
                    checkpoints.save_epoch_weights(run_dir, done, weights, header)
                    checkpoints.prune_epoch_weights(run_dir, config.keep_epochs)

                watch.write(keep_epoch, method.state())
        if step >= total:
            break
        if stopping:
            watch.settle()
            raise Cancelled(f"cancelled after epoch {epoch + 1}; resume continues from there")

    # 9. Export the final weights (finetune's EMA average) where Generate, A1111 and ComfyUI find them
    watch.finish()  # the background's scores and writes done and logged
    files = []
    if accelerator.is_main_process and not config.export:
        log.event("message", text="not exported (`export` is off: a sweep exports the cell chosen)")
    elif accelerator.is_main_process:
        with method.averaged():
            files = export.export_final(method, parts, config, settings.own_models_dir, Path(run_dir),
                                        facts.header(step, epochs))
        if config.whole_model and len(files) == 1:
            log.event("message", text=f"{parts.family.label}: exported as a diffusers folder only (no single file)")
    losses_by_epoch = [v for v in history["epoch_loss"].values() if v is not None]
    validations = [sampling.EpochValidation(**v) for v in history["validations"]]
    best = sampling.run_best_epoch(validations)
    return RunResult(step, epochs, files, validations, best,
                     losses_by_epoch[0] if losses_by_epoch else None, losses_by_epoch[-1] if losses_by_epoch else None,
                     history.get("base_validation"), history["step_validations"])
