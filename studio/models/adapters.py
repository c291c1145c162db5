"""LoRA and textual-inversion files: which base they fit (read from tensor shapes, judged by the families) and the
token an embedding adds."""

from __future__ import annotations

import re
from pathlib import Path

from studio.models import families


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


def check_lora_fits(path: Path, pipe, model_id: str) -> None:
    """Raise a ValueError naming both families when the LoRA at `path` was made for another kind of base."""
    shapes = _shapes(path)
    if not shapes:
        raise ValueError(f"LoRA file {path} holds no tensors")
    base = families.of(pipe)
    made_for = families.from_lora(shapes)
    if made_for and base not in made_for:
        theirs = " or ".join(dict.fromkeys(f.label for f in made_for))
        raise ValueError(f"LoRA {path.name} was made for {theirs}, but base {model_id!r} is {base.label}")
    base.check_lora(shapes, pipe, lora=path.name, model_id=model_id)


def embedding_token(path: Path, pipe, model_id: str) -> str:
    """The prompt token of a textual-inversion file: its file name, as in A1111. Checks the vector width fits."""
    family = families.of(pipe)
    family.check_embedding(_shapes(path), pipe, embedding=path.name, model_id=model_id)
    return re.sub(r"\s+", "_", path.stem)


def lora_weights(path: Path, pipe):
    """What to hand diffusers' load_lora_weights: the file, or its tensors converted as the family needs."""
    return families.of(pipe).lora_weights(path, pipe)
