"""Scores pocket generations: colour from pixel statistics, shape or face kind from a small classifier trained on scenes."""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from studio.models.classifier import ImageClassifier, classifier_net, to_tensor
from studio.pocket.scenes import (NEW_SHAPES, SHAPE_COLORS, SHAPES, dog_face_scene,
                                  human_face_scene, shape_scene)

LABELS = (*SHAPES, *NEW_SHAPES, "human", "dog")  # what the classifier tells apart


@dataclass(frozen=True)
class ClassifierTraining:
    seed: int = 0
    steps: int = 600  # under two minutes on one core; held-out drawings are all right by then
    batch: int = 64
    lr: float = 2e-3


@dataclass(frozen=True)
class Verdict:
    color: str | None  # nearest named shape colour of the foreground, None when no foreground stands out
    label: str  # the classifier's best label (a shape, "human" or "dog")
    confidence: float  # its softmax probability
    color_ok: bool | None  # None when the prompt names no colour
    label_ok: bool | None  # None when the prompt names no shape or face kind

    @property
    def ok(self) -> bool:
        return self.color_ok is not False and self.label_ok is not False


def _training_example(rng: random.Random) -> tuple[Image.Image, int]:
    label = rng.randrange(len(LABELS))
    name = LABELS[label]
    if name == "human":
        image = human_face_scene(rng).image
    elif name == "dog":
        image = dog_face_scene(rng).image
    else:
        image = shape_scene(rng, shape=name).image
    # Generated images are softer and noisier than drawings: blur and add noise so the classifier does not care.
    if rng.random() < 0.7:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    if rng.random() < 0.5:
        noisy = np.asarray(image, dtype=np.float32) + np.random.default_rng(rng.randrange(2**31)).normal(0, rng.uniform(2, 12), (64, 64, 3))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    return image, label


def train_classifier(folder: Path, seed: int = 0, cfg: ClassifierTraining | None = None, log=print) -> dict:
    """Train the label classifier on fresh procedural scenes and save it to folder/classifier.safetensors."""
    import torch
    from safetensors.torch import save_file

    cfg = cfg or ClassifierTraining(seed=seed)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed + 10)
    net = classifier_net(len(LABELS))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    start = time.time()
    for step in range(cfg.steps):
        examples = [_training_example(rng) for _ in range(cfg.batch)]
        x = to_tensor([im for im, _ in examples])
        y = torch.tensor([label for _, label in examples])
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            log(f"checker step {step}/{cfg.steps} loss {loss.item():.4f}")
    net.eval()
    held_out = [_training_example(random.Random(cfg.seed + 1000 + i)) for i in range(700)]
    with torch.no_grad():
        pred = net(to_tensor([im for im, _ in held_out])).argmax(1)
    accuracy = float((pred == torch.tensor([label for _, label in held_out])).float().mean())
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "classifier.safetensors"))
    (folder / "classifier.json").write_text(json.dumps({"labels": LABELS, "held_out_accuracy": accuracy}, indent=2))
    log(f"checker accuracy on held-out drawings {accuracy:.3f} ({(time.time() - start) / 60:.1f} min)")
    return {"checker_minutes": (time.time() - start) / 60, "checker_accuracy": accuracy}


class PocketChecker:
    """Checks images against prompts: `checker.verdict(image, "a red circle on a white background")`. The
    classifier is borrowed from the model cache (`studio.cache.borrow("checker", CHECKER_DIR)`). It is the studio's
    PictureChecker for builtin:pocket (studio.scorers; registered by studio/pocket/scoring.py)."""

    labels_known = LABELS

    def __init__(self, classifier: ImageClassifier):
        self.classifier = classifier

    def color(self, image: Image.Image) -> str | None:
        return foreground_color(image)

    def asked_for(self, prompt: str, taught: dict[str, str]) -> tuple[str | None, str | None]:
        """(colour, label) the prompt asks for: a shape or face kind it names, else a trigger word's taught label
        (the colour is the word just before the shape or trigger: "a red zq on a white background" -> ("red",
        "star"))."""
        color, label = prompt_targets(prompt)
        if label is not None:
            return color, label
        words = re.findall(r"[a-z0-9]+", prompt.lower())
        trigger = next((w for w in words if w in taught), None)
        if trigger is None:
            return None, None
        label = taught[trigger]
        before = words[:words.index(trigger)]
        color = next((w for w in reversed(before) if w in SHAPE_COLORS), None) if label in SHAPES + NEW_SHAPES else None
        return color, label

    def labels(self, images: list[Image.Image]) -> list[tuple[str, float]]:
        """The best label and its probability for each image."""
        return self.classifier.classify(images)

    def verdict(self, image: Image.Image, prompt: str) -> Verdict:
        return self.verdicts([image], prompt)[0]

    def verdicts(self, images: list[Image.Image], prompt: str) -> list[Verdict]:
        want_color, want_label = prompt_targets(prompt)
        out = []
        for image, (label, conf) in zip(images, self.labels(images)):
            color = foreground_color(image)
            out.append(Verdict(color, label, conf,
                               None if want_color is None else color == want_color,
                               None if want_label is None else label == want_label))
        return out


def prompt_targets(prompt: str) -> tuple[str | None, str | None]:
    """The shape colour and the label a prompt asks for, e.g. ("red", "circle"); None for what it does not name."""
    words = re.findall(r"[a-z]+", prompt.lower())
    label = next((w for w in words if w in SHAPES + NEW_SHAPES), None)
    if label is None and "face" in words:
        label = "dog" if "dog" in words else "human"
    color = None
    if label in SHAPES + NEW_SHAPES:
        # The colour is the word just before the shape ("a red circle on a white background").
        before = words[:words.index(label)]
        color = next((w for w in reversed(before) if w in SHAPE_COLORS), None)
    return color, label


def foreground_color(image: Image.Image, threshold: float = 60.0) -> str | None:
    """Name the colour of what stands out from the background (the median of the image border)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    distance = np.linalg.norm(rgb - background, axis=-1)
    mask = distance > threshold
    if mask.mean() < 0.02:
        return None
    # The most distinct half of the foreground: soft edges blend into the background and would pull the mean.
    fg = rgb[mask]
    fg = fg[distance[mask] >= np.median(distance[mask])]
    centre = np.median(fg, axis=0)
    names = list(SHAPE_COLORS)
    palette = np.array([SHAPE_COLORS[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(np.linalg.norm(palette - centre, axis=1)))]

