"""Weight files as files: their tensor names and headers, read without loading the weights, and clear errors for
damaged ones."""

from __future__ import annotations

from pathlib import Path


def safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as e:  # safetensors raises its own error types for every kind of damage
        raise ValueError(f"file {path} is not a valid safetensors file ({type(e).__name__}: {e})") from e


def safetensors_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise ValueError(f"file {path} is not a valid safetensors file ({type(e).__name__}: {e})") from e


def checkpoint_keys(path: Path) -> list[str]:
    """The tensor names of a single-file checkpoint: read from a safetensors header, or (a pickle the user opted
    into) by torch's weights-only unpickler, memory-mapped so the weights are not read."""
    if path.suffix == ".safetensors":
        return safetensors_keys(path)
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a damaged or hostile pickle: torch raises many kinds; none of them may run code
        raise ValueError(f"model file {path} could not be read as a checkpoint ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from e
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    return [k for k in state if isinstance(k, str)]


def has_guidance_keys(keys) -> bool:
    """Whether FLUX.1 transformer keys (BFL's or diffusers' names) include the distilled-guidance input: dev has it,
    schnell does not."""
    return any("guidance_in." in k or "guidance_embedder." in k for k in keys)
