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


def wait_for_run(studio, name: str, test, timeout: float = 120):
    """Run `name`'s status once `test(status)` holds or the run is no longer active; an AssertionError after
    `timeout` seconds."""
    import time

    from studio.train import jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.run_status(studio, name)
        if test(status) or not status.active:
            return status
        time.sleep(0.2)
    raise AssertionError(f"run {name}: still {jobs.run_status(studio, name).line()} after {timeout} s")


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


def stock_pictures(folder: Path, loras: list, *, steps: int = 2) -> list:
    """Pictures of "sks" (64 px, seed 3) by stock diffusers' own pipeline of the model in `folder` (the class its
    model_index.json names), as a diffusers user would draw them: one per entry of `loras`, None for the plain model,
    else a LoRA file loaded with load_lora_weights (and removed after)."""
    import diffusers
    import torch

    index = diffusers.DiffusionPipeline.load_config(str(folder))
    pipe = getattr(diffusers, index["_class_name"]).from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    pictures = []
    for lora in loras:
        if lora is not None:
            pipe.load_lora_weights(str(lora), adapter_name="x")
        pictures.append(pipe(prompt="sks", num_inference_steps=steps, height=64, width=64, output_type="np",
                             generator=torch.Generator().manual_seed(3)).images[0])
        if lora is not None:
            pipe.delete_adapters("x")
    return pictures


def check_every_layer_exports(studio, model: str, kohya_layers: list[str]) -> None:
    """A LoRA on every layer of `model` (3 steps): its kohya export names each of `kohya_layers` (lora_unet_...) and
    draws in stock diffusers what the peft file draws, which is not the plain model's picture."""
    import numpy as np
    from safetensors.torch import load_file

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    result = train_in_process(studio, tiny_config(name="all", model=model, max_steps=3, lr=3e-2, lora_layers="all"))
    kohya = load_file(str(result.files[0]))
    for layer in kohya_layers:
        assert f"{layer}.lora_down.weight" in kohya, layer
    plain, by_kohya, by_peft = stock_pictures(studio.store.resolve(model).path, [None, *result.files])
    assert np.abs(by_peft - plain).max() > 1 / 255
    np.testing.assert_allclose(by_kohya, by_peft, atol=1.5 / 255)


def check_parameter_counts(family_name: str) -> None:
    """A family's declared parameter counts are its carried configs' (each variant's) counted on the meta device."""
    from studio.models import families
    from studio.models.configs import variant_folder
    from studio.models.families.memory_facts import count_parameters

    family = families.get(family_name)
    for variant in family.variants:
        assert count_parameters(variant_folder(variant)) == family.parameter_counts[variant]
