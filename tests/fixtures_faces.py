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
