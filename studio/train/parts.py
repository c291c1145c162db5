"""The base model's parts a run trains with (from the model store, in memory), text encoding and validation pipelines."""

from __future__ import annotations

from dataclasses import dataclass

from studio.models.refs import Family


@dataclass
class Parts:
    base_id: str
    family: Family
    pipe: object  # the base txt2img pipeline; its modules are the ones trained
    noise_scheduler: object  # DDPMScheduler with the base's noise schedule

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def text_encoders(self) -> list:
        return [m for m in (self.pipe.text_encoder, getattr(self.pipe, "text_encoder_2", None)) if m is not None]

    @property
    def tokenizers(self) -> list:
        return [t for t in (self.pipe.tokenizer, getattr(self.pipe, "tokenizer_2", None)) if t is not None]

    @property
    def sdxl(self) -> bool:
        return self.family == Family.SDXL

    @property
    def vae_scale(self) -> float:
        return self.vae.config.scaling_factor

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def load_parts(store, model_id: str, device: str) -> Parts:
    """Load the base through the store in float32 (trained weights stay fp32; autocast handles mixed precision)."""
    import torch
    from diffusers import DDPMScheduler

    ref = store.resolve(model_id)
    pipe = store.load_base(ref, dtype=torch.float32, device=device)
    family = ref.family or (Family.SDXL if hasattr(pipe, "text_encoder_2") else Family.SD1)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    for module in (pipe.unet, pipe.vae, *[m for m in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if m]):
        module.requires_grad_(False)
    return Parts(model_id, family, pipe, noise_scheduler)


def keep_frozen_in(parts: Parts, dtype, *, lora: bool, trains_text: bool, trains_unet: bool) -> None:
    """With mixed precision, weights that do not train are kept in `dtype` (half the memory, as diffusers' scripts
    do); trained weights, LoRA layers included, stay float32 so small updates are not lost to rounding."""
    import torch
    from diffusers.training_utils import cast_training_params

    if not parts.sdxl:  # SDXL's VAE overflows in fp16; SD 1.x's does not
        parts.vae.to(dtype)
    for encoder in parts.text_encoders:
        if not trains_text or lora:
            encoder.to(dtype)
            cast_training_params(encoder, torch.float32)
    if lora or not trains_unet:
        parts.unet.to(dtype)
        cast_training_params(parts.unet, torch.float32)


def encode_text(parts: Parts, captions: list[str], encoders: list | None = None):
    """Text conditioning for `captions`: hidden states (B, 77, D) and, for SDXL, pooled embeddings (B, P).
    `encoders` replaces the text encoders (their multi-GPU wrappers, so gradients are shared)."""
    import torch

    device = parts.unet.device
    hidden, pooled = [], None
    for tokenizer, encoder in zip(parts.tokenizers, encoders or parts.text_encoders):
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)  # (B, 77)
        if parts.sdxl:
            out = encoder(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])  # SDXL conditions on the penultimate layer
            pooled = out[0]  # the second encoder's projected pooled output (B, P)
        else:
            hidden.append(encoder(ids)[0])  # (B, 77, D)
    return torch.cat(hidden, dim=-1), pooled


def time_ids(size_info: list[tuple[int, int, int, int]], target: tuple[int, int], device):
    """SDXL's size conditioning per sample: (original h, w, crop top, left, target h, w) -> (B, 6)."""
    import torch

    width, height = target
    rows = [[oh, ow, top, left, height, width] for oh, ow, top, left in size_info]
    return torch.tensor(rows, dtype=torch.float32, device=device)


def validation_pipeline(parts: Parts):
    """A txt2img pipeline over the modules being trained (no copy): what validation generates with."""
    components = parts.pipe.components
    extra = {"requires_safety_checker": False} if "safety_checker" in components else {}
    pipe = type(parts.pipe)(**components, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe
