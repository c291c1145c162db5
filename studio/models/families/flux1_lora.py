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


def _flux_name(module: str) -> tuple[str, int, int]:
    """`transformer_blocks.3.attn.to_k` -> ("double_blocks_3_img_attn_qkv", 1, 3)."""
    for prefix, table, kohya in (("single_transformer_blocks.", _FLUX_SINGLE, "single_blocks"),
                                 ("transformer_blocks.", _FLUX_DOUBLE, "double_blocks")):
        if module.startswith(prefix):
            index, rest = module[len(prefix):].split(".", 1)
            if rest in table:
                name, part, parts = table[rest]
                return f"{kohya}_{index}_{name}", part, parts
    raise ValueError(f"FLUX LoRA module {module!r} has no kohya name (the studio trains the transformer blocks only)")


def flux_peft_to_kohya(state: dict, *, alpha: float, transformer_config) -> dict:
    """A diffusers FLUX LoRA (`transformer.<module>.lora_A/B.weight`, one alpha) in kohya's layout.

    Fused layers get the parts' down matrices stacked and their up matrices block-diagonal, so each part keeps its
    own update; parts that were not trained are zero blocks (Forge, ComfyUI and diffusers expect every part). The
    fused alpha is n * alpha: loaders scale by alpha / rank and the fused rank is n * rank (kohya issue #2204).
    """
    import torch

    inner = transformer_config.num_attention_heads * transformer_config.attention_head_dim
    widths = {"qkv": [inner] * 3, "linear1": [inner, inner, inner, 4 * inner]}  # FLUX.1's MLP ratio is 4
    grouped: dict[str, dict[int, dict[str, object]]] = {}
    for key, tensor in state.items():
        prefix, rest = key.split(".", 1)
        if prefix != "transformer":
            raise ValueError(f"FLUX LoRA key {key!r} is not the transformer's (text-encoder LoRAs are not trained)")
        module, kind = rest.rsplit(".lora_", 1)
        name, part, _ = _flux_name(module)
        grouped.setdefault(name, {}).setdefault(part, {})[kind] = tensor
    out = {}
    for name, parts in sorted(grouped.items()):
        fused = name.endswith(("_qkv", "_linear1"))
        if not fused:
            down, up = parts[0]["A.weight"], parts[0]["B.weight"]
            n = 1
        else:
            dims = widths["linear1" if name.endswith("linear1") else "qkv"]
            n = len(dims)
            rank, width_in = next(iter(parts.values()))["A.weight"].shape
            reference = next(iter(parts.values()))["A.weight"]
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
