"""CLIP models for scoring images against prompts: ids -> folders (builtin, models/clip/, a path, a hub id).

A CLIP id is `builtin:tiny-clip` (random weights, for offline tests: its scores mean nothing), a folder name in
models/clip/, a path to a transformers CLIP folder, or a hub id such as openai/clip-vit-base-patch16 (downloaded
only when the studio allows downloads, else read from the local hub cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.fileio import inside
from studio.models import builtin, hub

TINY_CLIP = "builtin:tiny-clip"
HUB_CLIP = "openai/clip-vit-base-patch16"  # torchmetrics' default CLIP-score model
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class ClipRef:
    id: str  # what the user typed
    source: str  # a local folder, or the hub id
    local: bool
    meaningful: bool  # False for builtin:tiny-clip, whose random weights give meaningless scores


@dataclass
class ClipModel:
    """A loaded CLIP: the model (eval mode, on `device`), its tokenizer and image processor."""

    ref: ClipRef
    model: object  # transformers.CLIPModel
    tokenizer: object
    image_processor: object
    device: str


def list_clip_models(settings) -> list[str]:
    """The CLIP ids a user can pick without typing: the builtin, folders in models/clip/, and the hub default."""
    folder = settings.models_dir / "clip"
    local = sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file()) if folder.is_dir() else []
    return [TINY_CLIP, *local, HUB_CLIP]


def real_clip_models(settings) -> list[str]:
    """CLIP ids with real weights on this disk: folders in models/clip/ that hold weights, then the hub default when
    its files are in the local hub cache. Nothing is downloaded to tell."""
    folder = settings.models_dir / "clip"
    local = sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file()
                   and any((p / w).is_file() for w in _WEIGHT_FILES)) if folder.is_dir() else []
    return [*local, *([HUB_CLIP] if HUB_CLIP not in local and _in_hub_cache(HUB_CLIP) else [])]


def default_clip(settings) -> str:
    """The CLIP model an evaluation uses unless told otherwise: the first real one on disk, else "" (no CLIP score:
    builtin:tiny-clip's random weights are never a default)."""
    found = real_clip_models(settings)
    return found[0] if found else ""


def _in_hub_cache(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, name), str)

    return cached("config.json") and any(cached(w) for w in _WEIGHT_FILES)


def resolve_clip(settings, model_id: str) -> ClipRef:
    """Where the CLIP named `model_id` lives; ValueError saying where to put the weights when it is not found."""
    model_id = (model_id or "").strip()
    if not model_id:
        raise ValueError("`clip_model` is empty: give builtin:tiny-clip, a folder in models/clip/, a path or a hub id")
    if model_id.startswith("builtin:"):
        folder = builtin.ensure_builtin(model_id.split(":", 1)[1], settings.models_dir)
        return ClipRef(model_id, str(folder), True, meaningful=False)
    candidates = [inside(settings.models_dir / "clip", model_id)]
    if settings.server_paths:
        candidates.insert(0, Path(model_id).expanduser())
    for candidate in candidates:
        if candidate is not None and candidate.is_dir():
            if not (candidate / "config.json").is_file() or not any((candidate / w).is_file() for w in _WEIGHT_FILES):
                raise ValueError(f"CLIP folder {candidate} needs config.json and model.safetensors (a transformers "
                                 f"CLIPModel saved with save_pretrained, with its tokenizer and preprocessor files)")
            return ClipRef(model_id, str(candidate.resolve()), True, meaningful=True)
    if hub.is_hub_id(model_id):
        return ClipRef(model_id, model_id, False, meaningful=True)
    raise ValueError(f"`clip_model` {model_id!r} not found: not {TINY_CLIP}, not a folder in "
                     f"{settings.models_dir / 'clip'}, not a path and not a hub id (owner/name)")
