"""Pieces the tiny builtin models of several families share: a toy vocabulary, CLIP text configs and tokenizers the
project writes, a small VAE and SD's noise schedule. Random weights, seeded by the builders; offline."""

from __future__ import annotations

from pathlib import Path

# Words that become single tokens in the tiny tokenizers (keeps test prompts well inside 77 tokens).
TINY_WORDS = "a photo of the an in on with and person man woman dog cat face portrait close up red blue green".split()


def clip_text_config(vocab_size: int, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=vocab_size - 2,  # the tokenizer writer puts the two special tokens last
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=5,
        vocab_size=vocab_size,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=projection_dim or 32,
    )


def clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def t5_tokenizer(folder: Path):
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(str(folder))


def tiny_unet(**family):
    """The tiny UNet families' denoiser: two levels (32, 64 channels), two layers each, 32 latent pixels;
    `family`: what the family adds (its cross-attention width, SDXL's added conditioning)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **family,
    )


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=64,
    )


def sd_scheduler_config() -> dict:
    # The noise schedule of SD 1.x/SDXL, so samplers and training behave as on real models.
    return dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                steps_offset=1, timestep_spacing="leading")
