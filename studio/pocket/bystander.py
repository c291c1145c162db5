"""A blurred "bystander" in every drawing of a new concept, with the mask the Dataset tab writes for it, and the measure
of what a LoRA trained on them draws: seed 002's blurred background faces, offline on builtin:pocket.

Seed 002 blurred bystanders' faces in its photos; its LoRA then drew people with blurred faces in the background.
Here every star drawing carries a cyan head in a corner, blurred by the Dataset tab's own blur (crop.blur_faces), and
`<stem>.mask.png` marks that head black (studio.data.masks). A LoRA trained on every pixel learns the smudge with the
star; one trained with the masked loss never sees the smudge in its loss. `demonstrate` trains both and counts, over
prompts and seeds, how often each draws the smudge and how often the star (docs/dataset.md has the figures):

    .venv/bin/python bench/bystander.py --steps 300 --seeds 20
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from studio.pocket.scenes import BACKGROUNDS, SHAPE_COLORS, _jitter, draw_shape

HEAD_RADIUS = 11  # px of 64: a head in the background as big as seed 002's, relative to the picture
BYSTANDER_RGB = (40, 205, 215)  # cyan: no shape colour or background of the pocket model is near it
# Shape colours with less blue than red, so that only a bystander makes a picture bluer than its background
DEMO_PROMPTS = ("a red zq on a white background", "a yellow zq on a black background",
                "a orange zq on a gray background")


def bystander_images(trigger: str = "zq", shape: str = "star", count: int = 8, seed: int = 0):
    """Like concept_images, but the shape keeps to one half and a blurred cyan head sits in a corner of the other:
    [(picture, caption, mask)], the mask made by the Dataset tab's own code (studio.data.masks) from the head's box."""
    from studio.data.crop import blur_faces
    from studio.data.masks import framed_mask, original_layers
    from studio.faces.detect import Face

    from studio.pocket.concept import concept_images

    concept_images(trigger, shape, count)  # the same checks
    rng = random.Random(seed)
    colors, backgrounds = list(SHAPE_COLORS), list(BACKGROUNDS)
    out = []
    for i in range(count):
        color, background = colors[i % len(colors)], backgrounds[i % len(backgrounds)]
        image = Image.new("RGB", (64, 64), _jitter(BACKGROUNDS[background], rng, 8))
        left = rng.random() < 0.5  # the shape's half; the head goes in a corner of the other
        r = 64 * rng.uniform(0.2, 0.26)
        room = 62 - 2 * HEAD_RADIUS - r  # the shape's centre stays clear of the head's corner
        cx = rng.uniform(r + 2, room) if left else rng.uniform(64 - room, 62 - r)
        draw_shape(ImageDraw.Draw(image), shape, cx, rng.uniform(r + 2, 62 - r), r, _jitter(SHAPE_COLORS[color], rng))
        hr = HEAD_RADIUS
        hx = rng.uniform(64 - hr - 3, 64 - hr) if left else rng.uniform(hr, hr + 3)
        hy = rng.choice((rng.uniform(hr, hr + 3), rng.uniform(64 - hr - 3, 64 - hr)))
        ImageDraw.Draw(image).ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=_jitter(BYSTANDER_RGB, rng, 10))
        head = Face((round(hx - hr), round(hy - hr), round(hx + hr), round(hy + hr)), np.zeros((68, 2)), np.zeros(128))
        blurred = blur_faces(image, [head])
        mask = framed_mask(original_layers(image, [head], None), (0, 0, 64, 64), (64, 64))
        out.append((blurred, f"a {color} {trigger} on a {background} background", mask))
    return out


def bystander_seen(image: Image.Image, min_pixels: int = 15) -> bool:
    """Whether a picture shows the bystander: at least `min_pixels` pixels bluer than its background (the median of
    its border) by 20 levels of blue over red, and 20 away from it. Generated smudges come out pale blue or lavender;
    the demonstration's red, yellow and orange shapes and the plain backgrounds are never bluer than the border."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    blue = (rgb[..., 2] - rgb[..., 0]) - (background[2] - background[0])
    apart = np.linalg.norm(rgb - background, axis=-1)
    return int(((blue > 20) & (apart > 20)).sum()) >= min_pixels


