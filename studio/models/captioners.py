"""Captioning models (BLIP, Florence-2): where their weights live and loading them; the captioning itself is in studio.data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from studio.settings import Settings


@dataclass(frozen=True)
class CaptionerSpec:
    name: str
    hub_id: str
    # Task prompt the model is asked with ("" when it needs none).
    prompt: str = ""


CAPTIONERS = {
    "blip": CaptionerSpec("blip", "Salesforce/blip-image-captioning-base"),
    "florence2": CaptionerSpec("florence2", "florence-community/Florence-2-base", prompt="<CAPTION>"),
}


@dataclass
class Captioner:
    """A loaded captioning model: call it with pictures, get one plain sentence each."""

    spec: CaptionerSpec
    caption: Callable[[list[Image.Image]], list[str]]

    def __call__(self, images: list[Image.Image]) -> list[str]:
        return self.caption(images)


def captioner_folder(settings: Settings, name: str) -> Path:
    """Where a captioner's weights are looked for first: models/captioners/<name>/ (a transformers folder)."""
    return settings.models_dir / "captioners" / name


def load_captioner(settings: Settings, name: str) -> Captioner:
    """Load a captioner from models/captioners/<name>/, else from the hub id (the local hub cache only, unless
    `settings.allow_downloads`). A ValueError says where to put the weights when they are missing."""
    # 1. Which model, and from where
    if name not in CAPTIONERS:
        raise ValueError(f"`captioner` must be one of template, {', '.join(CAPTIONERS)} but is {name!r}")
    spec = CAPTIONERS[name]
    folder = captioner_folder(settings, name)
    source = str(folder) if (folder / "config.json").is_file() else spec.hub_id
    local_only = source == str(folder) or not settings.allow_downloads

    # 2. Load processor and model
    import torch
    import transformers

    model_class = (transformers.BlipForConditionalGeneration if name == "blip"
                   else transformers.Florence2ForConditionalGeneration)
    try:
        processor = transformers.AutoProcessor.from_pretrained(source, local_files_only=local_only)
        model = model_class.from_pretrained(source, local_files_only=local_only)
    except OSError as e:
        how = "" if settings.allow_downloads else ", or allow downloads (no --offline) to fetch it from the hub"
        raise ValueError(f"{name} captioner weights not found: put the files of {spec.hub_id} (config.json, "
                         f"model.safetensors, tokenizer and preprocessor files) in {folder}{how} "
                         f"({' '.join(str(e).split())[:160]})") from e
    device = settings.resolve_device()
    model = model.to(device=device, dtype=settings.resolve_dtype(device)).eval()

    # 3. The captioning function
    def caption(images: list[Image.Image]) -> list[str]:
        prompts = [spec.prompt] * len(images) if spec.prompt else None
        inputs = processor(images=[im.convert("RGB") for im in images], text=prompts, return_tensors="pt")
        inputs = {k: (v.to(device, model.dtype) if v.is_floating_point() else v.to(device)) for k, v in inputs.items()}
        with torch.inference_mode():
            ids = model.generate(**inputs, max_new_tokens=60, num_beams=3)
        return [" ".join(t.split()) for t in processor.batch_decode(ids, skip_special_tokens=True)]

    return Captioner(spec, caption)
