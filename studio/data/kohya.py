"""A dataset as kohya's sd-scripts reads one with masks: pictures and captions in `img/<repeats>_<trigger> <class>/`,
the masks under the same file names in `mask/<repeats>_<trigger> <class>/` (its `conditioning_data_dir`, read by
`--masked_loss`: white learnt, black ignored, grey in between), and the `dataset.toml` that ties them together.

    unzip tim-kohya.zip && cd tim-kohya
    accelerate launch train_network.py --dataset_config dataset.toml --masked_loss ...
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from PIL import Image

from studio.data.library import load_dataset
from studio.data.masks import mask_path, mask_png
from studio.fileio import atomic_path


def kohya_toml(subset: str, resolution: int, repeats: int, masks: bool) -> str:
    lines = ['[general]', 'caption_extension = ".txt"', '', '[[datasets]]', f"resolution = {resolution}", '',
             '[[datasets.subsets]]', f'image_dir = "img/{subset}"', f"num_repeats = {repeats}"]
    if masks:
        lines.insert(-1, f'conditioning_data_dir = "mask/{subset}"')
    return "\n".join(lines) + "\n"


def export_kohya(settings, name: str, repeats: int = 1) -> Path:
    """Zip dataset `name` in kohya's layout to workspace/exports/<name>-kohya.zip (never with the uploads)."""
    if not 1 <= repeats <= 1000:
        raise ValueError(f"`repeats` must be between 1 and 1000 but is {repeats}")
    dataset = load_dataset(settings, name)
    subset = f"{repeats}_{dataset.trigger} {dataset.class_word}".strip()
    top = f"{dataset.name}-kohya"
    masks = [im for im in dataset.images if mask_path(dataset.path(im)).is_file()]
    target = settings.workspace_dir / "exports" / f"{top}.zip"
    with atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for im in dataset.images:
                picture = dataset.path(im)
                archive.write(picture, f"{top}/img/{subset}/{im.file_name}")
                archive.writestr(f"{top}/img/{subset}/{Path(im.file_name).stem}.txt", im.caption + "\n")
                if not masks:
                    continue
                # kohya finds a picture's mask by the picture's own file name, and wants one for every picture
                where = f"{top}/mask/{subset}/{im.file_name}"
                if im in masks:
                    archive.write(mask_path(picture), where)
                else:
                    archive.writestr(where, mask_png(Image.new("L", tuple(im.size), 255)))
            archive.writestr(f"{top}/dataset.toml", kohya_toml(subset, int(dataset.settings.get("size") or 512),
                                                               repeats, bool(masks)))
    return target