@dataclass(frozen=True)
class Share:
    """What one model draws for the demonstration's prompts and seeds."""

    label: str  # "base", "blur only", "masked loss"
    pictures: int
    bystander: int  # pictures that show the cyan smudge
    concept: int  # pictures the pocket checker calls a star

    @property
    def bystander_share(self) -> float:
        return self.bystander / self.pictures

    @property
    def concept_share(self) -> float:
        return self.concept / self.pictures

    def line(self) -> str:
        return (f"{self.label:12s} bystander in {self.bystander:3d}/{self.pictures} ({self.bystander_share:6.1%}), "
                f"star in {self.concept:3d}/{self.pictures} ({self.concept_share:6.1%})")


@dataclass
class Demonstration:
    steps: int
    seeds: int
    prompts: tuple[str, ...]
    cfg: float
    shares: list[Share] = field(default_factory=list)
    seconds: float = 0.0


def share(studio, label: str, prompts, seeds: int, loras: list, steps: int = 20, cfg: float = 1.0) -> Share:
    """Generate every prompt for seeds 0..seeds-1 (with `loras`) and count the smudges and the stars."""
    from studio.pocket.concept import check_prompt

    bystander = concept = total = 0
    for prompt in prompts:
        result = check_prompt(studio, prompt, seeds=seeds, loras=loras, steps=steps, cfg=cfg)
        bystander += sum(bystander_seen(im) for im in result.images)
        concept += result.labels["star"]
        total += len(result.images)
    return Share(label, total, bystander, concept)


def demonstrate(studio, *, steps: int = 300, seeds: int = 20, prompts: tuple[str, ...] = DEMO_PROMPTS,
                dataset: str = "zqb", count: int = 8, cfg: float = 1.0, log=print) -> Demonstration:
    """Write the bystander dataset, train the pocket preset on it twice (every pixel; masked loss) and measure the
    base and both LoRAs, sampled at `cfg` (1: one pass, as FLUX.1-dev samples with its distilled guidance; with
    classifier-free guidance the unconditional pass, which the LoRA changes too, cancels part of what it learnt
    besides the prompt). Runs in this process, through the studio's one training loop and its Generate."""
    from dataclasses import replace

    from studio.generate import LoraChoice
    from studio.pocket.concept import write_concept_dataset
    from studio.train.config import RunConfig
    from studio.train.presets import apply_preset
    from studio.train.loop import train
    from studio.train.runlog import RunLog

    started = time.perf_counter()
    folder = studio.settings.datasets_dir / dataset
    if not folder.is_dir():
        write_concept_dataset(folder, trigger="zq", count=count, bystander=True)
    out = Demonstration(steps, seeds, tuple(prompts), cfg)
    out.shares.append(share(studio, "base", prompts, seeds, [], cfg=cfg))
    log(out.shares[-1].line())
    for label, masked in (("blur only", False), ("masked loss", True)):
        name = f"{dataset}-{'masked' if masked else 'blur'}"
        config = replace(apply_preset(RunConfig(name=name, dataset=dataset, trigger="zq"), "pocket"),
                         max_steps=steps, validation_every=0, masked_loss=masked).check()
        run_dir = studio.settings.runs_dir / name
        run_log = RunLog(run_dir)
        try:
            train(studio.store, studio.settings, config, run_dir, log=run_log, should_stop=lambda: False)
        finally:
            run_log.close()
        out.shares.append(share(studio, label, prompts, seeds, [LoraChoice(name, 1.0)], cfg=cfg))
        log(out.shares[-1].line())
    out.seconds = time.perf_counter() - started
    return out
