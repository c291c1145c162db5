"""FLUX.2 LoRAs in kohya's layout by BFL's module names (`lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight` +
`.alpha`), which ComfyUI loads (its checkpoints' names) and diffusers too (`_convert_kohya_flux2_lora_to_diffusers`).
The double blocks' q, k and v are fused into BFL's qkv; the single blocks' projections are one layer in both
layouts already (`to_qkv_mlp_proj` is `linear1`, `to_out` is `linear2`)."""

from __future__ import annotations

from studio.models.families.kohya_lora import block_name, peft_to_kohya

# diffusers' block modules -> BFL's layer, part, parts (q, k, v of a double block are parts of one qkv layer)
_DOUBLE = {"attn.to_q": ("img_attn_qkv", 0, 3), "attn.to_k": ("img_attn_qkv", 1, 3),
           "attn.to_v": ("img_attn_qkv", 2, 3), "attn.add_q_proj": ("txt_attn_qkv", 0, 3),
           "attn.add_k_proj": ("txt_attn_qkv", 1, 3), "attn.add_v_proj": ("txt_attn_qkv", 2, 3),
           "attn.to_out.0": ("img_attn_proj", 0, 1), "attn.to_add_out": ("txt_attn_proj", 0, 1),
           "ff.linear_in": ("img_mlp_0", 0, 1), "ff.linear_out": ("img_mlp_2", 0, 1),
           "ff_context.linear_in": ("txt_mlp_0", 0, 1), "ff_context.linear_out": ("txt_mlp_2", 0, 1)}
_SINGLE = {"attn.to_qkv_mlp_proj": ("linear1", 0, 1), "attn.to_out": ("linear2", 0, 1)}
_BLOCKS = (("single_transformer_blocks.", _SINGLE, "single_blocks"), ("transformer_blocks.", _DOUBLE, "double_blocks"))


def flux2_peft_to_kohya(state: dict, *, alpha: float, transformer_config) -> dict:
    """A diffusers FLUX.2 LoRA in kohya's BFL layout, the double blocks' q, k, v fused (kohya_lora.peft_to_kohya)."""
    inner = transformer_config.num_attention_heads * transformer_config.attention_head_dim
    return peft_to_kohya(state, alpha=alpha, kohya_name=lambda module: block_name(module, _BLOCKS, "FLUX.2"),
                         widths=lambda name: [inner] * 3, family="FLUX.2")
