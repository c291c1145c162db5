"""The collapse guard: stops a run whose loss jumps far above its running level and stays there, or whose validation
images collapse: near-identical to one another AND gone from both references (the base model's pictures for the same
prompts and seeds, and the dataset's pictures), or far below the base model's CLIP score for their prompts.

NaN and infinite losses are caught apart (setup.TrainingDiverged). This is for the finite collapses trainers do not
stop on: seed 001 lost two full fine-tunes at lr 1e-3 to one (every image became the same picture) and learnt it by
looking. Sameness alone cannot tell that from learning: a LoRA that learns its subject makes its pictures alike on
purpose (a face LoRA's pictures all show one face), but they come nearer the dataset; a collapse (noise, flat colour,
one texture everywhere) leaves the dataset and the base alike. Every threshold is a RunConfig knob; 0 turns a signal
off.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

from studio.train.setup import TrainingDiverged

THUMB = 4  # thumbnail side for the image distance: what a picture is laid out as, not its texture
HIST_BINS = 4  # per channel: 64 colour bins
MIN_BASE_SPREAD = 0.05  # base images already this alike (one prompt repeated): the near-identical test cannot tell


class CollapseDetected(TrainingDiverged):
    """The guard stopped the run: `signal` is "loss", "images" or "clip", `reason` the measured words."""

    def __init__(self, message: str, signal: str, step: int, reason: str):
        super().__init__(message)
        self.signal, self.step, self.reason = signal, step, reason


@dataclass
class LossWatch:
    """(a): the loss smoothed over `steps` steps (an EMA) against its running level, the lowest an average over five
    times as many steps has been (starting at the base model's loss, measured before the first step). A run trips
    when the smoothed loss stays above `factor` x that level for `steps` steps in a row."""

    factor: float
    steps: int
    level: float | None = None
    fast: float | None = None
    slow: float | None = None
    streak: int = 0
    since: int | None = None  # the first step of the current streak above the threshold

    @property
    def on(self) -> bool:
        return self.factor > 0

    @property
    def watching(self) -> bool:
        """The loss stands above the threshold now (a checkpoint written now might hold a collapse)."""
        return self.streak > 0

    def start(self, base_loss: float) -> None:
        self.level = self.fast = self.slow = base_loss

    def update(self, step: int, loss: float) -> str | None:
        """Take step `step`'s loss; the reason in words when the run should stop."""
        if not self.on:
            return None
        if self.level is None:
            self.start(loss)
        self.fast += 2 / (self.steps + 1) * (loss - self.fast)
        self.slow += 2 / (5 * self.steps + 1) * (loss - self.slow)
        self.level = min(self.level, self.slow)
        if self.fast <= self.factor * self.level:
            self.streak, self.since = 0, None
            return None
        if self.streak == 0:
            self.since = step
        self.streak += 1
        if self.streak < self.steps:
            return None
        return (f"the loss, smoothed over {self.steps} steps, rose to {self.fast:.3g}, {self.fast / self.level:.1f}x "
                f"its running level {self.level:.3g}, and stayed above {self.factor:g}x for {self.streak} steps "
                f"(from step {self.since})")

    def to_json(self) -> dict:
        """The state a checkpoint keeps (the thresholds come from the run's config)."""
        return {k: v for k, v in asdict(self).items() if k not in ("factor", "steps")}


@dataclass
class Look:
    """What the image distance sees of a picture: its colour histogram (64 bins) and its 4x4 thumbnail."""

    histogram: object  # (64,) float, sums to 1
    thumb: object  # (4, 4, 3) float in [0, 1]


def look(image) -> Look:
    import numpy as np
    from PIL import Image

    rgb = image.convert("RGB")
    q = (np.asarray(rgb, dtype=np.int32) * HIST_BINS // 256).reshape(-1, 3)
    h = np.bincount((q[:, 0] * HIST_BINS + q[:, 1]) * HIST_BINS + q[:, 2], minlength=HIST_BINS ** 3)
    thumb = np.asarray(rgb.resize((THUMB, THUMB), Image.BOX), dtype=np.float32) / 255
    return Look(h / h.sum(), thumb)


def look_distance(a: Look, b: Look) -> float:
    """How different two pictures (their looks) are, in [0, 1]: half the total-variation distance of their colour
    histograms (64 bins), half the mean absolute difference of their 4x4 thumbnails. A collapse to one picture, or to
    one texture of the same colours, scores near 0 for every pair; different subjects or backgrounds score high."""
    import numpy as np

    return 0.25 * float(np.abs(a.histogram - b.histogram).sum()) + 0.5 * float(np.abs(a.thumb - b.thumb).mean())


def spread(images) -> float | None:
    """The mean distance between every two of `images` (None with fewer than two)."""
    looks = [look(im) for im in images]
    pairs = list(itertools.combinations(looks, 2))
    return sum(look_distance(a, b) for a, b in pairs) / len(pairs) if pairs else None


@dataclass
class References:
    """What a run's validation pictures are held against: the base model's pictures (one per prompt, before the first
    step) and the dataset's. `scale` is how far the two are from each other: the larger of the dataset pictures'
    mean distance to their nearest other dataset picture and the base pictures' mean distance to their nearest
    dataset picture."""

    base: list[Look]
    dataset: list[Look]
    scale: float


def references(base_images: list, dataset_images: list) -> References | None:
    """None when there is nothing to hold pictures against (no base pictures, no dataset pictures)."""
    base, data = [look(im) for im in base_images], [look(im) for im in dataset_images]
    if not base or not data:
        return None
    nearest = [min(look_distance(b, d) for d in data) for b in base]
    scale = sum(nearest) / len(nearest)
    if len(data) > 1:
        own = [min(look_distance(a, b) for j, b in enumerate(data) if j != i) for i, a in enumerate(data)]
        scale = max(scale, sum(own) / len(own))
    return References(base, data, scale)


def strayed(refs: References, images: list) -> float | None:
    """How far the least strayed of `images` (one per prompt, in the base pictures' order) is from both references,
    in units of `refs.scale`: each picture's distance to the nearer of its own base picture (same prompt and seed)
    and the nearest dataset picture. Above 1 for every picture: they all left both references, farther than the two
    are from each other. None when the pictures do not match the base's (another prompt count) or the scale is 0."""
    if len(images) != len(refs.base) or refs.scale <= 0:
        return None
    gone = [min(look_distance(now, base), min(look_distance(now, d) for d in refs.dataset))
            for now, base in zip((look(im) for im in images), refs.base)]
    return min(gone) / refs.scale


def image_verdict(config, now_spread: float | None, base_spread: float | None, now_strayed: float | None,
                  clip: list | None, base_clip: list | None) -> tuple[str, str] | None:
    """(b): (signal, reason) when validation images collapsed; None when they did not (or nothing can tell). The
    images signal needs both: the pictures are near-identical (their spread below `guard_image_ratio` x the base
    pictures' spread for the same prompts and seeds), and every one of them left both the base's pictures and the
    dataset's (`now_strayed`, see strayed(), above `guard_image_left`; None: unknown, which does not fire unless
    guard_image_left is 0, the sameness test alone). `clip`, `base_clip`: CLIP score per prompt, from a CLIP whose
    scores mean something (None otherwise)."""
    ratio, left = config.guard_image_ratio, config.guard_image_left
    if ratio and now_spread is not None and base_spread is not None and base_spread >= MIN_BASE_SPREAD:
        alike = now_spread < ratio * base_spread
        gone = not left or (now_strayed is not None and now_strayed > left)
        if alike and gone:
            where = (f"; and every one left both the base model's pictures and the dataset's, the nearest by "
                     f"{now_strayed:.1f}x what those are apart (a collapse beyond {left:g}x)") if left else ""
            return "images", (f"the validation images are near-identical: they differ from one another by "
                              f"{now_spread:.3f}, the base model's by {base_spread:.3f} (a collapse below "
                              f"{ratio:g}x){where}")
    drop = config.guard_clip_drop
    if drop and clip and base_clip and len(clip) == len(base_clip):
        pairs = [(c, b) for c, b in zip(clip, base_clip) if c is not None and b]
        if pairs:
            kept = sum(c / b for c, b in pairs) / len(pairs)
            if kept < 1 - drop:
                mean, base = sum(c for c, _ in pairs) / len(pairs), sum(b for _, b in pairs) / len(pairs)
                return "clip", (f"the validation images lost {1 - kept:.0%} of the base model's CLIP score for their "
                                f"prompts (mean {mean:.1f} vs {base:.1f}; a collapse beyond {drop:.0%})")
    return None


def guard_notes(config, images: int, clip_meaningful: bool | None) -> list[str]:
    """What the guard cannot check on this run, in words for the run's log."""
    notes = []
    if config.guard_image_ratio and images < 2:
        notes.append("one validation image: the collapse guard cannot compare pictures (give two or more prompts)")
    if config.guard_clip_drop and not config.clip_model:
        notes.append("no `clip_model`: the collapse guard's CLIP check is off")
    elif config.guard_clip_drop and clip_meaningful is False:
        notes.append(f"{config.clip_model} has random weights: its CLIP scores are shown but the collapse guard "
                     f"does not judge by them")
    return notes
