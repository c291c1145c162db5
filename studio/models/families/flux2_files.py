"""FLUX.2's files: its single-file transformer in BFL's layout as ComfyUI keeps it (`flux-2-klein-4b.safetensors`,
`flux-2-klein-base-9b.safetensors`; maybe under model.diffusion_model.), with the VAE (`flux2-vae.safetensors`, LDM
key names plus its BatchNorm) and Qwen3 (`qwen_3_4b.safetensors` / `qwen_3_8b.safetensors`) as files beside it,
configs from the studio's carried folders; and builtin:tiny-flux2, built from a config."""

from __future__ import annotations

from pathlib import Path

from studio.models.families.qwen_text import read_parts, single_file_parts, tiny_qwen3, tiny_tokenizer

# The transformer's width (img_in's rows) names its variant: klein 4B, klein 9B, dev.
_WIDTHS = {3072: "flux2-klein-4b", 4096: "flux2-klein-9b", 6144: "flux2-dev"}


def file_variant(checkpoint) -> str:
    """klein 4B or 9B, told by the transformer's width (img_in's rows), else ""; FLUX.2 dev is refused, saying
    why."""
    from studio.models.families.flux2 import refuse_dev

    shapes = checkpoint.shapes
    shape = next((s for k, s in shapes.items() if k.endswith(("img_in.weight", "x_embedder.weight"))), None)
    variant = _WIDTHS.get(shape[0] if shape else 0)
    if variant == "flux2-dev" or any(k.endswith("guidance_in.in_layer.weight") for k in shapes):
        refuse_dev()
    return variant or ""  # neither 4B nor 9B: only a studio export (which names its base) loads


def load_flux2_file(store, ref, *, dtype, without=()):
    """A FLUX.2 klein transformer in one file; the VAE and Qwen3 from files beside it or in models/vae/ and
    models/text_encoder/, else from the config folder when it holds weights (a studio export's base); the tokenizer
    as qwen_text.single_file_tokenizer finds it. Base or distilled: by its name (`base` in it), as BFL names them.
    Each part in its own dtype (`dtype`: one, or a dict: base.part_dtype); those in `without` never read."""
    import diffusers
    from transformers import Qwen3ForCausalLM

    from studio.models.families.flux2 import _distilled_name

    folder = store.single_file_config(ref)  # klein 4B or 9B: file_variant
    encoder = "qwen_3_8b.safetensors" if "9b" in folder.name else "qwen_3_4b.safetensors"
    beside, tokenizer = single_file_parts(store, ref, folder, "FLUX.2 klein", {
        "vae": ("flux2*vae*.safetensors", "the VAE (flux2-vae.safetensors)"),
        "text_encoder": (encoder.replace(".safetensors", "*.safetensors"), f"Qwen3 ({encoder})")})
    parts = read_parts(store, ref, folder, beside, transformer=flux2_transformer, vae_file=vae_file,
                       vae_class=diffusers.AutoencoderKLFlux2, text_class=Qwen3ForCausalLM, dtype=dtype,
                       without=without)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(str(folder), subfolder="scheduler")
    pipe = diffusers.Flux2KleinPipeline(scheduler=scheduler, tokenizer=tokenizer,
                                        is_distilled=_distilled_name(ref.path.name), **parts)
    pipe.register_to_config(_name_or_path=str(ref.path))
    return pipe


def flux2_transformer(store, ref, *, dtype):
    """The transformer of a FLUX.2 file alone (a staged training load reads nothing else), each tensor read in
    `dtype`."""
    import diffusers

    from studio.models.files import comfy_transformer

    # diffusers' FLUX.2 converter does not strip ComfyUI's prefix itself (it fails on it): stripped as read.
    return comfy_transformer(diffusers.Flux2Transformer2DModel, store, ref, dtype=dtype)


def vae_file(path: Path, folder: Path, *, dtype):
    """FLUX.2's VAE kept as one file in BFL's layout (the LDM autoencoder's names and `bn.*`): converted with
    diffusers' LDM converter (diffusers cannot load it as a single file) into the carried config."""
    from diffusers import AutoencoderKLFlux2
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.torch import load_file

    state = load_file(str(path))
    config = dict(AutoencoderKLFlux2.load_config(str(folder), subfolder="vae"))
    vae = AutoencoderKLFlux2.from_config(config)
    converted = convert_ldm_vae_checkpoint({k: v for k, v in state.items() if not k.startswith("bn.")}, config)
    converted.update({k: v for k, v in state.items() if k.startswith("bn.")})
    vae.load_state_dict(converted, strict=True)
    return vae.to(dtype)


