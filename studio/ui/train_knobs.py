"""The Train tab's knobs: the table of RunConfig fields the Settings accordion shows (in /train_start's order), the
widget each gets, and the widgets' values back to a checked RunConfig (also the Sweep accordion's)."""

from __future__ import annotations

import json
from dataclasses import fields

import gradio as gr

from studio.train.config import (BASE_PRECISIONS, EMA_MODES, LORA_LAYERS, OPTIMIZERS, PRECISIONS, SCHEDULERS,
                                 TIMESTEP_SAMPLING, VALIDATION_BY, RunConfig, Subject)
from studio.ui.common import chosen_model
from studio.ui.names import check_listed, listed
DEFAULTS = RunConfig(name="x", dataset="x")
# The Settings accordion: (RunConfig field, row, label, widget options), in the order /train_start takes them. A
# field's type picks its widget (bool: checkbox, choices: dropdown, str: text, int/float: number); its default is
# RunConfig's.
KNOB_SPECS = (
    ("resolution", 0, "Resolution", dict(info="0: the family's native size")),
    ("buckets", 0, "Aspect-ratio buckets", {}),
    ("repeats", 0, "Repeats", {}),
    ("epochs", 0, "Epochs", {}),
    ("max_steps", 0, "Max steps", dict(info="> 0 overrides epochs")),
    ("batch_size", 0, "Batch size", {}),
    ("grad_accum", 0, "Gradient accumulation", {}),
    ("lr", 1, "Learning rate", dict(info="0: the method's default")),
    ("text_encoder_lr", 1, "Text encoder lr", dict(info="0: frozen")),
    ("lr_scheduler", 1, "LR scheduler", dict(choices=SCHEDULERS)),
    ("warmup_steps", 1, "Warmup steps", {}),
    ("lr_cycles", 1, "Restarts (cycles)", {}),
    ("rank", 2, "LoRA rank", {}),
    ("alpha", 2, "LoRA alpha", {}),
    ("dropout", 2, "LoRA dropout", {}),
    ("min_snr_gamma", 2, "Min-SNR gamma", dict(info="0 off, 5 in seed 002")),
    ("noise_offset", 2, "Noise offset", {}),
    ("flip", 3, "Flip augmentation", {}),
    ("shuffle_captions", 3, "Shuffle caption tags", {}),
    ("keep_tokens", 3, "Keep tokens", {}),
    ("mixed_precision", 3, "Mixed precision", dict(choices=PRECISIONS)),
    ("gradient_checkpointing", 3, "Gradient checkpointing", {}),
    ("optimizer", 3, "Optimizer", dict(choices=OPTIMIZERS)),
    ("seed", 3, "Seed", {}),
    ("cache", 3, "Cache latents and text", {}),
    ("prior_preservation", 4, "Prior preservation (DreamBooth)", {}),
    ("class_prompt", 4, "Class prompt", {}),
    ("class_images", 4, "Class images", {}),
    ("prior_loss_weight", 4, "Prior loss weight", {}),
    ("init_word", 4, "TI: init word", {}),
    ("vectors", 4, "TI: vectors per token", {}),
    ("validation_every", 4, "Validate every N", dict(info="epochs or steps, by 'Validate by'; 0: never")),
    ("validation_steps", 4, "Validation sampling steps", {}),
    ("lora_layers", 2, "LoRA layers", dict(choices=LORA_LAYERS,
                                           info="all adds the ResNet convs (LoCon): for shapes the base cannot draw")),
    ("validation_cfg", 4, "Validation CFG scale", {}),
    ("save_every_epochs", 4, "Save every N epochs", dict(info="0: at each validation")),
    ("keep_epochs", 4, "Keep last N epochs", dict(info="0: all")),
    ("base_precision", 5, "Transformers: frozen base stored as", dict(
        choices=BASE_PRECISIONS, info="FLUX.1 LoRA: bf16 ~24 GB, fp8/int8 (torchao) ~16 GB, nf4 (CUDA) ~12 GB; "
                                      "the presets say it for Z-Image, FLUX.2 klein, Qwen-Image")),
    ("timestep_sampling", 5, "Flow models: noise levels", dict(choices=TIMESTEP_SAMPLING)),
    ("logit_mean", 5, "logit-normal mean", {}),
    ("logit_std", 5, "logit-normal std", {}),
    ("flow_shift", 5, "Shift", dict(info="0: the family's (FLUX.1 3, Z-Image its scheduler's; FLUX.2 and "
                                         "Qwen-Image by picture size)")),
    ("flux_guidance", 5, "Distilled guidance while training", dict(info="1 as kohya; generation uses 3.5")),
    ("max_sequence_length", 5, "T5 tokens", dict(info="0: 512 dev, 256 schnell")),
    ("ema", 6, "EMA of the weights", dict(choices=EMA_MODES, info="finetune/DreamBooth; auto: on for finetune")),
    ("ema_decay", 6, "EMA decay", {}),
    ("clip_model", 6, "CLIP for validation scores", dict(info="e.g. openai/clip-vit-base-patch16; empty: none")),
    ("guard_loss_factor", 7, "Guard: loss jump (x running level)", dict(info="0: off")),
    ("guard_loss_steps", 7, "Guard: loss steps", dict(info="smoothed over, and stays up for, this many steps")),
    ("guard_image_ratio", 7, "Guard: image sameness (x base)", dict(info="0: off")),
    ("guard_clip_drop", 7, "Guard: CLIP drop (fraction)", dict(info="0: off")),
    ("masked_loss", 6, "Masked training", dict(info="the dataset's masks: bystanders and their blur are not learnt")),
    ("unmasked_weight", 6, "Weight of masked pixels", dict(info="0: not learnt (OneTrainer: 0.1)")),
    ("extra_subjects", 8, "Extra subjects (one a line: dataset:trigger[:class word[:repeats]])", dict(
        lines=2, placeholder="e.g. ben:sks:man", info="learnt in the same run as the dataset above; each scored on "
                                                     "its own prompts and against the others' datasets")),
    ("balance", 8, "Balance subjects", dict(info="each subject seen as often per epoch (the smaller set repeated)")),
    ("continue_from", 8, "Add a subject to run", dict(
        choices=("",), allow_custom_value=True, info="a finished LoRA run to start from; its subjects come along (their "
                                                     "scores before and after are yours to compare)")),
    ("guard_image_left", 7, "Guard: pictures left base and data (x)", dict(
        info="and every picture this far from both; 0: sameness alone")),
    ("validation_by", 4, "Validate by", dict(choices=VALIDATION_BY,
                                             info="budget: a share of the run's time, start to end")),
    ("validation_budget", 4, "Validation budget (share of time)", dict(info="0.1: at most 10% of the run")),
    ("compile", 3, "torch.compile the denoiser", dict(info="slow first steps; off on CPUs")),
    ("gpus", 3, "GPUs", dict(placeholder="e.g. 0,1", info="one process each, sharing every batch; empty: every GPU")),
)
KNOBS = tuple(name for name, _, _, _ in KNOB_SPECS)
_TYPES = {f.name: f.type for f in fields(RunConfig)}


