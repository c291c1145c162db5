"""Inpainting's pictures: the mask a user painted, the region the model works on (the whole picture, or "only
masked": the mask's box with padding, at the model's size), and the paste-back that leaves every pixel outside the
blurred mask exactly as it was (the pipeline's VAE round trip alone would change them)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageFilter

from studio.generate.pictures import fit_size

INPAINT_AREAS = ("whole", "only masked")  # A1111's "Whole picture" and "Only masked"


def binary_mask(mask: Image.Image) -> Image.Image:
    """An "L" mask of 0 and 255, white = repaint, as A1111 reads one: a layer with transparency counts where it is
    painted (opaque), any other picture where it is light."""
    if mask.mode in ("RGBA", "LA", "PA") or "transparency" in mask.info:
        alpha = mask.convert("RGBA").getchannel("A")
        gray = alpha if alpha.getextrema() != (255, 255) else mask.convert("L")
    else:
        gray = mask.convert("L")
    return gray.point(lambda v: 255 if v > 127 else 0)


@dataclass
class InpaintPlan:
    """What the pipeline gets and how its answer goes back into the picture."""

    original: Image.Image  # the picture, RGB
    paste_mask: Image.Image  # "L", the picture's size: the blurred mask, the weight of the new pixels
    box: tuple[int, int, int, int] | None  # "only masked": the region of `original` worked on; None: all of it
    image: Image.Image  # that region at the working size
    mask: Image.Image  # "L" 0/255 at the working size, white = repaint

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def plan_inpaint(image: Image.Image, mask: Image.Image, *, blur: int, area: str, padding: int,
                 size: tuple[int, int] | None, native: int) -> InpaintPlan:
    """The working picture and mask for `area`.

    size: the working (width, height); None picks it: the picture's own size (rounded down to multiples of 8) for
          "whole", for "only masked" the region's aspect with its longer side `native` (the model's own size, so a
          small region gets the model's full resolution).
    """
    # 1. The mask, and the blurred copy that weighs the paste-back (A1111 blurs outwards from the painted edge).
    original = image.convert("RGB")
    binary = binary_mask(mask)
    if binary.getbbox() is None:
        raise ValueError("`mask_image` is empty: paint (white) where the picture should change")
    paste_mask = binary.filter(ImageFilter.GaussianBlur(blur)) if blur else binary

    # 2. The region worked on, at the working size.
    box = None
    if area == "only masked":
        if size is None:
            x0, y0, x1, y1 = paste_mask.getbbox()
            padded = (min(x1 + padding, original.width) - max(x0 - padding, 0),
                      min(y1 + padding, original.height) - max(y0 - padding, 0))
            size = fit_size(padded, native)
        from diffusers.image_processor import VaeImageProcessor

        # The mask's box plus padding, grown to the working aspect and kept inside the picture (A1111's rule).
        box = VaeImageProcessor.get_crop_region(paste_mask, size[0], size[1], pad=padding)
        region, region_mask = original.crop(box), binary.crop(box)
    else:
        size = size or (max(64, original.width // 8 * 8), max(64, original.height // 8 * 8))
        region, region_mask = original, binary
    work = region if region.size == size else region.resize(size, Image.Resampling.LANCZOS)
    work_mask = region_mask if region_mask.size == size else region_mask.resize(size, Image.Resampling.BILINEAR)
    return InpaintPlan(original, paste_mask, box, work, work_mask.point(lambda v: 255 if v > 127 else 0))


def paste_back(plan: InpaintPlan, result: Image.Image) -> Image.Image:
    """The pipeline's `result` (at the working size) back in the picture: resized into its region, then blended
    by the blurred mask, so pixels where that mask is 0 keep the original's bytes."""
    result = result.convert("RGB")
    if plan.box is None:
        canvas = result if result.size == plan.original.size else result.resize(plan.original.size,
                                                                                Image.Resampling.LANCZOS)
    else:
        x0, y0, x1, y1 = plan.box
        canvas = plan.original.copy()
        canvas.paste(result.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS), (x0, y0))
    return Image.composite(canvas, plan.original, plan.paste_mask)
