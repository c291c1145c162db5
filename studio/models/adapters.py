"""LoRA and textual-inversion files: which base they fit (read from tensor shapes) and the token an embedding adds."""

from __future__ import annotations

import re
from pathlib import Path

from studio.models.refs import Family

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


def _describe(width: int) -> str:
    family = _FAMILY_BY_WIDTH.get(width)
    return f"{family.label} (cross-attention width {width})" if family else f"cross-attention width {width}"


def check_lora_fits(path: Path, pipe, model_id: str) -> None:
    """Raise a ValueError naming both families when the LoRA at `path` was made for another kind of base."""
    shapes = _shapes(path)
    if not shapes:
        raise ValueError(f"LoRA file {path} holds no tensors")
    base_width = pipe.unet.config.cross_attention_dim
    widths = {s[1] for k, s in shapes.items() if _CROSS_ATTN_K_DOWN.search(k) and len(s) == 2}
    if widths and widths != {base_width}:
        raise ValueError(f"LoRA {path.name} was made for {_describe(widths.pop())}, but base {model_id!r} is "
                         f"{_describe(base_width)}")
    second_encoder = any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in shapes)
    if second_encoder and getattr(pipe, "text_encoder_2", None) is None:
        raise ValueError(f"LoRA {path.name} trains a second text encoder (an SDXL LoRA), but base {model_id!r} has none")


def embedding_token(path: Path, pipe, model_id: str) -> str:
    """The prompt token of a textual-inversion file: its file name, as in A1111. Checks the vector width fits."""
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
