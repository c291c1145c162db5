"""What a base's own checker (studio.scorers.PictureChecker: builtin:pocket's) saw: the label and colour of each
picture, and what its prompt asks for.

A prompt asks for a label by name ("a red circle", "a cartoon dog face") as the checker reads prompts, or by a
LoRA's trigger word ("a red zq"): the trigger then stands for what the checker sees in the pictures that LoRA was
trained on (its dataset, named in the LoRA file's metadata), when most of them show one label.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from studio.scorers import PictureChecker

TAUGHT_SHARE = 0.5  # more than this share of a LoRA's training pictures must show one label for the trigger to mean it


@dataclass(frozen=True)
class Taught:
    """What a LoRA's trigger word stands for, as the checker sees the LoRA's training pictures."""

    trigger: str
    lora: str
    dataset: str
    label: str | None  # None: not told (no dataset on disk, or no label in most pictures)
    seen: int  # training pictures showing `label` (or the most seen one)
    pictures: int

    @property
    def note(self) -> str:
        if not self.pictures:
            return (f"'{self.trigger}' (LoRA {self.lora}) is not scored for shape: its dataset {self.dataset!r} is not "
                    f"on disk, so what it was taught cannot be told; what is drawn is still counted.")
        if self.label is None:
            return (f"'{self.trigger}' (LoRA {self.lora}) is not scored for shape: the checker sees no one label in most "
                    f"of the {self.pictures} pictures of dataset {self.dataset!r}; what is drawn is still counted.")
        return (f"'{self.trigger}' counts as {self.label}: the checker sees a {self.label} in {self.seen} of the "
                f"{self.pictures} pictures of dataset {self.dataset!r}, which LoRA {self.lora} was trained on.")


def taught_labels(studio, checker: PictureChecker, loras: list[tuple[str, str, str]]) -> list[Taught]:
    """For each (LoRA name, trigger word, dataset) of a studio-trained LoRA: what its trigger word stands for."""
    from PIL import Image

    from studio.data.library import captioned_images, find_dataset

    out = []
    for name, trigger, dataset in loras:
        if not trigger or any(t.trigger == trigger for t in out):
            continue
        try:
            pictures = [item.path for item in captioned_images(find_dataset(studio.settings, dataset), "")]
        except ValueError:  # the dataset was deleted or renamed since: the note says so
            pictures = []
        images = []
        for picture in pictures:
            with Image.open(picture) as im:
                images.append(im.convert("RGB"))
        counts = Counter(label for label, _ in checker.labels(images)) if images else Counter()
        label, seen = counts.most_common(1)[0] if counts else (None, 0)
        out.append(Taught(trigger.lower(), name, dataset, label if seen > TAUGHT_SHARE * len(images) else None, seen,
                          len(images)))
    return out


@dataclass(frozen=True)
class Check:
    drawn: str
    confidence: float
    color: str | None
    asked_label: str | None
    asked_color: str | None

    @property
    def label_ok(self) -> bool | None:
        return None if self.asked_label is None else self.drawn == self.asked_label

    @property
    def color_ok(self) -> bool | None:
        return None if self.asked_color is None else self.color == self.asked_color


def check_images(checker: PictureChecker, images: list, prompts: list[str], taught: dict[str, str],
                 batch_size: int = 64) -> list[Check]:
    """The checker's verdict on each picture against its own prompt."""
    if len(images) != len(prompts):
        raise ValueError(f"`images` and `prompts` must pair up but hold {len(images)} and {len(prompts)}")
    labels = []
    for start in range(0, len(images), batch_size):
        labels += checker.labels(images[start:start + batch_size])
    out = []
    for image, prompt, (label, confidence) in zip(images, prompts, labels):
        asked_color, asked_label = checker.asked_for(prompt, taught)
        out.append(Check(label, confidence, checker.color(image), asked_label, asked_color))
    return out
