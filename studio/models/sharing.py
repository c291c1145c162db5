"""Sharing a LoRA on a studio of several users: what a user trains is theirs (models/users/<user>/lora/); shared, it
moves to their shared/ folder below, where everyone's store lists it by its name (studio.models.store: model_folders).
It stays theirs: removing the user, or Delete subject of the dataset it was trained on, removes it too."""

from __future__ import annotations

import os
from pathlib import Path

from studio.models.store import SHARED, ModelStore


def _own(store: ModelStore, name: str) -> tuple[Path, Path]:
    """(the user's LoRA file named `name`, their LoRA folder); a ValueError for anything else, alike whether it
    exists elsewhere or not."""
    settings = store.settings
    if not settings.user:
        raise ValueError("the studio owner's LoRAs (models/lora/) are everyone's already")
    folder = settings.own_models_dir / "lora"
    path = store.lora_file(name)
    if not path.is_relative_to(folder.resolve()):
        raise ValueError(f"`lora` {name!r} is not one of your LoRAs: only what you trained can be shared or unshared")
    return path, folder.resolve()


def share_lora(store: ModelStore, name: str) -> Path:
    """Share the user's LoRA `name` with everyone; returns where it is now. Refused when another LoRA everyone sees
    has its name (two shared names alike would leave others unsure which they pick)."""
    path, folder = _own(store, name)
    if path.parent == folder / SHARED:
        raise ValueError(f"`lora` {name!r} is shared already")
    everyone = ModelStore(store.settings.for_user(""))  # what the owner sees: models/lora and every shared LoRA
    if any(p.stem == path.stem for p in everyone.list_models().lora):
        raise ValueError(f"`lora` {path.stem!r}: a LoRA of that name is shared already; export yours under another "
                         f"name to share it")
    target = folder / SHARED / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    return target


def unshare_lora(store: ModelStore, name: str) -> Path:
    """Take the user's shared LoRA `name` back: theirs alone again. Returns where it is now."""
    path, folder = _own(store, name)
    if path.parent != folder / SHARED:
        raise ValueError(f"`lora` {name!r} is not shared")
    target = folder / path.name
    if target.exists():
        raise ValueError(f"`lora` {name!r}: you have another LoRA called {path.name} in models/lora/ of your own")
    os.replace(path, target)
    return target


def shared_loras(store: ModelStore) -> list[Path]:
    """The user's own LoRAs that they share now."""
    folder = store.settings.own_models_dir / "lora" / SHARED
    return sorted(p for p in folder.glob("*.safetensors") if p.is_file()) if store.settings.user else []
