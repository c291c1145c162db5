"""What a training step minimises: the family's objective (ModelFamily.objective: DDPM noise or v prediction for the
UNet families, flow matching for FLUX.1 and later), which returns the squared error as a map over latent pixels
(B, C, h, w) and a weight per sample (B,), reduced here alike for every family, a dataset's masks (at latent size)
weighing the map the same way.
"""

from __future__ import annotations


def make_objective(parts, config):
    return parts.family.objective(parts, config)


def reduce(error, weight, mask=None):
    """The step's loss: each sample's mean squared error, weighted, averaged over the batch. A mask (B, 1, h, w) of
    loss weights makes each sample's error a weighted mean over its pixels: sum(error * mask) / sum(mask), so the
    loss keeps its scale however much of a picture is masked, pixels of weight 0 add nothing (a picture masked
    entirely adds 0), and an all-ones mask gives the plain mean."""
    if mask is None:
        per_sample = error.mean(dim=[1, 2, 3])
    else:
        mask = mask.to(error.device, error.dtype).expand_as(error)
        per_sample = (error * mask).sum(dim=[1, 2, 3]) / mask.sum(dim=[1, 2, 3]).clamp(min=1e-8)
    return (per_sample * weight).mean()


def mask_weights(mask, unmasked_weight: float):
    """A mask's loss weights with black lifted to `unmasked_weight` (grey in proportion): 0 ignores what is black."""
    return mask if mask is None or not unmasked_weight else unmasked_weight + (1.0 - unmasked_weight) * mask
