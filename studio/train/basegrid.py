"""The base model's validation pictures, drawn once per (base, prompts, seeds, size, steps, CFG, precision, device)
and kept under workspace/.cache/train/base_grids/<key>/ (NN.png and grid.json), so later runs of the same base and
prompts reuse them instead of drawing them again before their first step. grid.json keeps how long drawing them
took: the validation budget's first estimate of what a validation costs (train/schedule.py).

Not kept: the grid of a run that starts from another run's LoRA ("add a subject"), which that LoRA draws.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from studio import fileio

GRID = "grid.json"


@dataclass
class BaseGrid:
    pictures: list  # PIL images, one per prompt
    seconds: float  # how long drawing them took when they were drawn


def grid_key(parts, config, caption_fn, device: str) -> str:
    """What the base's pictures depend on: its weights, the captioned prompts (a textual inversion's new token is in
    them, its starting word below), seeds, size, sampling steps and CFG, precision, the device kind and the library
    versions that draw."""
    import diffusers
    import torch

    from studio.train.latents import model_stamp

    prompts = [caption_fn(p) for p in config.prompts()]
    facts = [model_stamp(parts), prompts, config.validation_seed, config.resolution, config.validation_steps,
             config.validation_cfg, config.mixed_precision, config.base_precision, device.split(":")[0],
             [config.method, config.init_word, config.vectors] if config.method == "textual-inversion" else None,
             diffusers.__version__, torch.__version__]
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def find(folder: Path, count: int) -> BaseGrid | None:
    """The kept grid in `folder` (None when there is none, or not all `count` pictures are there)."""
    from PIL import Image

    try:
        meta = json.loads((Path(folder) / GRID).read_text())
    except (OSError, ValueError):
        return None
    paths = [Path(folder) / f"{i:02d}.png" for i in range(count)]
    if meta.get("count") != count or not all(p.is_file() for p in paths):
        return None
    pictures = []
    for path in paths:
        with Image.open(path) as im:
            pictures.append(im.convert("RGB"))
    return BaseGrid(pictures, float(meta.get("seconds", 0.0)))


def keep(folder: Path, pictures: list, seconds: float) -> None:
    """Write the grid's pictures, then grid.json (so a grid.json is only there when its pictures are)."""
    for i, image in enumerate(pictures):
        with fileio.atomic_path(Path(folder) / f"{i:02d}.png") as tmp:
            image.save(tmp, format="PNG")
    fileio.write_json(Path(folder) / GRID, {"count": len(pictures), "seconds": round(seconds, 4)})
