"""Upscaling a picture: Lanczos, or a model upscaler from models/upscale/ borrowed from the cache and run in tiles
with feathered seams, so a 4x upscale of a 1024 px picture fits in memory."""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from studio.fields import setting
from studio.generate.parameters import add_fields, save_png
from studio.generate.pictures import open_picture
from studio.progress import Cancelled, ProgressFn, StopFn, never_stop, no_progress

LANCZOS = "Lanczos"  # A1111's name for the plain resize; always available, needs no file
DEFAULT_TILE = 512  # input pixels per tile side (ComfyUI's choice); 0 runs the whole picture at once
DEFAULT_OVERLAP = 32  # input pixels two tiles share, blended linearly so no seam shows
MAX_PASSES = 3  # A1111 runs a model up to three times to reach a scale past its own, then resizes exactly
MAX_SIDE = 8192
# A1111's latent upscale modes work on the latents inside a generation; there is no picture-space equivalent here.
LATENT_MODES = ("Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
                "Latent (nearest)", "Latent (nearest-exact)")


def is_lanczos(name: str) -> bool:
    return (name or "").strip().lower() == LANCZOS.lower()


def check_upscaler_name(name: str, argument: str = "upscaler") -> str:
    """Lanczos (any case) as "Lanczos", else the model's name as given; A1111's latent modes are refused by name."""
    name = (name or "").strip()
    if not name:
        raise ValueError(f"`{argument}` is empty: choose Lanczos or a model in models/upscale/")
    if is_lanczos(name):
        return LANCZOS
    if name in LATENT_MODES:
        raise ValueError(f"`{argument}` {name!r} is A1111's latent upscale, which is not available here; choose "
                         f"Lanczos or a model in models/upscale/")
    return name


@dataclass
class UpscaleRequest:
    """One upscale, each setting declared once (studio.fields): Clean-up's Upscale, `upscale` and /upscale."""

    image: object = setting(label="Picture", parse=open_picture, help="the picture (its PNG parameters are kept)")
    upscaler: str = setting(LANCZOS, label="Upscaler", names="upscaler",
                            help="Lanczos, or a model in models/upscale/ (its file stem) or a path")
    # a model past its own scale runs again, then Lanczos to size
    scale: float = setting(4.0, label="Scale", span=(1, 8, 0.5), help="output side / input side, 1 to 8")
    tile: int = setting(DEFAULT_TILE, label="Tile size, pixels", help="model upscalers: tile side in input pixels "
                                                                      "(0: the whole picture at once)")
    tile_overlap: int = setting(DEFAULT_OVERLAP, label="Tile overlap, pixels", help="pixels two tiles share")
    parameters: str = ""  # the picture's own parameters text, carried into the upscaled PNG
    save: bool = True
    out_dir: Path | None = None  # None: workspace/outputs/<day>/

    def check(self) -> "UpscaleRequest":
        if not isinstance(self.image, Image.Image):
            raise ValueError(f"`image` must be a picture but is {type(self.image).__name__}")
        self.upscaler = check_upscaler_name(self.upscaler)
        if not 1 <= self.scale <= 8:
            raise ValueError(f"`scale` must be between 1 and 8 but is {self.scale}")
        out = target_size(self.image.size, self.scale)
        if max(out) > MAX_SIDE:
            raise ValueError(f"`scale` {self.scale:g} makes the {self.image.width}x{self.image.height} picture "
                             f"{out[0]}x{out[1]}, over the {MAX_SIDE} px limit")
        check_tiles(self.tile, self.tile_overlap)
        return self


def check_tiles(tile: int, overlap: int) -> None:
    if tile != 0 and tile < 32:
        raise ValueError(f"`tile` must be 0 (no tiling) or at least 32 pixels but is {tile}")
    if tile and not 0 <= overlap <= tile // 4:
        raise ValueError(f"`tile_overlap` must be between 0 and a quarter of the tile ({tile // 4}) but is {overlap}")


@dataclass
class Upscaled:
    """How a picture was upscaled, for the parameters text and the user."""

    upscaler: str  # "Lanczos" or the model's name
    size: tuple[int, int]
    model_scale: int | None = None  # the model's own factor; None for Lanczos
    passes: int = 0  # model passes run (0 for Lanczos)
    tile: int | None = None  # tile side in input pixels; None when the picture went through whole
    notes: list[str] = field(default_factory=list)


@dataclass
class UpscaleResult:
    image: Image.Image
    info: Upscaled
    parameters: str
    path: Path | None
    seconds: float


def target_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def upscale(studio, request: UpscaleRequest, *, progress: ProgressFn = no_progress,
            should_stop: StopFn = never_stop) -> UpscaleResult:
    """Upscale `request.image` by `request.scale`; the PNG keeps the picture's parameters and says how (A1111's
    `Postprocess upscale by` and `Postprocess upscaler`)."""
    started = time.perf_counter()
    request = replace(request).check()  # a copy: checking names Lanczos "Lanczos", the caller's stays as it was
    size = target_size(request.image.size, request.scale)
    image, info = upscale_to(studio, request.image, request.upscaler, size, tile=request.tile,
                             overlap=request.tile_overlap, progress=progress, should_stop=should_stop)
    text = add_fields(request.parameters, {"Postprocess upscale by": float(request.scale),
                                           "Postprocess upscaler": info.upscaler})
    path = None
    if request.save:
        out_dir = Path(request.out_dir or studio.settings.outputs_dir / dt.date.today().isoformat())
        path = save_png(image, text, out_dir, f"upscaled-{size[0]}x{size[1]}")
    return UpscaleResult(image, info, text, path, time.perf_counter() - started)


