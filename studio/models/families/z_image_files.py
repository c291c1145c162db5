"""Z-Image's files: its single-file transformer as ComfyUI keeps it (`z_image_turbo_bf16.safetensors`: fused
`attention.qkv`, maybe under model.diffusion_model.), with the VAE (FLUX.1's ae.safetensors) and Qwen3-4B
(`qwen_3_4b.safetensors`) as files beside it, configs from the studio's carried folders; and the models the studio
builds from configs (builtin:tiny-zimage, and Z-Image at its real widths with fewer layers for the benchmarks)."""

from __future__ import annotations

from pathlib import Path

from studio.models.families.qwen_text import read_parts, single_file_parts, tiny_qwen3, tiny_tokenizer


def load_zimage_file(store, ref, *, dtype, without=()):
    """A Z-Image transformer in one file; the VAE and Qwen3 from files beside it or in models/vae/ and
    models/text_encoder/ (ComfyUI's names), else from the config folder when it holds weights (a studio export's
    base); the tokenizer as qwen_text.single_file_tokenizer finds it. Missing parts are named, with where to put
    them. Each part in its own dtype (`dtype`: one, or a dict: base.part_dtype); those in `without` never read."""
    import diffusers
    from transformers import Qwen3Model

    folder = store.single_file_config(ref)  # Turbo or Base: ZImage.file_variant
    beside, tokenizer = single_file_parts(store, ref, folder, "Z-Image", {
        "vae": ("ae*.safetensors", "the VAE (ae.safetensors, FLUX.1's)"),
        "text_encoder": ("qwen_3_4b*.safetensors", "Qwen3-4B (qwen_3_4b.safetensors)")})
    parts = read_parts(store, ref, folder, beside, transformer=zimage_transformer, vae_file=_vae_file,
                       vae_class=diffusers.AutoencoderKL, text_class=Qwen3Model, dtype=dtype, without=without)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(str(folder), subfolder="scheduler")
    pipe = diffusers.ZImagePipeline(scheduler=scheduler, tokenizer=tokenizer, **parts)
    pipe.register_to_config(_name_or_path=str(ref.path))  # the name tells Turbo from Base (z_image.is_turbo)
    return pipe


def _vae_file(path: Path, folder: Path, *, dtype):
    """Z-Image's VAE (FLUX.1's ae.safetensors) kept as one file."""
    import diffusers

    return diffusers.AutoencoderKL.from_single_file(str(path), subfolder="vae", config=str(folder), dtype=dtype,
                                                    local_files_only=True)


def zimage_transformer(store, ref, *, dtype):
    """The transformer of a Z-Image file alone (a staged training load reads nothing else), in `dtype`."""
    import diffusers

    return diffusers.ZImageTransformer2DModel.from_single_file(
        str(ref.path), subfolder="transformer", config=str(store.single_file_config(ref)), dtype=dtype,
        local_files_only=True)


def comfy_state(transformer) -> dict:
    """A diffusers Z-Image transformer's weights in ComfyUI's single-file layout (q, k, v fused into qkv; the
    inverse of diffusers' convert_z_image_transformer_checkpoint_to_diffusers), for tests and exports."""
    import torch

    state = transformer.state_dict()
    out = {}
    renames = (("all_final_layer.2-1.", "final_layer."), ("all_x_embedder.2-1.", "x_embedder."),
               (".attention.to_out.0.", ".attention.out."), (".attention.norm_k.", ".attention.k_norm."),
               (".attention.norm_q.", ".attention.q_norm."))
    for key, value in state.items():
        if ".attention.to_k.weight" in key or ".attention.to_v.weight" in key:
            continue
        if ".attention.to_q.weight" in key:
            block = key.removesuffix(".attention.to_q.weight")
            out[f"{block}.attention.qkv.weight"] = torch.cat(
                [state[f"{block}.attention.to_{x}.weight"] for x in "qkv"])
            continue
        for old, new in renames:
            key = key.replace(old, new)
        out[key] = value
    return out


def _scheduler(shift: float):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift, use_dynamic_shifting=False)


def build_tiny(out: Path) -> None:
    """A Z-Image-shaped pipeline at toy widths: a Qwen3 text encoder (2 layers, 16 wide) with a tokenizer the
    project writes, a transformer of 2 blocks and one refiner of each kind (dim 32), FLUX.1's 16-channel VAE shape
    at factor 2 (64 px -> 16 x 16 tokens), and Z-Image Base's scheduler (static shift 6; Turbo's is 3)."""
    import torch
    from diffusers import AutoencoderKL, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Model

    tokenizer = tiny_tokenizer(out / "tokenizer")
    torch.manual_seed(0)
    text_encoder = tiny_qwen3(Qwen3Model, tokenizer, layers=2)
    torch.manual_seed(0)
    transformer = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32,
                                           n_layers=2, n_refiner_layers=1, n_heads=2, n_kv_heads=2, norm_eps=1e-5,
                                           qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
                                           axes_dims=[8, 4, 4], axes_lens=[1536, 64, 64])
    with torch.no_grad():  # diffusers leaves the pad tokens as torch.empty: seeded values, not memory's leftovers
        transformer.x_pad_token.normal_()
        transformer.cap_pad_token.normal_()
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=(8, 16), layers_per_block=1,
                        latent_channels=16, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.1159, scaling_factor=0.3611, sample_size=64)
    pipe = ZImagePipeline(scheduler=_scheduler(6.0), vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                          transformer=transformer)
    pipe.save_pretrained(out, safe_serialization=True)
