"""How a training run starts: the numbered steps (1 to 6, and what the run watches) that set a Trainer's fields
before its loop reads them (studio/train/loop.py): the device and the base's parts, DreamBooth's class images, the
cached latents and text, "add a subject"'s start, memory, the optimizer and its schedule, the resumed checkpoint."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from functools import partial

from studio import fileio
from studio.models.loaders import last_blocks
from studio.train import checkpoints, data, export, sampling
from studio.train.config_checks import family_defaults
from studio.train.earlier import subject_facts, watched_config
from studio.train.fit import decide_in_child, text_on_cpu
from studio.train.latents import Latents, TextEmbeddings, owner
from studio.train.methods import make_method
from studio.train.objectives import make_objective
from studio.train.parts import keep_frozen_in, load_denoiser, load_parts, remember_prompts
from studio.train.setup import make_accelerator, make_optimizer, take_new_learning_rates
from studio.train.swap import BlockSwap
from studio.train.watch import RunWatch


class RunStart:
    """Steps 1 to 6 of a Trainer (studio/train/loop.py), called in order by Trainer.run; each sets the fields the
    Trainer's docstring names. (Step 5 plans with Trainer.epoch_plan.)"""

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
