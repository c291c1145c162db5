"""Weights' bytes as they lie in memory: a module's, a pipeline's or a loaded helper's, each tensor counted once and a
quantized tensor (torchao's int8/fp8) by what it holds."""

from __future__ import annotations


def modules_of(obj) -> list:
    """The torch modules of a module, of a pipeline, or held as attributes by a loaded helper (CLIP, captioner...)."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return [obj]
    parts = obj.components if hasattr(obj, "components") else vars(obj)
    return [m for m in parts.values() if isinstance(m, torch.nn.Module)]


def module_bytes(obj) -> int:
    """Bytes of parameters and buffers in `obj`'s modules (see modules_of), each tensor counted once; a quantized
    weight (torchao's int8/fp8 tensors) counts what it holds: its integers and scales."""
    seen, total = set(), 0
    for m in modules_of(obj):
        for t in list(m.parameters()) + list(m.buffers()):
            key = t.data_ptr() or id(t)  # a tensor subclass has no storage of its own: data_ptr() is 0
            if key not in seen:
                seen.add(key)
                total += tensor_bytes(t)
    return total


def tensor_bytes(t) -> int:
    """Bytes `t` holds; for a wrapper tensor subclass (torchao's), the sum of the tensors inside it."""
    if hasattr(t, "__tensor_flatten__") and type(t).__name__ not in ("Tensor", "Parameter"):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()