def subjects_text(subjects: list[Subject]) -> str:
    """RunConfig.extra_subjects as the "Extra subjects" box shows them."""
    lines = []
    for s in subjects:
        tail = [s.class_word, str(s.repeats) if s.repeats else ""]
        while tail and not tail[-1]:
            tail.pop()
        lines.append(":".join([s.dataset, s.trigger, *tail]))
    return "\n".join(lines)


def parse_subjects(text) -> list[Subject]:
    """The "Extra subjects" box: one dataset:trigger[:class word[:repeats]] a line; a bad line is named. Through the
    API it may also be run.json's JSON list of subjects (an empty one: `[]`)."""
    if isinstance(text, str) and text.strip().startswith("["):
        try:
            text = json.loads(text)
        except ValueError as e:
            raise ValueError(f"`extra_subjects` is not a JSON list of subjects: {e}") from None
    if isinstance(text, list):
        try:
            return [Subject(**s) if isinstance(s, dict) else s for s in text]
        except TypeError as e:
            raise ValueError(f"`extra_subjects` holds a subject with unknown keys: {e}") from None
    out = []
    for n, line in enumerate((text or "").splitlines(), start=1):
        if line.strip():
            try:
                out.append(Subject.parse(line))
            except ValueError as e:
                raise ValueError(f"Extra subjects, line {n}: {e}") from None
    return out


def knob_widget(ctx, name: str, label: str, options: dict):
    """The widget of RunConfig field `name`, at its default (the CLIP model's checked against the studio's list)."""
    kind, value = _TYPES[name], getattr(DEFAULTS, name)
    if name == "extra_subjects":
        return gr.Textbox(subjects_text(value), label=label, **options)
    options.setdefault("min_width", 200 if kind in ("bool", bool) else 150)  # labels whole, not "Drear prior prese"
    if kind in ("bool", bool):
        return gr.Checkbox(value, label=label, **options)
    if "choices" in options:
        return gr.Dropdown(list(options.pop("choices")), value=value, label=label, **options)
    if kind in ("str", str):
        box = gr.Textbox(value, label=label, **options)
        return listed(ctx, box, "CLIP model") if name == "clip_model" else box
    return gr.Number(value, precision=0 if kind in ("int", int) else None, label=label, **options)


def checked_subjects(studio, config: RunConfig) -> RunConfig:
    """`config`, once each extra subject's dataset is one the studio lists."""
    for subject in config.extra_subjects:
        check_listed(studio, "dataset", subject.dataset, "extra_subjects")
    return config


def config_from_widgets(name, dataset, model, method, trigger, prompts, **knobs) -> RunConfig:
    """/train_start's inputs (by name) -> a checked RunConfig (numbers from gradio may arrive as floats or None)."""
    values = {}
    for key, value in knobs.items():
        if value is None:
            continue
        kind = _TYPES[key]
        if key == "extra_subjects":
            values[key] = parse_subjects(value)
            continue
        values[key] = int(value) if kind in ("int", int) else float(value) if kind in ("float", float) else value
    return RunConfig(name=(name or "").strip(), dataset=dataset or "", method=method, model=chosen_model(model),
                     trigger=(trigger or "").strip(),
                     validation_prompts=[p.strip() for p in (prompts or "").splitlines() if p.strip()],
                     **values).check()
