"""Weight files as files: their tensor names, shapes and headers, read without loading the weights, clear errors for
damaged ones, and a checkpoint's tensors read one at a time (so a file is never held twice in memory)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COMFY_PREFIX = "model.diffusion_model."  # what ComfyUI puts before a transformer's names in its single files


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


@dataclass
class Checkpoint:
    """A single-file checkpoint's tensors as its header lists them: name -> shape (torch's order), read without the
    weights (safetensors and GGUF headers; a pickle the user opted into, memory-mapped by torch's weights-only
    unpickler)."""

    path: Path
    shapes: dict[str, tuple[int, ...]]

    def tensor(self, name: str):
        """One tensor, read from the file (a safetensors file or a pickle)."""
        if self.path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(self.path), framework="pt") as f:
                return f.get_tensor(name)
        return _pickle_state(self.path)[name]


def read_checkpoint(path: Path) -> Checkpoint:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return Checkpoint(path, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
        except Exception as e:  # safetensors raises its own error types for every kind of damage
            raise ValueError(f"file {path} is not a valid safetensors file ({type(e).__name__}: {e})") from e
    if path.suffix == ".gguf":
        reader = _gguf_reader(path)
        return Checkpoint(path, {t.name: tuple(int(n) for n in reversed(t.shape.tolist())) for t in reader.tensors})
    return Checkpoint(path, {k: tuple(v.shape) for k, v in _pickle_state(path).items() if hasattr(v, "shape")})


def checkpoint_keys(path: Path) -> list[str]:
    """The tensor names of a single-file checkpoint, read without its weights."""
    return list(read_checkpoint(path).shapes)


def _pickle_state(path: Path) -> dict:
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a damaged or hostile pickle: torch raises many kinds; none of them may run code
        raise ValueError(f"model file {path} could not be read as a checkpoint ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from e
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    return {k: v for k, v in state.items() if isinstance(k, str)}


def _gguf_reader(path: Path):
    try:
        import gguf
    except ImportError as e:
        raise ValueError(f"model file {path.name} is a GGUF file, which needs the gguf package: pip install "
                         f"gguf==0.19.0 (in requirements.txt)") from e
    try:
        return gguf.GGUFReader(str(path))
    except Exception as e:  # the reader raises ValueError, KeyError, struct errors for a damaged file
        raise ValueError(f"file {path} is not a valid GGUF file ({type(e).__name__}: {str(e)[:200]})") from e


# safetensors' dtype names -> torch's
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
           "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool"}


def read_tensors(path: Path, prefix: str, dtype, *, skip: tuple[str, ...] = ()) -> dict:
    """The tensors of a safetensors file whose names start with `prefix` (removed), floating ones converted to
    `dtype` one at a time as they are read, so the part is in memory once, in the dtype it will be used in. Each
    tensor is read from the file into its own buffer (not through a memory map of the whole file, whose pages would
    stay resident beside the converted copy). Names starting with one of `skip` are left out."""
    import json
    import struct

    import torch

    state = {}
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        start = 8 + length
        for name, info in header.items():
            if name == "__metadata__" or not name.startswith(prefix) or name.startswith(skip):
                continue
            if info["dtype"] not in _DTYPES:
                raise ValueError(f"file {path} holds tensor {name} in {info['dtype']}, a type the studio cannot read")
            begin, end = info["data_offsets"]
            raw = torch.empty(end - begin, dtype=torch.uint8)
            f.seek(start + begin)
            if f.readinto(raw.numpy()) != end - begin:
                raise ValueError(f"file {path} is truncated: tensor {name} ends past the end of the file")
            tensor = raw.view(getattr(torch, _DTYPES[info["dtype"]])).reshape(info["shape"])
            state[name[len(prefix):]] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return state


def comfy_transformer(cls, store, ref, *, dtype):
    """A transformer (diffusers' `cls`) from a single file alone, its tensors read one at a time in `dtype` with
    ComfyUI's prefix (COMFY_PREFIX) taken off where the file has it, and built with the carried config."""
    return cls.from_single_file(transformer_tensors(ref.path, COMFY_PREFIX, dtype),
                                config=str(store.single_file_config(ref)), subfolder="transformer", dtype=dtype,
                                local_files_only=True)


def transformer_tensors(path: Path, prefix: str, dtype) -> dict:
    """A transformer's tensors from its single file, read one at a time in `dtype`, with ComfyUI's `prefix`
    (model.diffusion_model.) taken off where the file has it."""
    names = read_checkpoint(path).shapes
    return read_tensors(path, prefix if any(k.startswith(prefix) for k in names) else "", dtype)


def has_guidance_keys(keys) -> bool:
    """Whether FLUX.1 transformer keys (BFL's or diffusers' names) include the distilled-guidance input: dev has it,
    schnell does not."""
    return any("guidance_in." in k or "guidance_embedder." in k for k in keys)
