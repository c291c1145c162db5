"""Model families, one module each (sd1, sd2, sdxl, flux1, z_image, flux2, qwen_image), behind one registry.

The store identifies a model's family once, when it resolves the id (from a single file's keys, a folder's
model_index.json, a component's config, a hub id's name), and every pipeline it loads carries it (`of(pipe)`).
The cache, the generator, the training loop, the evaluator and the UI ask that family object (base.ModelFamily)
what differs; nothing else compares family names or probes a pipeline's parts. An unknown model fails with
"no family matches", naming what was looked at.

Adding a family: docs/architecture.md, "Adding a model family".
"""

from __future__ import annotations

from pathlib import Path

from studio.models.families import flux1, flux2, qwen_image, sd1, sd2, sdxl, z_image
from studio.models.families.base import Conditioning, ModelFamily, TrainingTarget

__all__ = ["Conditioning", "ModelFamily", "TrainingTarget", "all_families", "from_component", "from_hub_id",
           "from_index", "from_keys", "from_lora", "get", "mark", "of"]

_REGISTRY: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    if family.name in _REGISTRY:
        raise ValueError(f"family {family.name!r} is registered twice")
    _REGISTRY[family.name] = family
    return family


for _module in (sd1, sd2, sdxl, flux1, z_image, flux2, qwen_image):
    register(_module.FAMILY)


def all_families() -> list[ModelFamily]:
    """Every family, the most specific first (the order identification asks them in)."""
    return sorted(_REGISTRY.values(), key=lambda f: -f.priority)


def get(name: str) -> ModelFamily:
    """The family by its id (run.json's and the exports' `family`)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"no family named {name!r}; the studio knows {', '.join(_REGISTRY)}") from None


def _labels() -> str:
    return ", ".join(f.label for f in all_families())


def from_keys(keys, path: Path) -> ModelFamily:
    """A single-file checkpoint's family, from its tensor names."""
    keys = set(keys)
    for family in all_families():
        if family.matches_keys(keys):
            return family
    raise ValueError(f"model file {path} matches no family the studio knows ({_labels()}): none of their keys found")


def from_index(index: dict, folder: Path | None) -> ModelFamily:
    """A diffusers pipeline's family from its model_index.json (and its files in `folder`)."""
    for family in all_families():
        if family.matches_index(index, folder):
            return family
    where = f" in {folder}" if folder is not None else ""
    raise ValueError(f"no family matches pipeline {index.get('_class_name', '?')!r}{where}; the studio knows "
                     f"{_labels()}")


def from_component(config: dict) -> ModelFamily | None:
    """The family a single component (a ControlNet, a denoiser) belongs to, from its config.json; None if none."""
    return next((f for f in all_families() if f.matches_component(config)), None)


def from_hub_id(repo_id: str) -> ModelFamily | None:
    """A hub id's family from its name alone (nothing downloaded); None when the name does not tell."""
    return next((f for f in all_families() if f.matches_hub_id(repo_id)), None)


def from_lora(shapes: dict[str, list[int]]) -> list[ModelFamily]:
    """The families a LoRA file (tensor name -> shape) may have been made for."""
    return [f for f in all_families() if f.matches_lora(shapes)]


def mark(pipe, family: ModelFamily):
    """Record `family` on a pipeline the store or cache made (every pipeline carries its family)."""
    pipe.studio_family = family
    return pipe


def of(pipe) -> ModelFamily:
    """The family a pipeline was loaded as."""
    family = getattr(pipe, "studio_family", None)
    if family is None:
        raise ValueError(f"a {type(pipe).__name__} that the model store did not load carries no family")
    return family
