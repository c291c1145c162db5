"""FLUX.1's transformer in BFL's layout (the single files Forge and ComfyUI keep: `double_blocks.3.img_attn.qkv`,
q, k and v fused) and in diffusers' (`transformer_blocks.3.attn.to_q`), both ways, at any width and depth, so the
studio reads a file without diffusers' converter (which assumes FLUX.1's full width) and writes the tiny builtins and
the benchmarks' models in the layout users have."""

from __future__ import annotations

import re

# BFL module -> the diffusers modules it holds, in its order (several: rows stacked). Norms are RMSNorm scales.
DOUBLE = {"img_mod.lin": ("norm1.linear",), "txt_mod.lin": ("norm1_context.linear",),
          "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
          "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
          "img_attn.proj": ("attn.to_out.0",), "txt_attn.proj": ("attn.to_add_out",),
          "img_mlp.0": ("ff.net.0.proj",), "img_mlp.2": ("ff.net.2",),
          "txt_mlp.0": ("ff_context.net.0.proj",), "txt_mlp.2": ("ff_context.net.2",),
          "img_attn.norm.query_norm": ("attn.norm_q",), "img_attn.norm.key_norm": ("attn.norm_k",),
          "txt_attn.norm.query_norm": ("attn.norm_added_q",), "txt_attn.norm.key_norm": ("attn.norm_added_k",)}
SINGLE = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), "linear2": ("proj_out",),
          "modulation.lin": ("norm.linear",), "norm.query_norm": ("attn.norm_q",), "norm.key_norm": ("attn.norm_k",)}
TOP = {"img_in": "x_embedder", "txt_in": "context_embedder",
       "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
       "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
       "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
       "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
       "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
       "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
       "final_layer.linear": "proj_out",
       "final_layer.adaLN_modulation.1": "norm_out.linear"}  # (shift, scale) in BFL's, (scale, shift) in diffusers'
_SWAPPED = "final_layer.adaLN_modulation.1"
_BLOCK = re.compile(r"(double_blocks|single_blocks|transformer_blocks|single_transformer_blocks)\.(\d+)\.")


def is_bfl(keys) -> bool:
    return any(k.startswith(("double_blocks.", "img_in.")) for k in keys)


def count_blocks(keys) -> tuple[int, int]:
    """(double, single) blocks of a FLUX.1 transformer's tensor names in either layout."""
    found = {"double": set(), "single": set()}
    for key in keys:
        m = _BLOCK.match(key)
        if m:
            found["single" if m.group(1).startswith("single") else "double"].add(int(m.group(2)))
    return len(found["double"]), len(found["single"])


def _param(param: str, to_bfl: bool) -> str:
    """RMSNorms' parameter is `scale` in BFL's layout, `weight` in diffusers'."""
    return {"weight": "scale"}.get(param, param) if to_bfl else {"scale": "weight"}.get(param, param)


def bfl_to_diffusers(state: dict, inner: int) -> dict:
    """A BFL-layout transformer state (no prefix) in diffusers' names; `inner`: the attention width (heads x head
    width), which says where the fused rows split. Tensors are split and swapped, not copied where avoidable."""
    import torch

    out = {}
    for key, tensor in state.items():
        m = _BLOCK.match(key)
        if m:
            table = DOUBLE if m.group(1) == "double_blocks" else SINGLE
            block = "transformer_blocks" if m.group(1) == "double_blocks" else "single_transformer_blocks"
            module, param = key[m.end():].rsplit(".", 1)
            targets = table[module]
            sizes = [inner] * len(targets)
            if len(targets) == 4:  # linear1: q | k | v | the MLP's input, whatever its ratio
                sizes[3] = tensor.shape[0] - 3 * inner
            for target, piece in zip(targets, torch.split(tensor, sizes) if len(targets) > 1 else [tensor]):
                out[f"{block}.{m.group(2)}.{target}.{_param(param, False)}"] = piece
            continue
        module, param = key.rsplit(".", 1)
        if module not in TOP:
            raise ValueError(f"FLUX.1 transformer key {key!r} is not in BFL's layout")
        if module == _SWAPPED:
            shift, scale = tensor.chunk(2, dim=0)
            tensor = torch.cat([scale, shift])
        out[f"{TOP[module]}.{param}"] = tensor
    return out


def diffusers_to_bfl(state: dict) -> dict:
    """A diffusers FluxTransformer2DModel state in BFL's layout (the fused modules' parts stacked by rows)."""
    import torch

    reverse = {}
    for block, table in (("transformer_blocks", DOUBLE), ("single_transformer_blocks", SINGLE)):
        for bfl, targets in table.items():
            for i, target in enumerate(targets):
                reverse[(block, target)] = (bfl, i, len(targets))
    fused: dict[str, list] = {}
    out = {}
    for key, tensor in state.items():
        m = _BLOCK.match(key)
        if m:
            module, param = key[m.end():].rsplit(".", 1)
            bfl, part, parts = reverse[(m.group(1), module)]
            name = ("double_blocks" if m.group(1) == "transformer_blocks" else "single_blocks") + \
                f".{m.group(2)}.{bfl}.{_param(param, True) if bfl.endswith('_norm') else param}"
            fused.setdefault(name, [None] * parts)[part] = tensor
            continue
        module, param = key.rsplit(".", 1)
        bfl = next((b for b, d in TOP.items() if d == module), None)
        if bfl is None:
            raise ValueError(f"FLUX.1 transformer key {key!r} has no BFL name")
        if bfl == _SWAPPED:
            scale, shift = tensor.chunk(2, dim=0)
            tensor = torch.cat([shift, scale])
        out[f"{bfl}.{param}"] = tensor
    for name, parts in fused.items():
        out[name] = parts[0] if len(parts) == 1 else torch.cat(parts)
    return out
