"""Where and in what a base model generates: its dtype (the family's half precision on a GPU, bf16 where the family
needs it and the GPU has it), whether it fits the GPU or is offloaded to the CPU (a model at a time, or layer by layer)
with the reason in words, and whether a picture is decoded in tiles. Pure decisions; the model cache applies them."""

from __future__ import annotations

from dataclasses import dataclass

from studio.settings import OFFLOADS
# What generation needs on the GPU beside the weights: the denoiser's activations at 1024 px, the text encoders' and
# the VAE's working memory (its decode is tiled above TILE_ABOVE_PIXELS). A model fits when weights + this fit.
HEADROOM_BYTES = 2 * 10**9
# Pictures larger than this are decoded (and encoded, for img2img) by the VAE in tiles: a 2048 px decode of SD's VAE
# alone needs several GB at once, more than a 12-16 GB card has left beside the weights.
TILE_ABOVE_PIXELS = 1536 * 1536
GB = 10**9


def generation_dtype(family, device: str, asked: str = "auto", *, has_bf16: bool | None = None):
    """The dtype a base of `family` generates in on `device`: `asked` (Settings.dtype) when not auto; auto is float32
    on the CPU and, on a GPU, the family's half precision (`ModelFamily.generation_dtype`): fp16 for the SD UNets,
    bf16 for the flow transformers where the GPU has bf16 (`has_bf16`; None: ask torch), else fp16."""
    import torch

    if asked != "auto":
        return getattr(torch, asked)
    if not device.startswith("cuda"):
        return torch.float32
    wanted = family.generation_dtype if family is not None else "fp16"
    if wanted == "bf16":
        if has_bf16 is None:
            has_bf16 = torch.cuda.is_bf16_supported()
        return torch.bfloat16 if has_bf16 else torch.float16
    return torch.float16


@dataclass(frozen=True)
class Placement:
    """How a loaded base sits on the device: `offload` none (all on the GPU), model (each model moved in whole while
    it runs: diffusers' enable_model_cpu_offload) or sequential (layer by layer: enable_sequential_cpu_offload,
    slowest); `note`: what the user reads where they look ("" when there is nothing to say)."""

    offload: str = "none"
    note: str = ""


def choose_placement(asked: str, *, needed: int, largest: int, free: int | None, dtype_name: str = "") -> Placement:
    """`asked` (Settings.offload) applied to a model of `needed` bytes whose largest part is `largest` bytes, on a
    GPU with `free` bytes free (None: no GPU, where only an offload asked for is applied). auto: on the GPU when the
    weights and HEADROOM_BYTES fit; else a model at a time when the largest part and the headroom fit; else layer by
    layer."""
    if asked not in OFFLOADS:
        raise ValueError(f"`offload` must be one of {', '.join(OFFLOADS)} but is {asked!r}")
    needs = f"the model needs {needed / GB:.1f} GB{f' in {dtype_name}' if dtype_name else ''}"
    sizes = needs if free is None else f"{needs}, the GPU has {free / GB:.1f} GB free"
    if asked in ("model", "sequential"):
        how = "a model at a time" if asked == "model" else "layer by layer"
        return Placement(asked, f"offloaded to the CPU ({how}, as --offload asks): {sizes}")
    if asked == "none" or free is None or needed + HEADROOM_BYTES <= free:
        return Placement("none")
    if largest + HEADROOM_BYTES <= free:
        return Placement("model", f"offloaded to the CPU (a model at a time): {sizes}")
    return Placement("sequential", f"offloaded to the CPU (layer by layer, slow: its largest part alone needs "
                                   f"{largest / GB:.1f} GB): {sizes}")


def vae_tiling(width: int, height: int) -> str:
    """A note when a `width` x `height` picture is decoded in tiles (above TILE_ABOVE_PIXELS), else ""."""
    if width * height <= TILE_ABOVE_PIXELS:
        return ""
    side = int(TILE_ABOVE_PIXELS ** 0.5)
    return (f"the VAE worked on the {width}x{height} picture in tiles (it does above {side}x{side}, so the decode "
            f"fits beside the weights)")