def bfl_state(transformer) -> dict:
    """A diffusers FLUX.2 transformer's weights in BFL's single-file layout (the inverse of diffusers'
    convert_flux2_transformer_checkpoint_to_diffusers: q, k, v fused, norms as `.scale`, the final modulation's
    scale and shift swapped back), for tests and exports."""
    import torch

    state = transformer.state_dict()
    top = {"x_embedder": "img_in", "context_embedder": "txt_in",
           "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
           "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
           "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
           "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
           "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
           "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
           "single_stream_modulation.linear": "single_stream_modulation.lin", "proj_out": "final_layer.linear"}
    double = {"attn.norm_q": "img_attn.norm.query_norm", "attn.norm_k": "img_attn.norm.key_norm",
              "attn.to_out.0": "img_attn.proj", "ff.linear_in": "img_mlp.0", "ff.linear_out": "img_mlp.2",
              "attn.norm_added_q": "txt_attn.norm.query_norm", "attn.norm_added_k": "txt_attn.norm.key_norm",
              "attn.to_add_out": "txt_attn.proj", "ff_context.linear_in": "txt_mlp.0",
              "ff_context.linear_out": "txt_mlp.2"}
    single = {"attn.to_qkv_mlp_proj": "linear1", "attn.to_out": "linear2", "attn.norm_q": "norm.query_norm",
              "attn.norm_k": "norm.key_norm"}
    fused = {"attn.to_q": ("img_attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
             "attn.add_q_proj": ("txt_attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"))}
    out = {}
    for key, value in state.items():
        module, param = key.rsplit(".", 1)
        if module.startswith(("transformer_blocks.", "single_transformer_blocks.")):
            kind, index, inner = module.split(".", 2)
            bfl_block = "double_blocks" if kind == "transformer_blocks" else "single_blocks"
            if kind == "transformer_blocks" and inner in fused:
                name, parts = fused[inner]
                out[f"{bfl_block}.{index}.{name}.{param}"] = torch.cat(
                    [state[f"{kind}.{index}.{p}.{param}"] for p in parts])
                continue
            if inner in ("attn.to_k", "attn.to_v", "attn.add_k_proj", "attn.add_v_proj"):
                continue
            name = (double if kind == "transformer_blocks" else single)[inner]
            out[f"{bfl_block}.{index}.{name}.{'scale' if 'norm' in inner else param}"] = value
        elif module == "norm_out.linear":  # diffusers (scale, shift) -> BFL (shift, scale)
            scale, shift = value.chunk(2, 0)
            out[f"final_layer.adaLN_modulation.1.{param}"] = torch.cat([shift, scale])
        else:
            out[f"{top[module]}.{param}"] = value
    return out


def build_tiny(out: Path) -> None:
    """A FLUX.2-klein-shaped pipeline at toy widths, a base (not distilled: it takes CFG and is the one to train):
    a Qwen3 causal LM of 28 layers 16 wide (klein reads layers 9, 18, 27, so 3 x 16 = 48 text features) with a
    tokenizer the project writes, a transformer of one double and two single blocks, a 4-channel VAE at factor 2 with
    seeded BatchNorm statistics (patched 2x2: the transformer's 16 channels; 64 px -> 16 x 16 tokens), and klein's
    flow-matching scheduler."""
    import torch
    from diffusers import (AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline,
                           Flux2Transformer2DModel)
    from transformers import Qwen3ForCausalLM

    tokenizer = tiny_tokenizer(out / "tokenizer")
    torch.manual_seed(0)
    text_encoder = tiny_qwen3(Qwen3ForCausalLM, tokenizer, layers=28)
    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=2,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=48,
                                          timestep_guidance_channels=256, mlp_ratio=3.0, axes_dims_rope=[4, 4, 4, 4],
                                          rope_theta=2000, eps=1e-6, guidance_embeds=False)
    torch.manual_seed(0)
    vae = AutoencoderKLFlux2(sample_size=64, down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                             latent_channels=4, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False)
    with torch.no_grad():  # statistics as a trained VAE has them, so the normalization is exercised
        vae.bn.running_mean.copy_(0.2 * torch.randn(16))
        vae.bn.running_var.copy_(0.5 + torch.rand(16))
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                max_image_seq_len=4096, time_shift_type="exponential")
    pipe = Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              transformer=transformer, is_distilled=False)
    pipe.save_pretrained(out, safe_serialization=True)
