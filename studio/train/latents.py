"""VAE latents and text embeddings of a dataset, computed once and kept on disk while the data and settings stay the same.

The cache key covers the base model, the images (name, size, mtime) and, for a masked run, their masks, the resolution
and bucketing, and whether flipped copies are needed, so changing any of them computes a new cache rather than reusing
a wrong one. Masks are kept beside the latents at latent size. Each file's header names the dataset folder it was made
from (`studio.dataset`), so deleting a subject can find the caches derived from their pictures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from studio import fileio
from studio.train.data import TrainItem, latent_mask, load_mask, load_pixels
from studio.train.parts import Conditioning, Parts, encode_text


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def model_stamp(parts: Parts) -> list:
    """What identifies the base's weights: its id and, for local files, the path and mtime."""
    index = getattr(parts.pipe, "name_or_path", "") or ""
    path = Path(index)
    return [parts.base_id, str(path), path.stat().st_mtime if path.exists() else 0]


def owner(items: list[TrainItem]) -> dict[str, str]:
    """The header that says which dataset folder a cache was made from (several subjects: the first, and every
    one in `studio.datasets`)."""
    if not items:
        return {}
    folders = list(dict.fromkeys(str(i.path.parent.resolve()) for i in items))
    return {"studio.dataset": folders[0], **({"studio.datasets": json.dumps(folders)} if len(folders) > 1 else {})}


class Latents:
    """Latent distributions (mean, std), each (C, h, w), per (item, flipped), and with `masks` the items' masks at
    latent size, (1, h, w). Encoded on demand when not cached."""

    def __init__(self, parts: Parts, items: list[TrainItem], *, resolution: int, buckets: bool, masks: bool = False):
        self.parts, self.items, self.resolution, self.buckets = parts, items, resolution, buckets
        self.masked = masks and any(i.mask is not None for i in items)
        self.table: dict[tuple[int, bool], tuple] = {}
        self.masks: dict[tuple[int, bool], object] = {}  # (1, h, w) loss weights, for items with a mask
        self.sizes: dict[int, tuple] = {}  # SDXL size conditioning per item

    def cache_file(self, cache_dir: Path, flips: bool) -> Path:
        images = [[i.path.name, i.path.stat().st_size, i.path.stat().st_mtime] for i in self.items]
        key = [model_stamp(self.parts), images, self.resolution, self.buckets, flips]
        if self.masked:  # unmasked runs keep the key they always had
            key.append([[i.mask.name, i.mask.stat().st_size, i.mask.stat().st_mtime] if i.mask else None
                        for i in self.items])
        return cache_dir / f"latents-{_key(*key)}.safetensors"

    def fill(self, cache_dir: Path, flips: bool, progress) -> bool:
        """Load the cache file or encode every image (and its mirror when `flips`) and write it; True if it was read."""
        import torch
        from safetensors.torch import load_file, save_file

        path = self.cache_file(cache_dir, flips)
        if path.is_file():
            state = load_file(str(path))
            for key, value in state.items():
                index, flip, what = key.split(":")
                if what == "size":
                    self.sizes[int(index)] = tuple(int(x) for x in value.tolist())
                elif what == "mask":
                    self.masks[(int(index), flip == "1")] = value
                else:
                    entry = self.table.setdefault((int(index), flip == "1"), [None, None])
                    entry[0 if what == "mean" else 1] = value
            self.table = {k: tuple(v) for k, v in self.table.items()}
            return True
        state = {}
        variants = (False, True) if flips else (False,)
        for index in range(len(self.items)):
            for flip in variants:
                mean, std = self.encode(index, flip)
                self.table[(index, flip)] = (mean, std)
                state[f"{index}:{int(flip)}:mean"], state[f"{index}:{int(flip)}:std"] = mean, std
                if (index, flip) in self.masks:
                    state[f"{index}:{int(flip)}:mask"] = self.masks[(index, flip)]
            state[f"{index}:0:size"] = torch.tensor(self.sizes[index])
            progress((index + 1) / len(self.items), f"caching latents {index + 1}/{len(self.items)}")
        with fileio.atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=owner(self.items))
        return False

    def encode(self, index: int, flip: bool):
        """Encode one image: the latent distribution's mean and std, (C, h, w) each, on the CPU."""
        import torch

        item = self.items[index]
        pixels, size = load_pixels(item, item.bucket(self.resolution, self.buckets), flip)
        self.sizes[index] = size
        vae = self.parts.vae
        with torch.no_grad():
            mean, std = self.parts.family.encode_latents(vae, pixels[None].to(vae.device, vae.dtype))
        mean = mean[0].float().cpu().contiguous()
        if self.masked and item.mask is not None:  # the same cut and flip as the picture, then at latent size
            pixel_mask = load_mask(item, item.bucket(self.resolution, self.buckets), flip)
            self.masks[(index, flip)] = latent_mask(pixel_mask, tuple(mean.shape[-2:])).contiguous()
        return mean, std[0].float().cpu().contiguous()

    def batch(self, indices: list[int], flips: list[bool]):
        """(mean, std), each (B, C, h, w), for a micro-batch; from the cache or freshly encoded."""
        import torch

        pairs = [self.table.get((i, f)) or self.encode(i, f) for i, f in zip(indices, flips)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def mask_batch(self, indices: list[int], flips: list[bool], latent_size: tuple[int, int]):
        """(B, 1, h, w) loss weights for a micro-batch (all ones for an item without a mask), or None when the run
        is not masked or no item of the batch has a mask. Call after batch(), which fills what is not cached."""
        import torch

        if not self.masked:
            return None
        found = [self.masks.get((i, f)) for i, f in zip(indices, flips)]
        if all(m is None for m in found):
            return None
        return torch.stack([m if m is not None else torch.ones((1, *latent_size)) for m in found])


class TextEmbeddings:
    """Text conditioning per caption (hidden states and pooled, see parts.Conditioning), for runs whose text
    encoders stay frozen; FLUX's are let go once these are filled."""

    def __init__(self, parts: Parts, max_sequence_length: int = 0):
        self.parts, self.max_sequence_length = parts, max_sequence_length
        self.table: dict[str, Conditioning] = {}

    def fill(self, cache_dir: Path, captions: list[str], made_from: dict[str, str] | None = None) -> bool:
        import torch
        from safetensors.torch import load_file, save_file

        captions = sorted(set(captions))
        length = self.parts.sequence_length(self.max_sequence_length)
        path = cache_dir / f"text-{_key(model_stamp(self.parts), captions, length)}.safetensors"
        if path.is_file():
            state = load_file(str(path))
            for i, caption in enumerate(captions):
                self.table[caption] = Conditioning(state[f"{i}:hidden"], state.get(f"{i}:pooled"))
            return True
        state = {}
        with torch.no_grad():
            for i, caption in enumerate(captions):
                row = encode_text(self.parts, [caption], max_sequence_length=self.max_sequence_length).row(0)
                state[f"{i}:hidden"] = row.hidden.float().cpu().contiguous()
                if row.pooled is not None:
                    state[f"{i}:pooled"] = row.pooled.float().cpu().contiguous()
                self.table[caption] = Conditioning(state[f"{i}:hidden"], state.get(f"{i}:pooled"))
        with fileio.atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=made_from)
        return False

    def batch(self, captions: list[str]) -> Conditioning:
        return Conditioning.stack([self.table[c] for c in captions])
