"""FLUX.1 LoRAs in kohya's layout (`lora_unet_double_blocks_3_img_attn_qkv.lora_down.weight` + `.alpha`, BFL's module
names, which Forge and ComfyUI load) from diffusers/peft's (`transformer.<module>.lora_A.weight`) and back."""

from __future__ import annotations

import re

from studio.models.families.flux1_layout import DOUBLE, SINGLE

# FLUX.1: diffusers' transformer modules -> kohya's names (BFL's with `_` for `.`), which Forge and ComfyUI load. A
# fused BFL layer (double blocks' qkv, single blocks' linear1 = q|k|v|mlp) gathers several diffusers modules:
# (name, part, parts). The RMSNorms take no LoRA.
_FLUX_DOUBLE, _FLUX_SINGLE = ({module: (bfl.replace(".", "_"), part, len(modules))
                               for bfl, modules in table.items() if not bfl.endswith("_norm")
                               for part, module in enumerate(modules)} for table in (DOUBLE, SINGLE))


_BLOCKS = (("single_transformer_blocks.", _FLUX_SINGLE, "single_blocks"),
           ("transformer_blocks.", _FLUX_DOUBLE, "double_blocks"))


def _flux_name(module: str) -> tuple[str, int, int]:
    """`transformer_blocks.3.attn.to_k` -> ("double_blocks_3_img_attn_qkv", 1, 3)."""
    from studio.models.families.kohya_lora import block_name

    return block_name(module, _BLOCKS, "FLUX")


def flux_peft_to_kohya(state: dict, *, alpha: float, transformer_config) -> dict:
    """A diffusers FLUX LoRA (`transformer.<module>.lora_A/B.weight`, one alpha) in kohya's layout, its fused layers
    (double blocks' qkv, single blocks' linear1 = q|k|v|mlp) fused (kohya_lora.peft_to_kohya)."""
    from studio.models.families.kohya_lora import peft_to_kohya

    inner = transformer_config.num_attention_heads * transformer_config.attention_head_dim
    return peft_to_kohya(state, alpha=alpha, kohya_name=_flux_name, family="FLUX",
                         widths=lambda name: [inner] * 3 + ([4 * inner] if name.endswith("linear1") else []))


def is_flux_kohya(keys) -> bool:
    """A kohya-layout FLUX LoRA of the transformer blocks only (what the studio and kohya's scripts write)."""
    keys = list(keys)
    return bool(keys) and all(k.startswith(("lora_unet_double_blocks_", "lora_unet_single_blocks_"))
                              and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in keys)


def flux_kohya_to_peft(state: dict, *, transformer_config) -> dict:
    """kohya's FLUX layout back to diffusers' (`transformer.<module>.lora_A/B.weight`), with the layer widths of
    *this* transformer (diffusers' own converter assumes FLUX.1's 3072/12288, so it cannot load a smaller model's).

    A fused layer's up matrix is split by rows into its parts; when it is block-diagonal (the studio's exports, or
    kohya's split_qkv) each part gets back its own rank-r down and up, else each part takes the whole down matrix
    (the same update, at the fused rank). alpha / rank is folded into the up matrices, so no alpha is needed.
    """
    import torch

    inner = transformer_config.num_attention_heads * transformer_config.attention_head_dim
    widths = {"qkv": [inner] * 3, "linear1": [inner, inner, inner, 4 * inner]}
    reverse: dict[str, list[str]] = {}
    for table, diffusers_prefix, kohya in ((_FLUX_DOUBLE, "transformer_blocks", "double_blocks"),
                                           (_FLUX_SINGLE, "single_transformer_blocks", "single_blocks")):
        for module, (name, part, parts) in table.items():
            reverse.setdefault(f"{kohya}|{name}", [None] * parts)[part] = f"{diffusers_prefix}.{{}}.{module}"
    out = {}
    modules = sorted({k[len("lora_unet_"):].split(".", 1)[0] for k in state})
    for module in modules:
        kind, index, name = re.fullmatch(r"(double|single)_blocks_(\d+)_(.+)", module).groups()
        down, up = state[f"lora_unet_{module}.lora_down.weight"], state[f"lora_unet_{module}.lora_up.weight"]
        rank = down.shape[0]
        alpha = state.get(f"lora_unet_{module}.alpha")
        scale = float(alpha) / rank if alpha is not None else 1.0
        targets = reverse[f"{kind}_blocks|{name}"]
        dims = widths["linear1" if name == "linear1" else "qkv"] if len(targets) > 1 else [up.shape[0]]
        if sum(dims) != up.shape[0]:
            raise ValueError(f"LoRA layer {module} has {up.shape[0]} outputs but this transformer's is {sum(dims)} "
                             f"wide: it was made for another FLUX model")
        pieces = torch.split(up, dims)
        n = len(targets)
        sparse = n > 1 and rank % n == 0 and all(
            not p[:, [c for c in range(rank) if c // (rank // n) != i]].any() for i, p in enumerate(pieces))
        for i, (target, piece) in enumerate(zip(targets, pieces)):
            a, b = (down[i * rank // n:(i + 1) * rank // n], piece[:, i * rank // n:(i + 1) * rank // n]) if sparse \
                else (down, piece)
            if not b.any():  # a part the LoRA never trained (zero blocks of the fused layer)
                continue
            key = "transformer." + target.format(index)
            out[f"{key}.lora_A.weight"] = a.contiguous()
            out[f"{key}.lora_B.weight"] = (b * scale).contiguous()
    return out
