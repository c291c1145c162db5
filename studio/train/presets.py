"""Named presets: the settings of a study (seed 001, 002, 004, 000), a GPU memory tier (SD 1.5, SDXL, FLUX.1,
Z-Image, FLUX.2 klein, Qwen-Image) or the offline pocket demo, applied over a RunConfig. Each is named for what it is for ("Seed 002:
FLUX likeness LoRA (FLUX.1-dev, 24 GB GPU)"); the command line also knows them by their short names ("seed-002-flux")
and their old names. A user's own configurations are saved and loaded by name (workspace/train_configs/)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from studio import fileio
from studio.names import check_name
from studio.train.config import RunConfig


def _tier(base_precision: str, rank: int, resolution: int = 1024) -> dict:
    """A LoRA of a large transformer family on a GPU tier (the Z-Image, FLUX.2 klein and Qwen-Image presets): the
    frozen base stored as `base_precision`, lr 1e-4, batch 1, bf16 autocast, checkpointing, 8-bit AdamW, captions
    cached (the text encoder unloaded before the first step), noise levels by `shift` (each family's own: a static
    shift for Z-Image, the picture size's for FLUX.2 and Qwen-Image, as at inference)."""
    return dict(method="lora", rank=rank, alpha=float(rank), lr=1e-4, batch_size=1, resolution=resolution,
                base_precision=base_precision, mixed_precision="bf16", gradient_checkpointing="on",
                optimizer="adamw8bit", cache=True, min_snr_gamma=0.0, text_encoder_lr=0.0, timestep_sampling="shift")


def _unet_tier(*, rank: int, resolution: int, batch: int, checkpointing: str, validation_batch: int = 0) -> dict:
    """An SD 1.5 or SDXL LoRA on a GPU tier: rank `rank` (alpha = rank) on the transformer blocks' layers, lr 1e-4,
    the frozen base in bf16 under bf16 autocast, 8-bit AdamW, latents and captions cached; `validation_batch`
    prompts drawn together (0: all)."""
    return dict(method="lora", rank=rank, alpha=float(rank), lora_layers="transformer", lr=1e-4, batch_size=batch,
                resolution=resolution, base_precision="bf16", mixed_precision="bf16",
                gradient_checkpointing=checkpointing, optimizer="adamw8bit", cache=True, text_encoder_lr=0.0,
                validation_batch=validation_batch)


# Seed 002's kohya settings (FLUX LoRA of a person, carried over to SD): rank 2, alpha 16, 30 repeats,
# 13 epochs, cosine with 3 restarts, min-SNR 5, noise offset 0.1, flip, buckets, batch 4, UNet lr 5e-4,
# text encoder frozen, 8-bit AdamW where a GPU allows it.
PRESETS: dict[str, dict] = {
    "default": {},
    "seed-002": dict(
        method="lora", rank=2, alpha=16.0, repeats=30, epochs=13, lr=5e-4, text_encoder_lr=0.0,
        lr_scheduler="cosine_with_restarts", lr_cycles=3, min_snr_gamma=5.0, noise_offset=0.1, flip=True,
        buckets=True, batch_size=4, shuffle_captions=False, keep_tokens=0, optimizer="adamw8bit",
    ),
    "seed-004": dict(
        method="dreambooth", lr=5e-6, max_steps=400, batch_size=1, lr_scheduler="constant",
        prior_preservation=True, prior_loss_weight=1.0,
    ),
    "seed-000": dict(method="textual-inversion", init_word="woman", lr=5e-3),
    # builtin:pocket learns a shape it never saw from 8 drawings in 300 steps, about a minute on 2 CPU cores
    # (docs/pocket.md). Convs in the adapter draw the new outline; flips and min-SNR make the few images go further.
    # Validation by the default budget (one step is an epoch here, so every N epochs would be every N steps).
    "pocket": dict(
        method="lora", model="builtin:pocket", lora_layers="all", rank=8, alpha=8.0, lr=2e-3, text_encoder_lr=0.0,
        max_steps=300, epochs=0, batch_size=8, resolution=64, flip=True, min_snr_gamma=5.0, lr_scheduler="constant",
        validation_cfg=4.0, validation_steps=15,
        validation_prompts=["a red {trigger} on a white background", "a blue {trigger} on a black background",
                            "a green {trigger}"],
    ),
    # The whole pocket UNet learns the star too, at 2e-4 in 100 steps (the EMA average is what validation and the
    # export see); at 1e-2 it collapses into one texture for every prompt, which the collapse guard stops
    "pocket-finetune": dict(
        method="finetune", model="builtin:pocket", lr=2e-4, text_encoder_lr=0.0, max_steps=100, epochs=0,
        batch_size=8, resolution=64, flip=True, min_snr_gamma=5.0, lr_scheduler="constant", validation_cfg=4.0,
        validation_steps=15,
        validation_prompts=["a red {trigger} on a white background", "a blue {trigger} on a black background",
                            "a green {trigger}"],
    ),
    # Seed 001's grid as it ran (diffusers' train_text_to_image.py on SD 1.5): the whole UNet at 512 px, batch 1,
    # constant lr, EMA, gradient checkpointing, 8-bit AdamW where CUDA allows, scored by CLIP (torchmetrics'
    # ViT-B/16). The sweep's grid is lr {1e-5, 1e-3} x steps {400, 2000, 4000, 8000}: see SWEEP_PRESETS
    "seed-001": dict(
        method="finetune", lr=1e-5, max_steps=8000, epochs=0, batch_size=1, resolution=512, lr_scheduler="constant",
        ema="on", gradient_checkpointing="on", optimizer="adamw8bit", mixed_precision="bf16",
        clip_model="openai/clip-vit-base-patch16", validation_every=0, text_encoder_lr=0.0,
        save_every_epochs=4,  # a full checkpoint (UNet, EMA, optimizer) is ~9 GB at fp32: every 4 epochs, not each
    ),
    # Seed 002 as it trained (kohya, FLUX.1-dev, 13 epochs of 30 repeats): rank 2 / alpha 16, lr 5e-4, cosine with
    # 3 restarts, batch 4 at 1024 px, flips, noise offset 0.1; its min-SNR 5 does not apply to flow matching. The
    # transformer in fp8 so it fits a 24 GB GPU.
    "seed-002-flux": dict(
        method="lora", rank=2, alpha=16.0, repeats=30, epochs=13, lr=5e-4, lr_scheduler="cosine_with_restarts",
        lr_cycles=3, noise_offset=0.1, flip=True, buckets=True, batch_size=4, resolution=1024, keep_tokens=0,
        optimizer="adamw8bit", base_precision="fp8", mixed_precision="bf16", gradient_checkpointing="on",
        text_encoder_lr=0.0, min_snr_gamma=0.0,
    ),
    # SD 1.5 and SDXL by GPU memory: a LoRA of the transformer blocks' layers (kohya's default) with the frozen base
    # in bf16, latents and captions cached, 8-bit AdamW; checkpointing and batch as the memory plan
    # (studio/train/plan.py, docs/memory.md) leaves room for them on each card.
    "sd15-8gb": _unet_tier(rank=16, resolution=512, batch=1, checkpointing="off"),
    "sd15-12gb": _unet_tier(rank=32, resolution=512, batch=2, checkpointing="off"),
    "sdxl-12gb": _unet_tier(rank=16, resolution=1024, batch=1, checkpointing="on", validation_batch=1),
    "sdxl-16gb": _unet_tier(rank=32, resolution=1024, batch=1, checkpointing="on"),
    "sdxl-24gb": _unet_tier(rank=32, resolution=1024, batch=1, checkpointing="off"),
    # FLUX.1 by GPU memory (as fluxgym, ai-toolkit, SimpleTuner and kohya fit it): the frozen transformer stored
    # small, the LoRA in float32, text embeddings and latents cached (T5 is unloaded before the first step),
    # checkpointing on; on 8 GB, the last 42 of the transformer's 57 blocks wait on the CPU (kohya's blocks_to_swap:
    # all 38 single-stream blocks and 4 double-stream ones, fp8, as bitsandbytes' nf4 cannot be swapped) and T5
    # encodes on the CPU (it does not fit the card).
    "flux-24gb": dict(
        method="lora", rank=16, alpha=16.0, lr=1e-4, batch_size=1, resolution=1024, base_precision="fp8",
        mixed_precision="bf16", gradient_checkpointing="on", optimizer="adamw8bit", cache=True, min_snr_gamma=0.0,
        text_encoder_lr=0.0,
    ),
    "flux-16gb": dict(
        method="lora", rank=16, alpha=16.0, lr=1e-4, batch_size=1, resolution=1024, base_precision="int8",
        mixed_precision="bf16", gradient_checkpointing="on", optimizer="adamw8bit", cache=True, min_snr_gamma=0.0,
        text_encoder_lr=0.0,
    ),
    "flux-12gb": dict(
        method="lora", rank=8, alpha=8.0, lr=1e-4, batch_size=1, resolution=1024, base_precision="nf4",
        mixed_precision="bf16", gradient_checkpointing="on", optimizer="adamw8bit", cache=True, min_snr_gamma=0.0,
        text_encoder_lr=0.0,
    ),
    "flux-8gb": dict(
        method="lora", rank=8, alpha=8.0, lr=1e-4, batch_size=1, resolution=512, base_precision="fp8",
        blocks_to_swap=42, mixed_precision="bf16", gradient_checkpointing="on", optimizer="adamw8bit", cache=True,
        min_snr_gamma=0.0, text_encoder_lr=0.0,
    ),
    # The 2026 bases by GPU memory, from their trainers' published figures (docs/new_families.md): the frozen
    # transformer stored small where it must be, the LoRA in float32, captions encoded and the Qwen text encoder
    # unloaded before the first step (a staged load), checkpointing on. `shift` draws noise levels as each family's
    # scheduler does: Z-Image's static shift, FLUX.2's and Qwen-Image's by picture size (as at inference).
    # Z-Image (6.2 B): SimpleTuner's rank-16 LoRA at 1024 px takes ~10-12 GB with a 4-bit base, 16-24 GB with 8-bit.
    "zimage-12gb": _tier("nf4", 16),
    "zimage-16gb": _tier("int8", 16),
    "zimage-24gb": _tier("bf16", 32),
    # FLUX.2 klein: SimpleTuner gives 4B ~12 GB in bf16, ~8 GB with an 8-bit base; 9B ~22 GB bf16, ~14 GB 8-bit
    # (train the klein *base* weights: the released klein models are step-distilled).
    "flux2-klein-10gb": _tier("int8", 16),
    "flux2-klein-16gb": _tier("bf16", 32),
    "flux2-klein9b-16gb": _tier("int8", 16),
    "flux2-klein9b-24gb": _tier("bf16", 32),
    # Qwen-Image (20.4 B): musubi-tuner needs 42 GB in bf16 at 1024 px, 30 GB with an fp8 base, 24 GB with 16 of 60
    # blocks swapped to the CPU; SimpleTuner calls 24 GB the floor (a 4-bit base). Block swapping is the memory
    # plan's (issue 23): here a 4-bit base (10 GB) fits 24 GB, an 8-bit one 48 GB.
    "qwenimage-24gb": _tier("nf4", 16),
    "qwenimage-48gb": _tier("int8", 32, resolution=1280),
}


# What each preset is for, as the Train tab lists them (the command line takes the short names above, and the names
# the presets had before: "seed-002 (kohya person LoRA)")
TITLES = {
    "default": "Default: each method's own settings",
    "seed-002": "Seed 002: person likeness LoRA (kohya's settings)",
    "seed-004": "Seed 004: person likeness DreamBooth (prior preservation)",
    "seed-000": "Seed 000: a face as a textual inversion",
    "pocket": "Demo: teach builtin:pocket a new shape (LoRA)",
    "pocket-finetune": "Demo: fine-tune all of builtin:pocket on a new shape",
    "seed-001": "Seed 001: full fine-tune, learning rate x steps sweep",
    "seed-002-flux": "Seed 002: FLUX likeness LoRA (FLUX.1-dev, 24 GB GPU)",
    "sd15-8gb": "SD 1.5 LoRA on an 8 GB GPU",
    "sd15-12gb": "SD 1.5 LoRA on a 12 GB GPU",
    "sdxl-12gb": "SDXL LoRA on a 12 GB GPU",
    "sdxl-16gb": "SDXL LoRA on a 16 GB GPU",
    "sdxl-24gb": "SDXL LoRA on a 24 GB GPU",
    "flux-24gb": "FLUX.1 LoRA on a 24 GB GPU",
    "flux-16gb": "FLUX.1 LoRA on a 16 GB GPU",
    "flux-12gb": "FLUX.1 LoRA on a 12 GB GPU",
    "flux-8gb": "FLUX.1 LoRA on an 8 GB GPU (blocks swapped)",
    "zimage-12gb": "Z-Image LoRA on a 12 GB GPU",
    "zimage-16gb": "Z-Image LoRA on a 16 GB GPU",
    "zimage-24gb": "Z-Image LoRA on a 24 GB GPU",
    "flux2-klein-10gb": "FLUX.2 klein 4B LoRA on a 10 GB GPU",
    "flux2-klein-16gb": "FLUX.2 klein 4B LoRA on a 16 GB GPU",
    "flux2-klein9b-16gb": "FLUX.2 klein 9B LoRA on a 16 GB GPU",
    "flux2-klein9b-24gb": "FLUX.2 klein 9B LoRA on a 24 GB GPU",
    "qwenimage-24gb": "Qwen-Image LoRA on a 24 GB GPU",
    "qwenimage-48gb": "Qwen-Image LoRA on a 48 GB GPU",
}


def preset_name(text: str) -> str:
    """A preset's short name, from its short name, its title or its old name ("pocket (teach builtin:pocket a new
    shape)")."""
    if text in PRESETS:
        return text
    by_title = {title: key for key, title in TITLES.items()}
    if text in by_title:
        return by_title[text]
    old = text.split(" (")[0]
    if text.endswith(")") and old in PRESETS:
        return old
    raise ValueError(f"`preset` must be one of {', '.join(PRESETS)} but is {text!r}")


def preset_choices() -> list[tuple[str, str]]:
    """(title, short name) of every preset, for a dropdown that shows what each is for."""
    return [(TITLES[key], key) for key in PRESETS]


def apply_preset(config: RunConfig, preset: str) -> RunConfig:
    return replace(config, **PRESETS[preset_name(preset)])


# ---- saved configurations: the user's own, in workspace/train_configs/<name>.json (a run.json's format) ----------

def configs_dir(settings) -> Path:
    return Path(settings.workspace_dir) / "train_configs"


def saved_configs(settings) -> list[str]:
    """The names of the saved training configurations, newest first."""
    folder = configs_dir(settings)
    files = sorted(folder.glob("*.json"), key=lambda p: -p.stat().st_mtime) if folder.is_dir() else []
    return [p.stem for p in files]


def save_config(settings, name: str, config: RunConfig) -> Path:
    """Keep `config` as `name` (replacing a configuration of that name); a run started from it later is checked
    then, so a configuration may leave the dataset or the run's name empty."""
    path = configs_dir(settings) / f"{check_name(name, 'config_name')}.json"
    fileio.write_json(path, config.to_json())
    return path


def load_config(settings, name: str) -> RunConfig:
    """The saved configuration `name`; a name that is none is a ValueError naming it."""
    if name not in saved_configs(settings):
        raise ValueError(f"`config_name` {name!r} is no saved configuration (saved: "
                         f"{', '.join(saved_configs(settings)) or 'none'})")
    return RunConfig.load(configs_dir(settings) / f"{name}.json")
