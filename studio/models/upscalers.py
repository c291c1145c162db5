"""Model upscalers (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ...): the files models/upscale/ may hold and what a
loaded one is. The networks themselves come from spandrel, a maintained library of their architectures; the loader
(models/loaders.py) reads the weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# `.safetensors` always; `.pth` only with --allow-pickle, and then through spandrel's restricted unpickler (tensors
# and ordered dicts only, so a booby-trapped file fails instead of running code).
UPSCALER_SUFFIXES = (".safetensors", ".pth")


@dataclass
class UpscalerModel:
    """A loaded upscaler: its spandrel descriptor and what it does.

    `module` is the network (the cache counts its bytes); calling `descriptor` on a (1, 3, H, W) RGB tensor in [0, 1],
    on `device` in `dtype`, gives (1, 3, H*scale, W*scale), padded and cropped to the network's size rules.
    """

    name: str  # the file's stem: what the parameters text calls it ("4x-UltraSharp")
    path: Path
    architecture: str  # spandrel's name for it ("ESRGAN", "RealESRGAN Compact", "SwinIR", ...)
    scale: int
    tiling: str  # spandrel's ModelTiling name: "SUPPORTED", "DISCOURAGED" or "INTERNAL" (it tiles by itself)
    descriptor: object = None  # spandrel.ImageModelDescriptor
    module: object = None  # torch.nn.Module, descriptor.model
    device: str = "cpu"
    dtype: object = None  # torch dtype the weights are in
