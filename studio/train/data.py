"""Training data: a dataset's pictures (and masks) as training items, aspect-ratio buckets, augmentations, and the
epoch plan."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from studio.data.library import captioned_images

BUCKET_STEP = 64  # bucket sides are multiples of this, as in kohya


@dataclass(frozen=True)
class TrainItem:
    path: Path
    caption: str
    width: int
    height: int
    mask: Path | None = None  # <stem>.mask.png: the loss weight of each pixel (white 1, black 0)
    subject: int = 0  # which of the run's subjects (RunConfig.subjects) the picture shows

    def bucket(self, resolution: int, buckets: bool) -> tuple[int, int]:
        return bucket_for(self.width, self.height, resolution) if buckets else (resolution, resolution)


@dataclass(frozen=True)
class Sample:
    """One image of a micro-batch: which item, flipped or not, and its caption for this step."""

    index: int
    flip: bool
    caption: str


def load_items(folder: Path, trigger: str, subject: int = 0) -> list[TrainItem]:
    """The dataset folder's pictures and captions (read by studio.data.library, as every tab reads them)."""
    return [TrainItem(c.path, c.caption, c.width, c.height, c.mask, subject)
            for c in captioned_images(Path(folder), trigger)]


def subject_items(settings, config) -> list[TrainItem]:
    """Every subject's pictures of a run, in subject order, each item knowing its subject (captions get the
    subject's own trigger where they lack it). A subject with no pictures is refused, naming it."""
    from studio.data.library import find_dataset

    if not config.extra_subjects:
        return load_items(find_dataset(settings, config.dataset), config.caption_trigger)
    items = []
    for k, subject in enumerate(config.subjects):
        found = load_items(find_dataset(settings, subject.dataset), subject.trigger, k)
        if not found:
            raise ValueError(f"`dataset` {subject.dataset!r} (subject {k + 1}, {subject.trigger!r}) has no pictures")
        items += found
    return items


def run_repeats(config):
    """`repeats` as epoch_plan takes it: the run's number, or one per subject when it has several."""
    return [s.repeats for s in config.subjects] if config.extra_subjects else config.repeats


def config_steps_per_epoch(items: list, config, native: int, processes: int = 1) -> int:
    """Optimizer steps in one epoch of `config` on its `items` (on `processes` processes); `native` is the base's own
    size, for a config that leaves the resolution to it."""
    return steps_per_epoch(items, repeats=run_repeats(config), batch_size=config.batch_size,
                           grad_accum=config.grad_accum, resolution=config.resolution or native,
                           buckets=config.buckets, processes=processes, balance=config.balance)


def appearances(items: list[TrainItem], repeats, balance: bool = False) -> list[int]:
    """How many times each item is seen in one epoch. `repeats`: one number, or one per subject (by item.subject).
    With `balance`, every subject is seen as often as the one with the most pictures x repeats: a smaller set's
    pictures are repeated more (whole rounds, then one more look for its first pictures in dataset order)."""
    per = (lambda s: repeats) if isinstance(repeats, int) else (lambda s: repeats[s])
    counts = [per(item.subject) for item in items]
    if not balance:
        return counts
    members: dict[int, list[int]] = {}
    for i, item in enumerate(items):
        members.setdefault(item.subject, []).append(i)
    if len(members) < 2:
        return counts
    share = max(len(ids) * per(s) for s, ids in members.items())
    for ids in members.values():
        whole, extra = divmod(share, len(ids))
        for k, i in enumerate(ids):
            counts[i] = whole + (k < extra)
    return counts


