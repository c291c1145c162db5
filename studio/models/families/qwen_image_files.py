"""Qwen-Image's files: its single-file transformer as ComfyUI keeps it (`qwen_image_bf16.safetensors`: diffusers'
module names, maybe under model.diffusion_model.), with the VAE (`qwen_image_vae.safetensors`, the Wan 2.1 VAE's
original layout) and Qwen2.5-VL (`qwen_2.5_vl_7b.safetensors`) as files beside it, configs from the studio's carried
folder; and builtin:tiny-qwenimage, built from a config."""

from __future__ import annotations

from pathlib import Path

from studio.models.families.qwen_text import read_parts, single_file_parts, tiny_tokenizer


def load_qwen_image_file(store, ref, *, dtype, without=()):
    """A Qwen-Image transformer in one file; the VAE and Qwen2.5-VL from files beside it or in models/vae/ and
    models/text_encoder/ (ComfyUI's names), else from the config folder when it holds weights (a studio export's
    base); the tokenizer as qwen_text.single_file_tokenizer finds it. Missing parts are named. Each part in its own
    dtype (`dtype`: one, or a dict: base.part_dtype); those in `without` never read."""
    import diffusers
    from transformers import Qwen2_5_VLForConditionalGeneration

    folder = store.single_file_config(ref)
    beside, tokenizer = single_file_parts(store, ref, folder, "Qwen-Image", {
        "vae": ("qwen_image_vae*.safetensors", "the VAE (qwen_image_vae.safetensors)"),
        "text_encoder": ("qwen_2.5_vl_7b*.safetensors", "Qwen2.5-VL-7B (qwen_2.5_vl_7b.safetensors)")})
    parts = read_parts(store, ref, folder, beside, transformer=qwen_image_transformer, vae_file=vae_file,
                       vae_class=diffusers.AutoencoderKLQwenImage, text_class=Qwen2_5_VLForConditionalGeneration,
                       dtype=dtype, without=without)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(str(folder), subfolder="scheduler")
    pipe = diffusers.QwenImagePipeline(scheduler=scheduler, tokenizer=tokenizer, **parts)
    pipe.register_to_config(_name_or_path=str(ref.path))
    return pipe


def qwen_image_transformer(store, ref, *, dtype):
    """The transformer of a Qwen-Image file alone (a staged training load reads nothing else), each tensor read in
    `dtype`."""
    import diffusers

    from studio.models.files import comfy_transformer

    # diffusers maps Qwen-Image's single file by identity and takes it for SD 1.5 without `config` (its issue
    # #12423): strip ComfyUI's prefix and give the carried config.
    return comfy_transformer(diffusers.QwenImageTransformer2DModel, store, ref, dtype=dtype)


def vae_file(path: Path, folder: Path, *, dtype):
    """Qwen-Image's VAE kept as one file in the Wan 2.1 VAE's original layout (diffusers cannot load it as a single
    file): converted with diffusers' Wan converter (the two VAEs share every key) into the carried config."""
    from diffusers import AutoencoderKLQwenImage
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
    from safetensors.torch import load_file

    vae = AutoencoderKLQwenImage.from_config(AutoencoderKLQwenImage.load_config(str(folder), subfolder="vae"))
    vae.load_state_dict(convert_wan_vae_to_diffusers(load_file(str(path))), strict=True)
    return vae.to(dtype)


def build_tiny(out: Path) -> None:
    """A Qwen-Image-shaped pipeline at toy widths: a Qwen2.5-VL of 2 language layers 16 wide (and a 1-layer vision
    tower it never runs for text) with a tokenizer the project writes, a transformer of 2 blocks, a Wan-shaped VAE of
    4 channels at factor 4 (64 px -> 8 x 8 packed tokens), and Qwen-Image's scheduler (dynamic shift to 0.9, the
    terminal sigma 0.02)."""
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImagePipeline, \
        QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = tiny_tokenizer(out / "tokenizer")
    n = len(tokenizer)  # the vision tokens follow it
    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=n + 3, rope_theta=1e6, max_position_embeddings=2048,
                         rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                         bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>")),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16),
        vocab_size=n + 3, vision_start_token_id=n, vision_end_token_id=n + 1, vision_token_id=n + 2,
        image_token_id=n + 2, video_token_id=n + 2)
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                              guidance_embeds=False, axes_dims_rope=(8, 4, 4))
    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.1, -0.2, 0.05, 0.3],
                                 latents_std=[1.5, 0.8, 1.2, 2.0])
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
                                                max_image_seq_len=8192, shift_terminal=0.02,
                                                time_shift_type="exponential")
    pipe = QwenImagePipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                             transformer=transformer)
    pipe.save_pretrained(out, safe_serialization=True)
