"""FLUX.1 models the studio builds from configs with random weights: builtin:tiny-flux (and its schnell shape), and
FLUX.1 at its real widths with fewer layers for the benchmarks."""

from __future__ import annotations

from pathlib import Path


def build_tiny(out: Path, guidance_embeds: bool = True) -> None:
    """A FLUX.1-shaped pipeline at toy widths: CLIP + T5 text encoders with tokenizers the project writes, a
    transformer of one double and one single block, a 16-channel VAE (factor 2, so 64 px -> 16 x 16 packed tokens),
    and FLUX.1-dev's flow-matching scheduler. `guidance_embeds` False is schnell's shape (no guidance input)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    from studio.models.tiny_parts import TINY_WORDS, clip_text_config, clip_tokenizer, t5_tokenizer
    from studio.models.tokenizer import write_clip_tokenizer, write_t5_tokenizer

    vocab_size = write_clip_tokenizer(out / "tokenizer", TINY_WORDS)
    t5_size = write_t5_tokenizer(out / "tokenizer_2", TINY_WORDS)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(clip_text_config(vocab_size))
    torch.manual_seed(0)
    text_encoder_2 = T5EncoderModel(T5Config(vocab_size=t5_size, d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                             num_heads=4, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                                             is_encoder_decoder=False, use_cache=False, decoder_start_token_id=0,
                                             pad_token_id=0, eos_token_id=1))
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=(4, 6, 6),
                                         guidance_embeds=guidance_embeds)
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=16, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.1159, scaling_factor=0.3611, sample_size=64)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(out / "tokenizer"),
                        text_encoder_2=text_encoder_2, tokenizer_2=t5_tokenizer(out / "tokenizer_2"),
                        transformer=transformer)
    pipe.save_pretrained(out, safe_serialization=True)


def build_flux_at_real_widths(out: Path, *, double: int = 1, single: int = 1, t5_layers: int = 2,
                              clip_layers: int = 12, guidance_embeds: bool = True) -> Path:
    """FLUX.1 at its real widths with fewer layers, for memory and speed measurements (bench/flux.py, the gpu tests),
    not a builtin model: random weights from configs (no download), saved in bf16 as a diffusers folder `out`.

    The transformer has FLUX.1's hidden 3072 (24 heads of 128), T5 4096 and CLIP 768 inputs and 64 packed latent
    channels, with `double` + `single` blocks (the real one: 19 + 38); T5 is T5-XXL's layer (d_model 4096, 64 heads
    of 64, gated-GELU d_ff 10240) `t5_layers` times (the real one: 24); CLIP is CLIP-L's (768, 12 heads, MLP 3072,
    `clip_layers` of 12). The VAE is narrow but downsamples by 8 as FLUX.1's does, so a 512 px picture is 1024
    packed tokens as on the real model."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from studio.models.tiny_parts import TINY_WORDS, clip_tokenizer, t5_tokenizer
    from studio.models.tokenizer import write_clip_tokenizer, write_t5_tokenizer

    out = Path(out)
    vocab_size = write_clip_tokenizer(out / "tokenizer", TINY_WORDS)
    t5_size = write_t5_tokenizer(out / "tokenizer_2", TINY_WORDS)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # built as a bf16 checkpoint is stored: no float32 copy on the way
    try:
        clip = CLIPTextModel(CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
            num_hidden_layers=clip_layers, projection_dim=768, max_position_embeddings=77, hidden_act="quick_gelu",
            bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1))
        t5 = T5EncoderModel(T5Config(
            vocab_size=t5_size, d_model=4096, d_kv=64, d_ff=10240, num_layers=t5_layers, num_heads=64,
            relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
            is_encoder_decoder=False, use_cache=False, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
        transformer = FluxTransformer2DModel(num_layers=double, num_single_layers=single,
                                             guidance_embeds=guidance_embeds)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
                            up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=(8, 16, 16, 16),
                            layers_per_block=1, latent_channels=16, norm_num_groups=4, use_quant_conv=False,
                            use_post_quant_conv=False, mid_block_add_attention=False, shift_factor=0.1159,
                            scaling_factor=0.3611)
    finally:
        torch.set_default_dtype(torch.float32)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=clip_tokenizer(out / "tokenizer"),
                        text_encoder_2=t5, tokenizer_2=t5_tokenizer(out / "tokenizer_2"), transformer=transformer)
    pipe.save_pretrained(out, safe_serialization=True)
    return out
