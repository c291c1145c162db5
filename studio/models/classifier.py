"""A small image classifier (the pocket checker's network): its architecture, and loading it from a folder that holds
classifier.safetensors and classifier.json ({"labels": [...]})."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT_SIDE = 64  # pictures are scaled to 64 x 64 before they are classified


def classifier_net(labels: int):
    """Four conv blocks (64 -> 4 px), then one linear layer over `labels` classes."""
    import torch.nn as nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 64), *block(64, 64),
                         nn.Flatten(), nn.Dropout(0.2), nn.Linear(64 * 16, labels))


def to_tensor(images: list):
    """PIL images -> (B, 3, 64, 64) in [-1, 1]."""
    import torch

    array = np.stack([np.asarray(im.convert("RGB").resize((INPUT_SIDE, INPUT_SIDE)), dtype=np.float32)
                      for im in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


@dataclass
class ImageClassifier:
    net: object  # torch.nn.Module in eval mode
    labels: tuple[str, ...]

    def classify(self, images: list) -> list[tuple[str, float]]:
        """The best label and its probability for each picture."""
        import torch

        with torch.no_grad():
            probs = self.net(to_tensor(images)).softmax(1)
        best = probs.max(1)
        return [(self.labels[i], float(p)) for p, i in zip(best.values, best.indices)]


def load_classifier(folder: Path) -> ImageClassifier:
    from safetensors.torch import load_file

    weights, meta = Path(folder) / "classifier.safetensors", Path(folder) / "classifier.json"
    if not weights.is_file() or not meta.is_file():
        raise ValueError(f"classifier folder {folder} must hold classifier.safetensors and classifier.json")
    labels = tuple(json.loads(meta.read_text())["labels"])
    net = classifier_net(len(labels))
    net.load_state_dict(load_file(str(weights)))
    return ImageClassifier(net.eval(), labels)
