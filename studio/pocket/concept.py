"""A concept builtin:pocket never saw (a star), drawn as a small dataset, and the checker's view of what a prompt
draws, so that teaching it with the studio's own LoRA training can be measured.

The walkthrough (README, docs/pocket.md):

    python -m studio pocket concept zq                  # workspace/datasets/zq: 8 stars captioned "a red zq ..."
    python -m studio train --preset pocket --dataset zq --out zq --trigger zq
    python -m studio pocket check "a red zq on a white background" --lora zq --seeds 20

With `bystander=True` the drawings carry a blurred "bystander" and its mask (studio/pocket/bystander.py).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from studio import fileio
from studio.pocket.scenes import BACKGROUNDS, NEW_SHAPES, SHAPE_COLORS, shape_scene


def concept_images(trigger: str = "zq", shape: str = "star", count: int = 8, seed: int = 0) -> list[tuple[Image.Image, str]]:
    """`count` drawings of `shape` in every colour and background, captioned with `trigger` in place of its name."""
    if shape not in NEW_SHAPES:
        raise ValueError(f"`shape` must be one the pocket model never saw ({', '.join(NEW_SHAPES)}) but is {shape!r}")
    if not 1 <= count <= 100:
        raise ValueError(f"`count` must be in 1..100 but is {count}")
    if not trigger.isalnum():
        raise ValueError(f"`trigger` must be one word of letters and digits but is {trigger!r}")
    rng = random.Random(seed)
    colors, backgrounds = list(SHAPE_COLORS), list(BACKGROUNDS)
    out = []
    for i in range(count):
        scene = shape_scene(rng, shape=shape, color=colors[i % len(colors)], background=backgrounds[i % len(backgrounds)],
                            caption_style=0)
        out.append((scene.image, scene.caption.replace(shape, trigger)))
    return out


def write_concept_dataset(folder: Path, trigger: str = "zq", shape: str = "star", count: int = 8,
                          bystander: bool = False) -> list[Path]:
    """Write the drawings as PNGs with kohya `.txt` captions into `folder` (a new or empty folder); with `bystander`,
    the blurred-head drawings of bystander_images and their masks (`<stem>.mask.png`)."""
    from studio.data.masks import mask_path, mask_png
    from studio.pocket.bystander import bystander_images

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"`folder` {folder} is not empty: choose a new dataset name (nothing was written)")
    examples = (bystander_images(trigger, shape, count) if bystander else
                [(image, caption, None) for image, caption in concept_images(trigger, shape, count)])
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (image, caption, mask) in enumerate(examples):
        path = folder / f"{trigger}_{i:02d}.png"
        with fileio.atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        fileio.write_text(path.with_suffix(".txt"), caption + "\n")
        if mask is not None:
            fileio.write_bytes(mask_path(path), mask_png(mask))
        written.append(path)
    return written


@dataclass(frozen=True)
class CheckResult:
    prompt: str
    seeds: list[int]
    labels: Counter  # what the checker's classifier sees, per label
    colors: Counter  # the foreground colour named, per colour (None: nothing stands out)
    images: list  # PIL images, seed order


def check_prompt(studio, prompt: str, *, seeds: int = 20, first_seed: int = 0, loras: list | None = None,
                 steps: int = 20, cfg: float = 4.0, model: str = "builtin:pocket") -> CheckResult:
    """Generate `prompt` on the pocket model through the studio (LoRAs as in Generate) for `seeds` seeds, and
    tell what the pocket checker sees in each picture."""
    from studio.pocket import CHECKER_DIR, pocket_images
    from studio.pocket.checker import PocketChecker, foreground_color

    if not 1 <= seeds <= 1000:
        raise ValueError(f"`seeds` must be in 1..1000 but is {seeds}")
    images = pocket_images(studio, prompt, first_seed=first_seed, count=seeds, steps=steps, cfg=cfg, loras=loras,
                           model=model)
    with studio.cache.borrow("checker", str(CHECKER_DIR)) as classifier:
        labels = Counter(label for label, _ in PocketChecker(classifier).labels(images))
    colors = Counter(foreground_color(im) for im in images)
    return CheckResult(prompt, list(range(first_seed, first_seed + seeds)), labels, colors, images)
