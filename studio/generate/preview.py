"""The live preview while generating: every few steps, the latents' approximate colours as a small picture (no VAE
decode). The colours are a linear map from latent channels to RGB: the family's declared one for its own VAE
(ModelFamily.latent_rgb), else fitted once from the model's own VAE by least squares over flat colours (a builtin's
small VAE, a family that declares none)."""

from __future__ import annotations

import weakref
from typing import Callable

PREVIEW_EVERY = 2  # steps between two previews
Preview = Callable[[object], None]  # receives the batch's preview (a PIL image), or None when there can be none
_FITTED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # a VAE module -> its fitted (factors, bias)
_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)  # each channel's values of the flat colours the fit encodes (125 colours)


def latent_colors(family, pipe):
    """(factors (C, 3), bias (3,)) as float tensors: the family's declared colours of its own VAE, or fitted."""
    import torch

    declared = family.latent_rgb(pipe)
    if declared is not None:
        return torch.tensor(declared[0]), torch.tensor(declared[1])
    vae = pipe.vae
    if vae not in _FITTED:
        _FITTED[vae] = fit_colors(family, vae)
    return _FITTED[vae]


def fit_colors(family, vae):
    """The least-squares map from the latent at the middle of a flat-coloured picture (as the denoiser sees it; the
    edges are the VAE's padding) to its colour in [-1, 1], over 125 flat colours at 64 px: (factors (C, 3), bias
    (3,)). A linear map is only approximate: a small VAE's greens read greyish."""
    import torch

    rgb = torch.tensor([(r, g, b) for r in _LEVELS for g in _LEVELS for b in _LEVELS]) * 2 - 1  # (125, 3) in [-1, 1]
    param = next(vae.parameters())
    latents = []
    with torch.no_grad():
        for chunk in rgb.split(25):  # a few pictures at a time: a full-size VAE's activations stay small
            pixels = chunk[:, :, None, None].expand(-1, -1, 64, 64).to(param.device, param.dtype)
            encoded = family.normalize_latents(vae, family.encode_latents(vae, pixels)[0]).float().cpu()
            h, w = encoded.shape[2:]
            latents.append(encoded[:, :, h // 4:h - h // 4, w // 4:w - w // 4].mean(dim=(2, 3)))  # (25, C)
    design = torch.cat([torch.cat(latents), torch.ones(len(rgb), 1)], dim=1)  # (125, C + 1)
    solution = torch.linalg.lstsq(design, rgb).solution  # (C + 1, 3)
    return solution[:-1], solution[-1]


def preview_picture(family, pipe, latents, size: tuple[int, int]):
    """The picture `latents` (the pipeline's, mid-sampling) approximately show, the batch side by side, each at
    `size` (width, height); None when its latents do not have its VAE's channels (nothing to colour them by)."""
    import numpy as np
    import torch
    from PIL import Image

    factors, bias = latent_colors(family, pipe)
    working = family.preview_latents(pipe, latents, size).detach().float().cpu()  # (B, C, h, w)
    if working.ndim != 4 or working.shape[1] != factors.shape[0]:
        return None
    rgb = torch.einsum("bchw,cr->bhwr", working, factors) + bias  # (B, h, w, 3) in about [-1, 1]
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    row = Image.fromarray(np.concatenate(list(pixels), axis=1), "RGB")  # (h, B * w, 3)
    return row.resize((size[0] * len(pixels), size[1]), Image.Resampling.BILINEAR)
