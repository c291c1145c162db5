"""Frame each picture for training: a square around the subject's face (or the centre, or an aspect bucket),
LANCZOS resize to the model's resolution without ever upscaling, and blur bystanders' faces."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

from studio.faces.detect import Face

CROP_MODES = ("face", "center", "keep-aspect")
SIZES = (512, 768, 1024)


@dataclass(frozen=True)
class CropSettings:
    # Side of the square (or the area of the aspect bucket, as size x size) the model trains at.
    size: int = 512
    # face: square centred on the subject's face; center: centre square; keep-aspect: the closest bucket.
    mode: str = "face"
    # Room left on each side of the face, in face widths: 1.0 gives a head-and-shoulders square 3 faces wide.
    margin: float = 1.0

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"`size` must be one of {', '.join(map(str, SIZES))} but is {self.size}")
        if self.mode not in CROP_MODES:
            raise ValueError(f"`crop` must be one of {', '.join(CROP_MODES)} but is {self.mode!r}")
        if not 0.0 <= self.margin <= 10.0:
            raise ValueError(f"`margin` must be between 0 and 10 but is {self.margin}")


@dataclass
class Framed:
    image: Image.Image
    box: tuple[int, int, int, int]  # (left, top, right, bottom) cut from the upright original
    flags: list[str]


def bucket(width: int, height: int, size: int) -> tuple[int, int]:
    """The aspect bucket (multiples of 64, area at most size x size, aspect within 1:2 .. 2:1) closest to width/height."""
    aspect = min(max(width / height, 0.5), 2.0)
    best = (size, size)
    for w in range(size // 2, size * 2 + 1, 64):
        h = (size * size // w) // 64 * 64
        if h < 64:
            continue
        if abs(w / h - aspect) < abs(best[0] / best[1] - aspect):
            best = (w, h)
    return best


def _window(center: float, length: int, limit: int) -> int:
    """Start of a window of `length` centred on `center`, moved to lie inside [0, limit]."""
    return int(min(max(round(center - length / 2), 0), limit - length))


def frame(image: Image.Image, subject: Face | None, settings: CropSettings) -> Framed:
    """Cut and resize one upright picture; flags say when no face guided the crop or the picture was too small."""
    # 1. The crop's shape: a square, or the aspect bucket closest to the picture
    width, height = image.size
    flags: list[str] = []
    if settings.mode == "keep-aspect":
        target = bucket(width, height, settings.size)
    else:
        target = (settings.size, settings.size)
    scale = min(width / target[0], height / target[1])  # the largest crop of that shape that fits
    crop_w, crop_h = round(target[0] * scale), round(target[1] * scale)

    # 2. Its size and centre: around the face when asked and found, else the middle
    cx, cy = width / 2, height / 2
    if settings.mode != "center":
        if subject is not None:
            cx, cy = subject.center
            if settings.mode == "face":
                # never tighter than the training size when the picture has the pixels: tight crops would upscale
                side = max(round(max(subject.width, subject.height) * (1 + 2 * settings.margin)), settings.size)
                crop_w = crop_h = min(side, crop_w)
        elif settings.mode == "face":
            flags.append("no face found: centre crop")
    left, top = _window(cx, crop_w, width), _window(cy, crop_h, height)
    box = (left, top, left + crop_w, top + crop_h)

    # 3. Resize down with LANCZOS; never up
    cut = image.crop(box)
    if crop_w >= target[0] and crop_h >= target[1]:
        cut = cut.resize(target, Image.Resampling.LANCZOS)
    else:
        flags.append(f"small: crop is {crop_w}x{crop_h} px, less than {target[0]}x{target[1]}; kept, not upscaled")
    return Framed(cut, box, flags)


def _blur_region(face: Face, size: tuple[int, int]):
    """Where a face's blur goes: its box grown by 30% (clipped to the picture), and the blur radius; None when the
    grown box lies outside the picture."""
    grow_w, grow_h = face.width * 0.3, face.height * 0.3
    left, top = max(0, int(face.box[0] - grow_w)), max(0, int(face.box[1] - grow_h))
    right, bottom = min(size[0], int(face.box[2] + grow_w)), min(size[1], int(face.box[3] + grow_h))
    if right <= left or bottom <= top:
        return None
    return (left, top, right, bottom), max(6.0, max(face.width, face.height) / 4)


def _soft_ellipse(size: tuple[int, int], radius: float) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, size[0] - 1, size[1] - 1), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(max(2.0, radius / 4)))


def blur_faces(image: Image.Image, faces: list[Face]) -> Image.Image:
    """A copy of `image` with each face's box (grown by 30%) blurred past recognition inside a soft ellipse."""
    out = image.copy()
    for face in faces:
        found = _blur_region(face, image.size)
        if found is None:
            continue
        (left, top, right, bottom), radius = found
        region = out.crop((left, top, right, bottom))
        blurred = region.resize((max(1, region.width // 8), max(1, region.height // 8)), Image.Resampling.BILINEAR)
        blurred = blurred.resize(region.size, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(radius))
        out.paste(blurred, (left, top), _soft_ellipse(region.size, radius))
    return out


def blurred_area(size: tuple[int, int], faces: list[Face]) -> Image.Image:
    """An "L" picture of `size`: 255 wherever blur_faces changes a pixel (its soft ellipses, fringe included), else 0."""
    area = Image.new("L", size, 0)
    for face in faces:
        found = _blur_region(face, size)
        if found is None:
            continue
        (left, top, right, bottom), radius = found
        ellipse = _soft_ellipse((right - left, bottom - top), radius).point(lambda v: 255 if v > 0 else 0)
        area.paste(255, (left, top), ellipse)
    return area


def inside(face: Face, box: tuple[int, int, int, int]) -> bool:
    """Whether the face's centre lies in `box`."""
    x, y = face.center
    return box[0] <= x < box[2] and box[1] <= y < box[3]
