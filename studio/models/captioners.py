"""Captioning models (BLIP, Florence-2): which ones, where their weights live, and calling a loaded one (loading is in
models/loaders.py; choosing captions is in studio.data)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    """A loaded captioning model (by ModelLoading.load_captioner): call it with pictures, get one plain sentence each."""

    spec: CaptionerSpec
    model: object  # transformers model in eval mode, on `device`
    processor: object
    device: str

    def __call__(self, images: list[Image.Image]) -> list[str]:
        import torch

        prompts = [self.spec.prompt] * len(images) if self.spec.prompt else None
        inputs = self.processor(images=[im.convert("RGB") for im in images], text=prompts, return_tensors="pt")
        inputs = {k: (v.to(self.device, self.model.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        with torch.inference_mode():
            ids = self.model.generate(**inputs, max_new_tokens=60, num_beams=3)
        return [" ".join(t.split()) for t in self.processor.batch_decode(ids, skip_special_tokens=True)]


def captioner_folder(settings: Settings, name: str) -> Path:
    """Where a captioner's weights are looked for first: models/captioners/<name>/ (a transformers folder)."""
    return settings.models_dir / "captioners" / name
