"""Helpers for the training tests: tiny datasets of real photos and short run configs at 64 px."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PIL import Image


def astronaut(size: tuple[int, int] = (64, 64)) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize(size, Image.LANCZOS)


def chelsea(size: tuple[int, int] = (80, 64)) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea()).resize(size, Image.LANCZOS)


def make_dataset(settings, name: str, images: list[Image.Image], captions: list[str | None]) -> Path:
    """workspace/datasets/<name>/ with PNGs and kohya .txt captions (None: no caption file)."""
    folder = settings.datasets_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    for i, (image, caption) in enumerate(zip(images, captions)):
        image.save(folder / f"{i:03d}.png")
        if caption is not None:
            (folder / f"{i:03d}.txt").write_text(caption)
    return folder


def tiny_config(**changes):
    from studio.train.config import RunConfig

    # validation by epochs, as the tests that turn it on mean (by budget, when the default, is tested on its own)
    base = RunConfig(name="run", dataset="ds", model="builtin:tiny", trigger="sks", resolution=64, max_steps=2,
                     epochs=0, validation_by="epochs", validation_every=0, validation_steps=2,
                     validation_prompts=["a photo of {trigger}"])
    return replace(base, **changes)


def train_in_process(studio, config, *, resume: bool = False, should_stop=lambda: False):
    """Run the loop here (no child process): what the child does, minus the process."""
    from studio.train.loop import train
    from studio.train.runlog import RunLog

    run_dir = studio.settings.runs_dir / config.name
    log = RunLog(run_dir)
    try:
        return train(studio.store, studio.settings, config.check(), run_dir, log=log, should_stop=should_stop,
                     resume=resume)
    finally:
        log.close()
