"""LoRA and textual-inversion files: which base they fit (read from tensor shapes) and the token an embedding adds."""

from __future__ import annotations

import re
from pathlib import Path

from studio.models.families import Family, family_of_pipeline
from studio.models.kohya import flux_kohya_to_peft, is_flux_kohya

_CROSS_ATTN_K_DOWN = re.compile(r"attn2[._]to_k.*(lora_A|lora_down|lora\.down)")
_FAMILY_BY_WIDTH = {768: Family.SD1, 1024: Family.SD2, 2048: Family.SDXL}


def _shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    if path.suffix != ".safetensors":
        import torch  # a pickle file the user opted into (the store refuses it otherwise)

        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        return {k: list(v.shape) for k, v in state.items() if hasattr(v, "shape")}
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for every kind of damage
        raise ValueError(f"file {path} is not a valid safetensors file ({type(e).__name__}: {e})") from e


def _describe(width: int | None) -> str:
    if width is None:
        return "a UNet model (SD 1.x, SD 2.x or SDXL)"
    family = _FAMILY_BY_WIDTH.get(width)
    return f"{family.label} (cross-attention width {width})" if family else f"cross-attention width {width}"


# Key fragments only a FLUX.1 LoRA has: kohya's (Forge/ComfyUI) and diffusers' names for its transformer blocks.
_FLUX_LORA = re.compile(r"(lora_unet_(double|single)_blocks_|transformer\.(single_)?transformer_blocks\.|"
                        r"diffusion_model\.(double|single)_blocks\.)")


def lora_family(shapes: dict[str, list[int]]) -> str:
    """"FLUX.1" for a FLUX LoRA, else "UNet" (an SD 1.x/2.x/SDXL one, told apart by width below)."""
    return "FLUX.1" if any(_FLUX_LORA.search(k) for k in shapes) else "UNet"


def check_lora_fits(path: Path, pipe, model_id: str) -> None:
    """Raise a ValueError naming both families when the LoRA at `path` was made for another kind of base."""
    shapes = _shapes(path)
    if not shapes:
        raise ValueError(f"LoRA file {path} holds no tensors")
    base = family_of_pipeline(pipe)
    made_for = lora_family(shapes)
    if (made_for == "FLUX.1") != (base == Family.FLUX):
        theirs = "FLUX.1" if made_for == "FLUX.1" else _describe(_sd_width(shapes))
        raise ValueError(f"LoRA {path.name} was made for {theirs}, but base {model_id!r} is {base.label}")
    if base == Family.FLUX:
        return
    base_width = pipe.unet.config.cross_attention_dim
    widths = {s[1] for k, s in shapes.items() if _CROSS_ATTN_K_DOWN.search(k) and len(s) == 2}
    if widths and widths != {base_width}:
        raise ValueError(f"LoRA {path.name} was made for {_describe(widths.pop())}, but base {model_id!r} is "
                         f"{_describe(base_width)}")
    second_encoder = any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in shapes)
    if second_encoder and getattr(pipe, "text_encoder_2", None) is None:
        raise ValueError(f"LoRA {path.name} trains a second text encoder (an SDXL LoRA), but base {model_id!r} has none")


def _sd_width(shapes: dict[str, list[int]]) -> int | None:
    widths = [s[1] for k, s in shapes.items() if _CROSS_ATTN_K_DOWN.search(k) and len(s) == 2]
    return widths[0] if widths else None


def embedding_token(path: Path, pipe, model_id: str) -> str:
    """The prompt token of a textual-inversion file: its file name, as in A1111. Checks the vector width fits."""
    family = family_of_pipeline(pipe)
    if not family.spec.textual_inversion:
        raise ValueError(f"embedding {path.name}: base {model_id!r} is {family.label}, which the studio's textual "
                         f"inversions (CLIP token vectors) do not fit; use a LoRA instead")
    shapes = _shapes(path)
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    if sdxl and not {"clip_l", "clip_g"} <= set(shapes):
        raise ValueError(f"embedding {path.name} is not an SDXL embedding (needs clip_l and clip_g vectors); "
                         f"base {model_id!r} is SDXL")
    width = pipe.text_encoder.config.hidden_size
    vectors = shapes.get("clip_l") or shapes.get("emb_params") or next(iter(shapes.values()))
    if vectors[-1] != width:
        raise ValueError(f"embedding {path.name} has vectors of width {vectors[-1]}, but the text encoder of base "
                         f"{model_id!r} takes {width} (made for another family)")
    return re.sub(r"\s+", "_", path.stem)


def lora_weights(path: Path, pipe):
    """What to hand diffusers' load_lora_weights: the file, or for a kohya-layout FLUX LoRA its tensors in diffusers'
    layout at this transformer's widths (diffusers' own converter assumes FLUX.1's full size)."""
    if family_of_pipeline(pipe) != Family.FLUX or not is_flux_kohya(_shapes(path)):
        return str(path)
    from safetensors.torch import load_file

    return flux_kohya_to_peft(load_file(str(path)), transformer_config=pipe.transformer.config)