def bucket_for(width: int, height: int, resolution: int) -> tuple[int, int]:
    """The (width, height) bucket closest in aspect ratio with about resolution**2 pixels, sides multiples of 64."""
    area, aspect = resolution * resolution, width / height
    best, best_err = (resolution, resolution), float("inf")
    side = BUCKET_STEP
    while side <= resolution * 2:
        other = max(BUCKET_STEP, (area // side) // BUCKET_STEP * BUCKET_STEP)
        for w, h in ((side, other), (other, side)):
            if w * h <= area:
                err = abs(w / h - aspect)
                if err < best_err - 1e-9:
                    best, best_err = (w, h), err
        side += BUCKET_STEP
    return best


def _fit(im, size: tuple[int, int], flip: bool, resample):
    """`im` resized to cover `size`, center-cropped to it, maybe mirrored: what load_pixels and load_mask both do, so a
    mask always lands on its picture's pixels. Returns the picture and the crop's (top, left)."""
    from PIL import ImageOps

    width, height = size
    scale = max(width / im.width, height / im.height)
    resized = im.resize((max(width, round(im.width * scale)), max(height, round(im.height * scale))), resample)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    im = resized.crop((left, top, left + width, top + height))
    return (ImageOps.mirror(im) if flip else im), (top, left)


def load_pixels(item: TrainItem, size: tuple[int, int], flip: bool):
    """The image resized to cover `size` (LANCZOS, as seed 002), center-cropped, maybe flipped: a (3, H, W) tensor
    in [-1, 1], plus SDXL's size conditioning (original h, w, crop top, crop left)."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    with Image.open(item.path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    im, (top, left) = _fit(im, size, flip, Image.LANCZOS)
    pixels = torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)  # (3, H, W)
    return pixels.contiguous(), (item.height, item.width, top, left)


def load_mask(item: TrainItem, size: tuple[int, int], flip: bool):
    """The item's mask, cut and flipped exactly as load_pixels cuts its picture: a (1, H, W) tensor of loss weights in
    [0, 1] (area-averaged where it is shrunk), or None when the item has no mask."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    from studio.data.masks import read_mask

    if item.mask is None:
        return None
    with Image.open(item.path) as im:
        upright = ImageOps.exif_transpose(im).size
    mask, _ = _fit(read_mask(item.mask, upright), size, flip, Image.BOX)
    return torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)[None].contiguous()  # (1, H, W)


def latent_mask(mask, latent_size: tuple[int, int]):
    """A (1, H, W) pixel mask at the latents' (h, w): each latent pixel takes the smallest weight of the pixels it
    covers, so a latent that sees any ignored pixel is ignored too (the blur never leaks in at the edges)."""
    import torch.nn.functional as F

    return -F.adaptive_max_pool2d(-mask[None], latent_size)[0]  # (1, h, w)


def mask_note(items: list[TrainItem], masked_loss: bool, unmasked_weight: float) -> str:
    """What the run log says about masks: used (how many, at which weight), off, or absent."""
    with_mask = sum(1 for i in items if i.mask is not None)
    if not with_mask:
        return "masked loss: the dataset has no masks (<stem>.mask.png), every pixel counts"
    if not masked_loss:
        return f"masked loss off: the {with_mask} masks of the dataset are not used"
    return (f"masked loss: {with_mask} of {len(items)} pictures have masks; black pixels weigh {unmasked_weight:g}, "
            f"white 1, normalised per picture by its mask's total weight")


def shuffled_caption(caption: str, keep_tokens: int, rng: random.Random) -> str:
    """kohya's caption shuffle: comma-separated tags after the first `keep_tokens` are put in random order."""
    tags = [t.strip() for t in caption.split(",") if t.strip()]
    head, tail = tags[:keep_tokens], tags[keep_tokens:]
    rng.shuffle(tail)
    return ", ".join(head + tail)


def epoch_plan(items: list[TrainItem], *, epoch: int, seed: int, repeats, batch_size: int, resolution: int,
               buckets: bool, flip: bool, shuffle_captions: bool, keep_tokens: int,
               balance: bool = False) -> list[list[Sample]]:
    """The micro-batches of one epoch, the same for the same seed and epoch (what makes resume exact).
    Every micro-batch holds images of one bucket; the last of a bucket may be smaller. Several subjects' items are
    drawn in one shuffled order, each as often as appearances() says."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = [i for i, n in enumerate(appearances(items, repeats, balance)) for _ in range(n)]
    rng.shuffle(order)
    by_bucket: dict[tuple[int, int], list[Sample]] = {}
    for i in order:
        caption = shuffled_caption(items[i].caption, keep_tokens, rng) if shuffle_captions else items[i].caption
        sample = Sample(i, flip and rng.random() < 0.5, caption)
        by_bucket.setdefault(items[i].bucket(resolution, buckets), []).append(sample)
    batches = [samples[k:k + batch_size] for samples in by_bucket.values() for k in range(0, len(samples), batch_size)]
    rng.shuffle(batches)
    return batches


def steps_per_epoch(items: list[TrainItem], *, repeats, batch_size: int, grad_accum: int, resolution: int,
                    buckets: bool, processes: int = 1, balance: bool = False) -> int:
    """Optimizer steps in one epoch (at least 1); with several processes each micro-batch holds batch_size pictures
    of each process (the epoch plan's batches are batch_size x processes)."""
    counts: dict[tuple[int, int], int] = {}
    for item, n in zip(items, appearances(items, repeats, balance)):
        key = item.bucket(resolution, buckets)
        counts[key] = counts.get(key, 0) + n
    micro = sum(-(-n // (batch_size * processes)) for n in counts.values())
    return max(1, micro // grad_accum)


@dataclass(frozen=True)
class Share:
    """One process's part of a micro-batch that several processes share."""

    samples: list[Sample]  # what it computes: a copy of the batch's first picture when it is left without one
    rows: list[int]  # their places in the whole batch: its rows of the batch's random draws (BatchDraws)
    weight: float  # its loss's factor: its part of the batch x processes (0 for a copy), so the mean of the
    #                processes' gradients is the whole batch's mean whatever each one holds


def share(batch: list[Sample], processes: int, rank: int, per_process: int) -> Share:
    """Process `rank`'s part of micro-batch `batch` (up to `per_process` pictures each, in order). A batch smaller
    than the processes' whole (a bucket's last, a small dataset) leaves the last ones fewer pictures or none; one
    left without computes a copy weighed 0, since every process must take part in the gradients' all-reduce."""
    rows = list(range(rank * per_process, min((rank + 1) * per_process, len(batch))))
    if not rows:
        return Share([batch[0]], [0], 0.0)
    return Share([batch[i] for i in rows], rows, len(rows) * processes / len(batch))


def shares_note(plan: list[list[Sample]], processes: int, per_process: int) -> str:
    """What the log says about how an epoch's micro-batches are shared by `processes` (their pictures; how many
    leave a process without one)."""
    short = sum(1 for batch in plan if len(batch) <= (processes - 1) * per_process)
    said = (f"{processes} processes share each micro-batch of up to {processes * per_process} pictures "
            f"({per_process} each)")
    if not short:
        return said
    pictures = len({s.index for batch in plan for s in batch})
    return (f"{said}; {short} of the epoch's {len(plan)} micro-batches hold too few pictures for all of them (the "
            f"dataset gives {pictures} pictures x repeats): a process left without one computes a copy weighed 0, "
            f"so the gradient is still the batch's mean; more repeats or fewer processes keep every process busy")


def dataset_hash(items: list[TrainItem]) -> str:
    """A short hash of the images' bytes and captions: which data a model was trained on (goes in the header)."""
    h = hashlib.sha256()
    for item in items:
        h.update(item.path.name.encode())
        h.update(item.path.read_bytes())
        h.update(item.caption.encode())
        if item.mask is not None:
            h.update(item.mask.read_bytes())
    return h.hexdigest()[:16]
