"""Training masks: one `<stem>.mask.png` beside each training picture, saying how much each pixel counts in the loss.

White (255) is learnt, black (0) is ignored, grey is a weight in between (kohya's `--masked_loss` and OneTrainer
read masks the same way). Preparing with "Protect bystanders" paints the blurred bystander faces black, so the model
learns neither them nor the blur; a subject mask ("face" or "person") leaves the subject white and dims everything
else to `background_weight` (0.1, OneTrainer's default unmasked weight), bystanders still black.

A mask is made in the upright original's coordinates and cut and resized with its picture's own crop box, so it
always covers the same pixels as the picture it sits beside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from studio.faces.detect import Face

MASK_SUFFIX = ".mask.png"
SUBJECT_MASKS = ("none", "face", "person")  # what a subject mask keeps white: nothing (all white), the face, the person
DEFAULT_BACKGROUND_WEIGHT = 0.1  # OneTrainer's default weight for what a subject mask leaves out


def mask_path(picture: Path) -> Path:
    """Where the mask of a training picture lives: `0001.png` -> `0001.mask.png`."""
    picture = Path(picture)
    return picture.with_name(picture.stem + MASK_SUFFIX)


def is_mask(path: Path) -> bool:
    return Path(path).name.lower().endswith(MASK_SUFFIX)


@dataclass
class MaskLayers:
    """A picture's mask before cropping, in the upright original's pixels ("L" images of the original's size)."""

    weights: Image.Image  # 255 learn; a subject mask's background at background_weight * 255
    ignored: Image.Image  # 255 where a bystander's blur went (always black in the mask)


def original_layers(image: Image.Image, bystanders: list[Face], subject: Face | None, *, subject_mask: str = "none",
                    background_weight: float = DEFAULT_BACKGROUND_WEIGHT, others: list[Face] = ()) -> MaskLayers:
    """The layers of one upright original: bystanders' blurred areas (exactly what crop.blur_faces changes) and,
    with a subject mask, the subject's face or person (`others`: the other people's faces, whom it leaves out)."""
    from studio.data.crop import blurred_area

    check_subject_mask(subject_mask, background_weight)
    weights = Image.new("L", image.size, 255)
    if subject_mask != "none" and subject is not None:
        from studio.faces.segment import face_area_box, person_area

        weights = Image.new("L", image.size, round(background_weight * 255))
        if subject_mask == "face":
            from PIL import ImageDraw

            ImageDraw.Draw(weights).ellipse(face_area_box(subject, image.size), fill=255)
        else:
            weights.paste(255, (0, 0), person_area(image, subject, others))
    return MaskLayers(weights, blurred_area(image.size, bystanders))


def framed_mask(layers: MaskLayers, box: tuple[int, int, int, int], size: tuple[int, int]) -> Image.Image:
    """The mask of a training picture cut from the original at `box` and resized to `size`, as crop.frame cuts the
    picture. A pixel that any ignored pixel reaches when shrinking stays black: the picture's LANCZOS filter reaches
    3 source pixels out, so the ignored area grows by that much; resizing never lets blur back in."""
    from PIL import ImageFilter

    weights, ignored = layers.weights.crop(box), layers.ignored.crop(box)
    if weights.size != tuple(size):
        weights = weights.resize(size, Image.Resampling.BOX)
        ignored = ignored.resize(size, Image.Resampling.BOX).filter(ImageFilter.MaxFilter(7))
    out = np.asarray(weights, dtype=np.uint8).copy()
    out[np.asarray(ignored) > 0] = 0
    return Image.fromarray(out, "L")


def check_subject_mask(subject_mask: str, background_weight: float) -> None:
    if subject_mask not in SUBJECT_MASKS:
        raise ValueError(f"`subject_mask` must be one of {', '.join(SUBJECT_MASKS)} but is {subject_mask!r}")
    if not 0.0 <= background_weight <= 1.0:
        raise ValueError(f"`background_weight` must be between 0 and 1 but is {background_weight}")


def read_mask(path: Path, size: tuple[int, int] | None = None) -> Image.Image:
    """A mask file as an "L" image; when `size` is given it must match (a mask of another size would mark other
    pixels than its picture's)."""
    with Image.open(path) as im:
        mask = im.convert("L") if im.mode != "L" else im.copy()
    if size is not None and mask.size != tuple(size):
        raise ValueError(f"mask {Path(path).name} is {mask.size[0]}x{mask.size[1]} but its picture is "
                         f"{size[0]}x{size[1]}: paint it again or delete it")
    return mask


def mask_png(mask: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    mask.convert("L").save(buffer, "PNG", compress_level=6)  # masks are flat: small at any level
    return buffer.getvalue()


def overlay(picture: Image.Image, mask: Image.Image | None) -> Image.Image:
    """The picture as the loss sees it: ignored pixels tinted red, partly weighted ones dimmed toward their weight."""
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float32)
    if mask is None:
        return Image.fromarray(rgb.astype(np.uint8))
    w = np.asarray(mask.convert("L").resize(picture.size), dtype=np.float32)[..., None] / 255.0
    shown = rgb * (0.35 + 0.65 * w)
    red = np.array([230.0, 30.0, 30.0])
    shown = np.where(w == 0, 0.45 * rgb + 0.55 * red, shown)
    return Image.fromarray(np.clip(shown, 0, 255).astype(np.uint8))


def painted_mask(old: Image.Image | None, ignored: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A mask from the Dataset tab's painter: black where `ignored` is painted ("L", 255 = painted), and elsewhere
    the old mask's weight, except that a pixel that was black and is no longer painted is learnt again (white)."""
    ignored = ignored.convert("L")
    if ignored.size != tuple(size):
        ignored = ignored.resize(size, Image.Resampling.NEAREST)
    base = np.full((size[1], size[0]), 255, np.uint8) if old is None else np.asarray(old.convert("L"), np.uint8).copy()
    base[base == 0] = 255
    base[np.asarray(ignored) > 127] = 0
    return Image.fromarray(base, "L")
