"""Real face photos for the dataset and face tests: skimage's astronaut (Eileen Collins) and matplotlib's Grace Hopper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance


def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def hopper() -> Image.Image:
    """Grace Hopper's portrait, shipped inside matplotlib; face_recognition puts it ~0.7 from the astronaut."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(path) as im:
        return im.convert("RGB")


def astronaut_variants(n: int) -> list[Image.Image]:
    """`n` different pictures of the same face: crops, mirror, brightness, small rotations of the astronaut."""
    base = astronaut()
    out = []
    for i in range(n):
        im = base.crop((20 * (i % 3), 10 * (i % 4), 512 - 15 * (i % 2), 512))
        if i % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        im = ImageEnhance.Brightness(im).enhance(0.8 + 0.1 * (i % 4))
        im = im.rotate((i % 3 - 1) * 4, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
        out.append(im)
    return out


def hopper_variants(n: int) -> list[Image.Image]:
    """`n` different pictures of Grace Hopper: crops, mirror and brightness, as astronaut_variants."""
    base = hopper()
    out = []
    for i in range(n):
        im = base.crop((15 * (i % 3), 20 * (i % 4), 512 - 10 * (i % 2), 600))
        if i % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(ImageEnhance.Brightness(im).enhance(0.85 + 0.1 * (i % 3)))
    return out


# The eyes' centres (dlib's 68 landmarks) in each photo: (left x, y, right x, y).
_ASTRONAUT_EYES = (203.2, 101.5, 246.5, 104.2)
_HOPPER_EYES = (223.7, 192.3, 305.3, 189.2)


def astronaut_to_hopper(alpha: float, flip: bool = False, crop: int = 0) -> Image.Image:
    """A morph: the astronaut blended with Grace Hopper scaled and moved so their eyes meet. Its face walks from one
    identity to the other (face distance to the astronaut 0.16 at alpha 0.1, 0.36 at 0.3, 0.54 at 0.5, 0.69 at 1)."""
    a = astronaut()
    ax, ay, bx, _ = _ASTRONAUT_EYES
    hx, hy, kx, _ = _HOPPER_EYES
    scale = (bx - ax) / (kx - hx)
    h = hopper()
    h = h.resize((round(h.width * scale), round(h.height * scale)), Image.Resampling.LANCZOS)
    aligned = a.copy()
    aligned.paste(h, (round(ax - hx * scale), round(ay - hy * scale)))
    im = Image.blend(a, aligned, alpha)
    if crop:
        im = im.crop((crop, crop, im.width - crop, im.height))
    return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else im


def two_faces() -> Image.Image:
    """A composite: the astronaut (left) beside Grace Hopper (right), scaled to the same face size."""
    a = astronaut()
    h = hopper().resize((256, 300))  # hopper is 512 x 600; her face becomes about 93 px, like the astronaut's
    canvas = Image.new("RGB", (512 + h.width, 512), (200, 200, 200))
    canvas.paste(a, (0, 0))
    canvas.paste(h, (512, 100))
    return canvas


@pytest.fixture
def face_photos(tmp_path) -> Path:
    """A folder of five astronaut variants and one Grace Hopper: the outlier."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, im in enumerate(astronaut_variants(5)):
        im.save(folder / f"astro_{i}.jpg", quality=92)
    hopper().save(folder / "zz_hopper.jpg", quality=92)
    return folder


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.float64)