def upscale_to(studio, image: Image.Image, upscaler: str, size: tuple[int, int], *, tile: int = DEFAULT_TILE,
               overlap: int = DEFAULT_OVERLAP, progress: ProgressFn = no_progress,
               should_stop: StopFn = never_stop) -> tuple[Image.Image, Upscaled]:
    """`image` at exactly `size`: Lanczos, or the model (borrowed from the cache) run until the picture is at least
    that big (at most MAX_PASSES times), then Lanczos to the exact size, as A1111 does."""
    image = image.convert("RGB")
    upscaler = check_upscaler_name(upscaler)
    check_tiles(tile, overlap)
    if upscaler == LANCZOS:
        return image.resize(size, Image.Resampling.LANCZOS), Upscaled(LANCZOS, size)
    with studio.cache.borrow("upscaler", upscaler) as model:
        info = Upscaled(model.name, size, model.scale)
        if model.tiling == "INTERNAL":
            tile = 0
            info.notes.append(f"{model.name} tiles by itself; the picture went through whole")
        elif tile and model.tiling == "DISCOURAGED":
            info.notes.append(f"{model.architecture} works best untiled or with large tiles (tile {tile} px)")
        while info.passes < MAX_PASSES and (image.width < size[0] or image.height < size[1] or info.passes == 0):
            if should_stop():
                raise Cancelled("upscale cancelled")
            done = info.passes
            image, tiled = run_model(model, image, tile=tile, overlap=overlap, should_stop=should_stop,
                                     progress=lambda f, m: progress((done + f) / MAX_PASSES, m))
            info.passes += 1
            info.tile = tile if tiled else info.tile
            if model.scale == 1:
                break  # a restoration model: one pass cleans, more would not grow it
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    progress(1.0, "upscaled")
    return image, info


def run_model(model, image: Image.Image, *, tile: int, overlap: int, progress: ProgressFn = no_progress,
              should_stop: StopFn = never_stop) -> tuple[Image.Image, bool]:
    """One pass of an UpscalerModel over `image` (RGB); returns the picture at `model.scale` times the size and
    whether it went in tiles (only when it is larger than one tile)."""
    import numpy as np
    import torch

    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]  # (1, 3, H, W)
    tiled = bool(tile) and (x.shape[2] > tile or x.shape[3] > tile)
    with torch.inference_mode():
        if tiled:
            y = upscale_tiled(lambda t: model.descriptor(t.to(model.device, model.dtype)).float().cpu(), x,
                              model.scale, tile, overlap, progress=progress, should_stop=should_stop)
        else:
            y = model.descriptor(x.to(model.device, model.dtype)).float().cpu()
    pixels = (y[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255.0).round().astype(np.uint8)  # (H*s, W*s, 3)
    return Image.fromarray(pixels), tiled


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, size) of the tiles along one side: as many as A1111 places (the fewest tiles of `tile` pixels sharing
    at least `overlap`), each shrunk to the same size so neighbours share about `overlap` and no pixel is computed
    more often than it must be, spread evenly, the last flush with the edge. 1024 px in 512 px tiles with 32
    overlap: three tiles of 363 px at 0, 330, 661 (A1111's three 512 px tiles would compute 1536 px)."""
    if length <= tile:
        return [(0, length)]
    n = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (n - 1) * overlap) / n)
    return [(round(i * (length - size) / (n - 1)), size) for i in range(n)]


def _ramp(length: int, fade: int, fade_start: bool, fade_end: bool):
    """A tile's weight along one side: 1 inside, rising linearly over `fade` pixels at an edge shared with another
    tile (never 0, so every pixel has weight)."""
    import torch

    w = torch.ones(length)
    fade = min(fade, length // 2)
    if fade:
        up = torch.arange(1, fade + 1, dtype=torch.float32) / (fade + 1)
        if fade_start:
            w[:fade] = up
        if fade_end:
            w[length - fade:] = up.flip(0)
    return w


def upscale_tiled(fn, x, scale: int, tile: int, overlap: int, *, progress: ProgressFn = no_progress,
                  should_stop: StopFn = never_stop):
    """`fn` (a (1, C, h, w) -> (1, C, h*scale, w*scale) network) over `x` (1, C, H, W) in tiles of `tile` input
    pixels; overlapping outputs are blended with linear weights, accumulated in float32 on the CPU, so memory holds
    one tile's activations plus the output picture."""
    import torch

    _, c, h, w = x.shape
    ys, xs = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
    out = torch.zeros(1, c, h * scale, w * scale)
    weight = torch.zeros(1, 1, h * scale, w * scale)
    for i, (y0, th) in enumerate(ys):
        for j, (x0, tw) in enumerate(xs):
            if should_stop():
                raise Cancelled("upscale cancelled")
            o = fn(x[..., y0:y0 + th, x0:x0 + tw])  # (1, C, th*scale, tw*scale)
            m = (_ramp(th * scale, overlap * scale, y0 > 0, y0 + th < h)[:, None]
                 * _ramp(tw * scale, overlap * scale, x0 > 0, x0 + tw < w)[None, :])
            region = (..., slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale))
            out[region] += o * m
            weight[region] += m
            done = i * len(xs) + j + 1
            progress(done / (len(ys) * len(xs)), f"tile {done}/{len(ys) * len(xs)}")
    return out / weight
