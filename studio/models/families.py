"""What differs between model families, in one table: the store identifies a family, and the cache, the generator
and the training loop ask its FamilySpec instead of branching on the family's name.

SD 1.x, SD 2.x and SDXL are UNet models trained to predict noise (or v) on DDPM timesteps, guided by classifier-free
guidance. FLUX.1 is a transformer trained by flow matching on 16-channel latents packed 2x2 into tokens, guided
(dev) by a distilled guidance value it takes as an input; schnell is distilled to a few steps and takes none.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Family(str, Enum):
    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    FLUX = "flux"

    @property
    def spec(self) -> "FamilySpec":
        return FAMILIES[self]

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def native_resolution(self) -> int:
        return self.spec.native_resolution


@dataclass(frozen=True)
class FamilySpec:
    family: Family
    label: str
    native_resolution: int  # the side it was trained at
    pipeline_class: str  # the diffusers txt2img pipeline
    denoiser: str  # "unet" | "transformer": the module LoRA, DreamBooth and fine-tune train
    size_multiple: int  # pictures' sides are multiples of this (VAE factor, x2 where latents are packed)
    objective: str  # "noise": DDPM noise/v prediction; "flow": flow matching (target = noise - latents)
    guidance: str  # "cfg": classifier-free guidance; "distilled": a guidance value the model takes as input
    default_cfg: float  # CFG scale Generate starts with (FLUX: real CFG off, 1)
    default_steps: int
    text_encoders: tuple[str, ...]  # what encodes a prompt, in the pipeline's order
    kohya_version: str  # the `ss_base_model_version` kohya writes in LoRA headers
    controlnet: bool  # whether the studio's ControlNet path (diffusers' SD ControlNets) fits it
    textual_inversion: bool  # whether the studio's embeddings (CLIP token vectors) fit it

    @property
    def flow(self) -> bool:
        return self.objective == "flow"


FAMILIES: dict[Family, FamilySpec] = {s.family: s for s in (
    FamilySpec(Family.SD1, "SD 1.x", 512, "StableDiffusionPipeline", "unet", 8, "noise", "cfg", 7.0, 20, ("clip",),
               "sd_v1", controlnet=True, textual_inversion=True),
    FamilySpec(Family.SD2, "SD 2.x", 768, "StableDiffusionPipeline", "unet", 8, "noise", "cfg", 7.0, 20,
               ("open_clip",), "sd_v2", controlnet=True, textual_inversion=True),
    FamilySpec(Family.SDXL, "SDXL", 1024, "StableDiffusionXLPipeline", "unet", 8, "noise", "cfg", 7.0, 20,
               ("clip", "open_clip"), "sdxl_base_v1-0", controlnet=True, textual_inversion=True),
    FamilySpec(Family.FLUX, "FLUX.1", 1024, "FluxPipeline", "transformer", 16, "flow", "distilled", 1.0, 20,
               ("clip", "t5"), "flux1", controlnet=False, textual_inversion=False),
)}

# FLUX.1-dev's distilled guidance default (what Forge and diffusers start with); schnell takes none.
DISTILLED_CFG = 3.5


def spec_of(family: Family | None) -> FamilySpec:
    """The spec of `family`; an unknown family (a hub id not yet downloaded) is taken as SD 1.x until loaded."""
    return FAMILIES[family or Family.SD1]


def family_of_pipeline(pipe) -> Family:
    """A loaded pipeline's family, from its modules (for builtins and files the store could not tell from names)."""
    if getattr(pipe, "transformer", None) is not None and type(pipe).__name__.startswith("Flux"):
        return Family.FLUX
    if getattr(pipe, "text_encoder_2", None) is not None:
        return Family.SDXL
    width = pipe.unet.config.cross_attention_dim
    return Family.SD2 if width == 1024 else Family.SD1


def denoiser(pipe):
    """The module that denoises: the UNet, or FLUX's transformer."""
    return pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.unet


def native_size(pipe) -> int:
    """The picture side a loaded pipeline was trained at (512 for SD 1.5, 1024 for SDXL and FLUX, 64 for the tiny
    builtins): the UNet's sample size in pixels; FLUX's transformer has none, so its VAE's (1024 in FLUX.1's)."""
    if getattr(pipe, "transformer", None) is not None:
        return int(pipe.vae.config.sample_size)
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def has_distilled_guidance(pipe) -> bool:
    """FLUX.1-dev takes a guidance value as an input; schnell does not."""
    return bool(getattr(denoiser(pipe).config, "guidance_embeds", False))
