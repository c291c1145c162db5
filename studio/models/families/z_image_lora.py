"""Z-Image LoRAs in kohya's layout by the original model's module names, as ComfyUI loads them (and diffusers, whose
converter splits the fused qkv): `lora_unet_layers_0_attention_qkv.lora_down.weight` + `.alpha`. diffusers' own
names (`to_q`, `to_out.0`) are not loaded by ComfyUI (its issue #11158), so the kohya file fuses q, k and v into the
`attention.qkv` ComfyUI's checkpoints have and renames `to_out.0` to `out`, as musubi-tuner's converter does."""

from __future__ import annotations

from studio.models.families.kohya_lora import peft_to_kohya

_QKV = {"to_q": 0, "to_k": 1, "to_v": 2}


def _kohya_name(module: str) -> tuple[str, int, int]:
    """`layers.3.attention.to_k` -> ("layers_3_attention_qkv", 1, 3); `…attention.to_out.0` -> `…attention_out`."""
    block, _, rest = module.partition(".attention.")
    if rest in _QKV:
        return f"{block.replace('.', '_')}_attention_qkv", _QKV[rest], 3
    if rest == "to_out.0":
        return f"{block.replace('.', '_')}_attention_out", 0, 1
    return module.replace(".", "_"), 0, 1  # feed_forward.w1 and adaLN_modulation.0 keep their names


def zimage_peft_to_kohya(state: dict, *, alpha: float, transformer_config) -> dict:
    """A diffusers Z-Image LoRA in kohya's layout, q, k and v fused (kohya_lora.peft_to_kohya)."""
    head = transformer_config.dim // transformer_config.n_heads
    widths = [transformer_config.n_heads * head] + [transformer_config.n_kv_heads * head] * 2
    return peft_to_kohya(state, alpha=alpha, kohya_name=_kohya_name, widths=lambda name: widths, family="Z-Image")
