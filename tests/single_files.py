"""Single files in the layouts A1111, Forge and ComfyUI keep, made from the tiny builtins (same key names, toy widths),
and the carried configs swapped for the builtin's own (the real ones describe the real widths)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file


def carry_tiny(monkeypatch, tmp_path: Path, variant: str, pipe) -> Path:
    """Make `variant`'s carried configs those of the builtin `pipe` was loaded from (its folder without weights),
    every other variant left as the studio carries it."""
    from studio.models import configs

    root = tmp_path / "carried"
    if not root.is_dir():
        shutil.copytree(configs.CONFIGS_DIR, root, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.rmtree(root / variant, ignore_errors=True)
    shutil.copytree(pipe.name_or_path, root / variant, ignore=shutil.ignore_patterns("*.safetensors", "*.json.lock"))
    monkeypatch.setattr(configs, "CONFIGS_DIR", root)
    return root / variant


def load(studio, model_id: str):
    return studio.store.load_base(studio.store.resolve(model_id), dtype=torch.float32, device="cpu")


def write_sd_file(studio, builtin: str, path: Path) -> Path:
    """An A1111-layout checkpoint of a UNet builtin (model.diffusion_model., first_stage_model., cond_stage_model. or
    conditioner.embedders.N.), with no header naming its base."""
    from studio.models import families

    pipe = load(studio, builtin)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(families.of(pipe).single_file_state(pipe), str(path))
    return path


def write_flux_files(pipe, folder: Path, *, all_in_one: bool = False, transformer_dtype=None) -> Path:
    """A FLUX.1 pipeline as Forge keeps it (flux1-dev.safetensors in BFL's layout, clip_l, t5xxl_fp16 and ae beside
    it), or as one all-in-one file; returns the transformer's (or the all-in-one) file."""
    from studio.models.families import flux1_files

    states = flux1_files.file_states(pipe)
    if transformer_dtype is not None:
        states["transformer"] = {k: v.to(transformer_dtype) if v.ndim == 2 else v
                                 for k, v in states["transformer"].items()}
    folder.mkdir(parents=True, exist_ok=True)
    if all_in_one:
        save_file(flux1_files.all_in_one(states), str(folder / "flux1-dev-all-in-one.safetensors"))
        return folder / "flux1-dev-all-in-one.safetensors"
    for part, name in (("transformer", "flux1-dev.safetensors"), ("clip_l", "clip_l.safetensors"),
                       ("t5xxl", "t5xxl_fp16.safetensors"), ("ae", "ae.safetensors")):
        save_file(states[part], str(folder / name))
    return folder / "flux1-dev.safetensors"
