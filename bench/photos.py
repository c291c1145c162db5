"""Training pictures the benchmarks share: distinct crops of scikit-image's astronaut photo (a real face), so every
picture costs its own encode and a face is there to find."""

from __future__ import annotations

from pathlib import Path


def astronaut_crops(folder: Path, images: int, resolution: int, captions: list[str] | None) -> None:
    """`images` crops at `resolution` into `folder`, with a .txt caption each when `captions` are given; a folder that
    is there already is left as it is."""
    from PIL import Image
    from skimage import data as skdata

    if Path(folder).is_dir() and any(Path(folder).iterdir()):
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    photo = Image.fromarray(skdata.astronaut())
    for i in range(images):
        side = 300 + 20 * i
        photo.crop((i * 10, i * 5, i * 10 + side, i * 5 + side)).resize((resolution, resolution)).save(
            Path(folder) / f"{i:03d}.png")
        if captions is not None:
            (Path(folder) / f"{i:03d}.txt").write_text(captions[i])
