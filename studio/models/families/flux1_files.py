"""FLUX.1's files: its single-file transformer as Forge and ComfyUI keep it (BFL's layout, with CLIP-L, T5-XXL and the
VAE as files beside it), and the models the studio builds from configs (builtin:tiny-flux, and FLUX.1 at its real
widths with fewer layers for the benchmarks)."""

from __future__ import annotations

from pathlib import Path


def load_flux_file(store, ref, *, dtype):
    """A FLUX.1 transformer in one file (BFL's layout, maybe under model.diffusion_model.). The rest comes from
    black-forest-labs' repo of its kind (dev or schnell, told by its keys): configs and tokenizers always; CLIP-L,
    T5-XXL and the VAE from files beside it or in models/text_encoder/ and models/vae/ (Forge's names), else from
    the repo. Offline, missing parts are named."""
    import diffusers

    from studio.models.files import checkpoint_keys, has_guidance_keys

    keys = checkpoint_keys(ref.path)
    dev = has_guidance_keys(keys)
    repo = store.single_file_config(ref.path) or f"black-forest-labs/FLUX.1-{'dev' if dev else 'schnell'}"
    local = Path(repo).is_dir() or not store.settings.allow_downloads
    beside = parts_beside(store.settings.models_dir, ref.path)
    try:
        transformer = diffusers.FluxTransformer2DModel.from_single_file(
            str(ref.path), config=repo, subfolder="transformer", dtype=dtype, local_files_only=local)
        parts = {}
        if "vae" in beside:
            parts["vae"] = diffusers.AutoencoderKL.from_single_file(str(beside["vae"]), config=repo, subfolder="vae",
                                                                   dtype=dtype, local_files_only=local)
        for part, subfolder in (("clip", "text_encoder"), ("t5", "text_encoder_2")):
            if part in beside:
                parts[subfolder] = _text_encoder_file(beside[part], repo, subfolder, dtype=dtype, local=local)
        return diffusers.FluxPipeline.from_pretrained(repo, transformer=transformer, dtype=dtype, local_files_only=local,
                                                      use_safetensors=store.use_safetensors(), **parts)
    except (OSError, EnvironmentError) as e:
        missing = [what for part, what in (("clip", "CLIP-L (clip_l.safetensors)"),
                                           ("t5", "T5-XXL (t5xxl_fp16.safetensors)"),
                                           ("vae", "the VAE (ae.safetensors)")) if part not in beside]
        where = store.settings.models_dir
        raise ValueError(
            f"could not load FLUX.1 file {ref.path.name}: a single file holds only the transformer, and the rest "
            f"of the pipeline (configs, tokenizers{', ' + ', '.join(missing) if missing else ''}) comes from {repo}"
            f"{', which is not in the hub cache and downloads are off' if local else ''}. Put "
            f"clip_l.safetensors and t5xxl_fp16.safetensors in {where / 'text_encoder'} and ae.safetensors in "
            f"{where / 'vae'} (as Forge keeps them) and run once with downloads on for the configs, or give the "
            f"diffusers folder of FLUX.1 as the model ({' '.join(str(e).split())[:160]})") from e


def _text_encoder_file(path: Path, repo: str, subfolder: str, *, dtype, local: bool):
    """A text encoder kept as one safetensors file (Forge's clip_l / t5xxl; maybe under ComfyUI's
    text_encoders.<name>.transformer. prefix), built from the repo's config."""
    import transformers
    from safetensors.torch import load_file

    config = transformers.AutoConfig.from_pretrained(repo, subfolder=subfolder, local_files_only=local)
    cls = transformers.CLIPTextModel if config.model_type == "clip_text_model" else transformers.T5EncoderModel
    state = {k.split(".transformer.", 1)[-1] if k.startswith("text_encoders.") else k: v
             for k, v in load_file(str(path)).items()}
    return cls.from_pretrained(None, config=config, state_dict=state, dtype=dtype).eval()


def parts_beside(models_dir: Path, path: Path) -> dict[str, Path]:
    """FLUX.1's other parts as single files, beside the checkpoint or in models/text_encoder/ and models/vae/."""
    folders = [path.parent, models_dir / "text_encoder", models_dir / "vae"]
    found = {}
    for part, pattern in (("clip", "clip_l*.safetensors"), ("t5", "t5xxl*.safetensors"), ("vae", "ae*.safetensors")):
        hits = [p for folder in folders if folder.is_dir() for p in sorted(folder.glob(pattern))]
        if hits:
            found[part] = hits[0]
    return found


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
