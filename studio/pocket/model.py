"""The pocket model's architecture: SD 1.x-style configs for its VAE, text encoder and UNet, built untrained."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from studio.models.tokenizer import write_clip_tokenizer
from studio.pocket.scenes import caption_words


@dataclass(frozen=True)
class PocketArchitecture:
    # Image side in pixels; the VAE downsamples by 4, so latents are 16x16x4.
    image_size: int = 64
    # VAE widths per level: three levels = two stride-2 steps = factor 4.
    vae_channels: tuple[int, ...] = (32, 64, 64)
    latent_channels: int = 4
    # Text encoder: a small CLIP transformer; its width is the UNet's cross-attention width.
    text_width: int = 64
    text_layers: int = 3
    text_heads: int = 4
    # UNet widths per level on 16x16 -> 8x8 -> 4x4 latents; cross-attention on 8x8 and 4x4 only, because
    # attention over 256 tokens costs a third of a training step on the CPU and colour/shape need no more.
    unet_channels: tuple[int, ...] = (32, 64, 64)
    unet_layers_per_block: int = 1
    unet_heads: int = 2  # 32 channels per head
    # SD 1.x noise schedule, so samplers and LoRA trainers treat pocket like any SD 1.x model.
    scheduler: dict = field(default_factory=lambda: dict(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        steps_offset=1, timestep_spacing="leading"))


def write_tokenizer(folder: Path):
    """Write the pocket tokenizer (every caption word one token) into folder/tokenizer and return it loaded."""
    from transformers import CLIPTokenizer

    write_clip_tokenizer(folder / "tokenizer", caption_words())
    return CLIPTokenizer(str(folder / "tokenizer" / "vocab.json"), str(folder / "tokenizer" / "merges.txt"),
                         model_max_length=77)


def build_vae(arch: PocketArchitecture):
    from diffusers import AutoencoderKL

    n = len(arch.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=arch.vae_channels,
        layers_per_block=1,
        latent_channels=arch.latent_channels,
        norm_num_groups=16,
        sample_size=arch.image_size,
        mid_block_add_attention=False,  # fully convolutional: it can train on crops and run at any size
    )


def build_text_encoder(arch: PocketArchitecture, vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        bos_token_id=vocab_size - 2,  # the tokenizer writer puts the two special tokens last
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_size=arch.text_width,
        intermediate_size=arch.text_width * 4,
        num_attention_heads=arch.text_heads,
        num_hidden_layers=arch.text_layers,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=arch.text_width,
    )
    return CLIPTextModel(config)


def build_unet(arch: PocketArchitecture):
    from diffusers import UNet2DConditionModel

    n = len(arch.unet_channels)
    return UNet2DConditionModel(
        sample_size=arch.image_size // 4,
        in_channels=arch.latent_channels,
        out_channels=arch.latent_channels,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        block_out_channels=arch.unet_channels,
        layers_per_block=arch.unet_layers_per_block,
        cross_attention_dim=arch.text_width,
        attention_head_dim=arch.unet_heads,  # in SD 1.x configs this number is the count of heads
        norm_num_groups=16,
    )


def build_scheduler(arch: PocketArchitecture):
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**arch.scheduler)
