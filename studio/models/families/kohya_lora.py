"""LoRAs in kohya's layout (`lora_unet_<module>.lora_down.weight`, `.lora_up.weight`, `.alpha`) from diffusers/peft's
(`transformer.<module>.lora_A.weight`), for the transformer families: what Forge, ComfyUI and kohya's own scripts
load. A family names each diffusers module's kohya layer; where the original model fuses several diffusers modules
into one layer (FLUX's and Z-Image's qkv), their LoRAs are fused too."""

from __future__ import annotations

from typing import Callable

# module -> (kohya layer name, part, parts): the part of a fused layer this module is, and how many parts it has.
KohyaName = Callable[[str], tuple[str, int, int]]


def peft_to_kohya(state: dict, *, alpha: float, kohya_name: KohyaName, widths: Callable[[str], list[int]],
                  family: str) -> dict:
    """A diffusers LoRA of the transformer (`transformer.<module>.lora_A/B.weight`, one alpha) in kohya's layout.

    Fused layers get the parts' down matrices stacked and their up matrices block-diagonal, so each part keeps its
    own update; parts that were not trained are zero blocks (Forge, ComfyUI and diffusers expect every part).
    `widths(layer)`: the output widths of a fused layer's parts, in order. The fused alpha is n * alpha: loaders
    scale by alpha / rank and the fused rank is n * rank (kohya issue #2204).
    """
    import torch

    grouped: dict[str, dict[int, dict[str, object]]] = {}
    counts: dict[str, int] = {}
    for key, tensor in state.items():
        prefix, rest = key.split(".", 1)
        if prefix != "transformer":
            raise ValueError(f"{family} LoRA key {key!r} is not the transformer's (text-encoder LoRAs are not trained)")
        module, kind = rest.rsplit(".lora_", 1)
        name, part, parts = kohya_name(module)
        grouped.setdefault(name, {}).setdefault(part, {})[kind] = tensor
        counts[name] = parts
    out = {}
    for name, parts in sorted(grouped.items()):
        n = counts[name]
        if n == 1:
            down, up = parts[0]["A.weight"], parts[0]["B.weight"]
        else:
            dims = widths(name)
            reference = next(iter(parts.values()))["A.weight"]
            rank = reference.shape[0]
            down = torch.cat([parts[i]["A.weight"] if i in parts else torch.zeros_like(reference) for i in range(n)])
            up = torch.zeros(sum(dims), n * rank, dtype=reference.dtype)
            row = 0
            for i, dim in enumerate(dims):
                if i in parts:
                    up[row:row + dim, i * rank:(i + 1) * rank] = parts[i]["B.weight"]
                row += dim
        out[f"lora_unet_{name}.lora_down.weight"] = down.contiguous()
        out[f"lora_unet_{name}.lora_up.weight"] = up.contiguous()
        out[f"lora_unet_{name}.alpha"] = torch.tensor(float(alpha) * n)
    return out


def underscored(module: str) -> tuple[str, int, int]:
    """A module kohya names by its own path, dots as underscores (`transformer_blocks_0_attn_to_q`), unfused."""
    return module.replace(".", "_"), 0, 1


def block_name(module: str, blocks, family: str) -> tuple[str, int, int]:
    """A block module's kohya layer by the original model's names: `blocks` is (diffusers prefix, {module within the
    block: (layer, part, parts)}, original prefix) per kind of block, the more specific prefix first.
    `transformer_blocks.3.attn.to_k` -> ("double_blocks_3_img_attn_qkv", 1, 3)."""
    for prefix, table, original in blocks:
        if module.startswith(prefix):
            index, rest = module[len(prefix):].split(".", 1)
            if rest in table:
                name, part, parts = table[rest]
                return f"{original}_{index}_{name}", part, parts
    raise ValueError(f"{family} LoRA module {module!r} has no kohya name (the studio trains the transformer blocks "
                     f"only)")
