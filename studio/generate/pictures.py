"""Picture geometry that Face to animal and inpainting share: a working size for the models, a square around a face,
a feathered paste back into the photo, a row of pictures side by side."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageFilter, UnidentifiedImageError


def open_picture(path: str | Path) -> Image.Image:
    """The picture at `path`, read now; a ValueError saying so when it is missing or not a picture (the caller names
    the argument: argparse's "argument --image: ...")."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path} is not a picture: {e}") from e
    return image


def face_square(box: tuple[int, int, int, int], size: tuple[int, int], scale: float = 2.2) -> tuple[int, int, int, int]:
    """A square around a face box, `scale` times its larger side, moved up a little (ears and forehead) and
    shifted to stay inside a `size` picture (and shrunk if the picture is smaller)."""
    left, top, right, bottom = box
    side = min(round(scale * max(right - left, bottom - top)), *size)
    cx, cy = (left + right) / 2, (top + bottom) / 2 - 0.1 * (bottom - top)
    x0 = min(max(0, round(cx - side / 2)), size[0] - side)
    y0 = min(max(0, round(cy - side / 2)), size[1] - side)
    return x0, y0, x0 + side, y0 + side


def fit_size(size: tuple[int, int], longer: int) -> tuple[int, int]:
    """(width, height) with the longer side `longer`, the aspect kept, both multiples of 8; a very wide picture
    gets a longer side past `longer` so that its shorter one reaches the models' minimum of 64."""
    scale = max(longer / max(size), 64 / min(size))
    return tuple(max(64, round(v * scale / 8) * 8) for v in size)


def paste_feathered(photo: Image.Image, result: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """`photo` with `result` resized into `box`, its edges feathered so no seam shows."""
    width, height = box[2] - box[0], box[3] - box[1]
    feather = max(2, round(0.06 * min(width, height)))
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (feather, feather, width - feather, height - feather))
    mask = mask.filter(ImageFilter.GaussianBlur(feather / 2))
    out = photo.copy()
    out.paste(result.convert("RGB").resize((width, height), Image.Resampling.LANCZOS), box[:2], mask)
    return out


def side_by_side(images: list[Image.Image], *, height: int) -> Image.Image:
    """The images in one row, each scaled to `height`, on a dark background."""
    tiles = [im.convert("RGB").resize((max(1, round(im.width * height / im.height)), height),
                                      Image.Resampling.LANCZOS) for im in images]
    gap = max(2, height // 64)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), height), (24, 24, 24))
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + gap
    return sheet
