"""The checks of a RunConfig: alone (check_config, RunConfig.check), and against its base's family
(family_defaults). Each raises ValueError naming the first bad setting and its value."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from studio.names import check_name
from studio.train.choices import (BASE_PRECISIONS, CHECKPOINTING, EMA_MODES, LORA_LAYERS, METHODS, OPTIMIZERS,
                                  PRECISIONS, SCHEDULERS, TIMESTEP_SAMPLING, WHOLE_MODEL)
from studio.train.schedule import VALIDATION_BY

if TYPE_CHECKING:
    from studio.train.config import RunConfig


def check_config(config: RunConfig) -> RunConfig:
    """Raise ValueError naming the first bad argument of `config` and its value; `config` itself when none is bad
    (its name made canonical)."""
    config.name = check_name(config.name)
    if not (config.dataset or "").strip():
        raise ValueError("`dataset` is empty")
    _check_subjects(config)
    if config.continue_from:
        check_name(config.continue_from, "continue_from")
        if config.method != "lora":
            raise ValueError(f"`continue_from` {config.continue_from!r} starts from a run's LoRA; method "
                             f"{config.method} does not train one")
        if config.continue_from == config.name:
            raise ValueError(f"`continue_from` {config.continue_from!r} is this run: resume it instead")
    _one_of(config, "method", METHODS)
    if config.resolution and (config.resolution % 64 or not 64 <= config.resolution <= 4096):
        raise ValueError(f"`resolution` has to be divisible by 64 and between 64 and 4096 but is {config.resolution}")
    for name in ("repeats", "batch_size", "grad_accum", "rank", "vectors", "lr_cycles", "guard_loss_steps"):
        if getattr(config, name) < 1:
            raise ValueError(f"`{name}` must be at least 1 but is {getattr(config, name)}")
    for name in ("epochs", "max_steps", "warmup_steps", "keep_tokens", "class_images", "validation_every",
                 "checkpoint_every_steps", "save_every_epochs", "keep_epochs", "blocks_to_swap", "processes",
                 "validation_batch"):
        if getattr(config, name) < 0:
            raise ValueError(f"`{name}` must not be negative but is {getattr(config, name)}")
    if config.epochs == 0 and config.max_steps == 0:
        raise ValueError("`epochs` and `max_steps` are both 0: give one of them")
    for name in ("lr", "text_encoder_lr", "alpha", "min_snr_gamma", "noise_offset", "prior_loss_weight",
                 "guard_loss_factor"):
        if getattr(config, name) < 0:
            raise ValueError(f"`{name}` must not be negative but is {getattr(config, name)}")
    if not 0 <= config.unmasked_weight <= 1:
        raise ValueError(f"`unmasked_weight` must be between 0 and 1 but is {config.unmasked_weight}")
    if not 0 <= config.dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1) but is {config.dropout}")
    _one_of(config, "lr_scheduler", SCHEDULERS)
    _one_of(config, "mixed_precision", PRECISIONS)
    _one_of(config, "gradient_checkpointing", CHECKPOINTING)
    _one_of(config, "lora_layers", LORA_LAYERS)
    _one_of(config, "timestep_sampling", TIMESTEP_SAMPLING)
    _one_of(config, "base_precision", BASE_PRECISIONS)
    if config.logit_std <= 0 or config.flow_shift < 0 or config.flux_guidance < 0:
        raise ValueError(f"`logit_std` must be positive and `flow_shift`, `flux_guidance` not negative, but they "
                         f"are {config.logit_std}, {config.flow_shift} and {config.flux_guidance}")
    if config.blocks_to_swap:
        _check_block_swap(config)
    if config.max_sequence_length and not 16 <= config.max_sequence_length <= 512:
        raise ValueError(f"`max_sequence_length` must be 0 (automatic) or between 16 and 512 but is "
                         f"{config.max_sequence_length}")
    _one_of(config, "optimizer", OPTIMIZERS)
    if config.method == "textual-inversion" and not re.match(r"^[\w-]+$", config.token):
        raise ValueError(f"`trigger` must be one word for textual inversion but is {config.token!r}")
    if config.method == "textual-inversion" and not config.init_word.strip():
        raise ValueError("`init_word` is empty")
    if config.method == "dreambooth" and config.prior_preservation and not config.class_prompt.strip():
        raise ValueError("`class_prompt` is empty but `prior_preservation` is on")
    if config.method == "finetune" and config.prior_preservation:
        raise ValueError("`prior_preservation` is DreamBooth's (an instance and a class prompt); finetune trains "
                         "on the dataset's own captions: use method dreambooth, or turn it off")
    _one_of(config, "ema", EMA_MODES)
    if config.ema in ("on", "cpu") and config.method not in WHOLE_MODEL:
        raise ValueError(f"`ema` {config.ema!r} averages a whole model's weights: it is for "
                         f"{' and '.join(WHOLE_MODEL)}, not {config.method}")
    if not 0 < config.ema_decay < 1:
        raise ValueError(f"`ema_decay` must be between 0 and 1 but is {config.ema_decay}")
    if not 0 <= config.guard_image_ratio < 1 or not 0 <= config.guard_clip_drop < 1:
        raise ValueError(f"`guard_image_ratio` and `guard_clip_drop` must be in [0, 1) but are "
                         f"{config.guard_image_ratio} and {config.guard_clip_drop}")
    if config.guard_image_left < 0:
        raise ValueError(f"`guard_image_left` must not be negative but is {config.guard_image_left}")
    if config.guard_loss_factor and config.guard_loss_factor <= 1:
        raise ValueError(f"`guard_loss_factor` must be above 1 (or 0: off) but is {config.guard_loss_factor}")
    bad = [s for s in config.validate_at_steps if not isinstance(s, int) or s < 1]
    if bad:
        raise ValueError(f"`validate_at_steps` must hold steps of at least 1 but holds {bad[0]!r}")
    if not 0 <= config.validation_cfg <= 30:
        raise ValueError(f"`validation_cfg` must be between 0 and 30 but is {config.validation_cfg}")
    _one_of(config, "validation_by", VALIDATION_BY)
    if not 0 < config.validation_budget <= 0.5:
        raise ValueError(f"`validation_budget` must be above 0 and at most 0.5 (a share of the run's time) but is "
                         f"{config.validation_budget}")
    if not 1 <= config.validation_steps <= 150:
        raise ValueError(f"`validation_steps` must be between 1 and 150 but is {config.validation_steps}")
    return config


def _one_of(config: RunConfig, name: str, choices: tuple[str, ...]) -> None:
    if getattr(config, name) not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(choices)} but is {getattr(config, name)!r}")


def _check_block_swap(config: RunConfig) -> None:
    """Block swapping keeps frozen weights on the CPU and brings them in as each block runs; what it cannot do is
    refused, naming the setting."""
    if config.method != "lora":
        raise ValueError(f"`blocks_to_swap` keeps frozen blocks on the CPU for a LoRA; {config.method} trains the "
                         f"whole transformer: set it to 0")
    if config.gradient_checkpointing == "off":  # (auto turns it on with block swapping: studio/train/fit.py)
        raise ValueError("`blocks_to_swap` needs `gradient_checkpointing`: without it every block's weights stay "
                         "on the GPU until the backward pass, and swapping saves nothing")
    if config.base_precision == "nf4":
        raise ValueError("`blocks_to_swap` with `base_precision` nf4: bitsandbytes puts the weights on the GPU as "
                         "it quantizes them; use fp8 or int8 with block swapping")
    if config.compile:
        raise ValueError("`blocks_to_swap` moves weights between the CPU and the GPU inside the step, which "
                         "torch.compile cannot follow: turn `compile` off")


def _check_subjects(config: RunConfig) -> None:
    from studio.train.config import Subject  # (config imports this module)

    for i, s in enumerate(config.extra_subjects, start=2):
        if not isinstance(s, Subject):
            raise ValueError(f"`extra_subjects` must hold subjects (dataset, trigger, ...) but holds {s!r}")
        if not s.dataset.strip():
            raise ValueError(f"`extra_subjects`: subject {i} has no dataset")
        if not s.trigger.strip():
            raise ValueError(f"`extra_subjects`: subject {i} ({s.dataset!r}) has no trigger word: each subject "
                             f"needs its own")
        if s.repeats < 0:
            raise ValueError(f"`extra_subjects`: subject {i} ({s.dataset!r}) has repeats {s.repeats}; 0 means "
                             f"the run's")
    if config.extra_subjects and config.method == "finetune":
        raise ValueError("`extra_subjects` name subjects by trigger words; finetune trains on the dataset's own "
                         "captions: use lora, dreambooth or textual-inversion for several subjects")
    tokens = [s.trigger.strip().lower() for s in config.subjects]
    twice = sorted({t for t in tokens if tokens.count(t) > 1})
    if twice:
        raise ValueError(f"`trigger` {twice[0]!r} names two subjects: give each subject its own trigger word")
    for s in config.subjects:
        if config.method == "textual-inversion" and not re.match(r"^[\w-]+$", s.trigger.strip()):
            raise ValueError(f"`trigger` must be one word for textual inversion but is {s.trigger.strip()!r}")


def family_defaults(config: RunConfig, family, native: int = 0) -> RunConfig:
    """Fill what depends on the base family (resolution: its training side, 512 SD 1.x ... 1024 SDXL and FLUX.1, or
    `native`, the loaded model's own size, where smaller: 64 for the builtins) and refuse what the family cannot
    train, naming the setting (ModelFamily.check_training)."""
    if not config.resolution:
        config = replace(config, resolution=min(native or family.native_resolution, family.native_resolution))
    family.check_training(config)
    return config
