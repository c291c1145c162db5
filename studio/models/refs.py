"""What a model id names: its kind, where its files are, and which family (studio/models/families/) it belongs to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.models.families import ModelFamily


@dataclass(frozen=True)
class ModelRef:
    id: str  # what the user typed: builtin:tiny, owner/name, or a path
    kind: str  # "builtin" | "hub" | "folder" | "file"
    path: Path | None  # local folder or file; None for a hub id not yet downloaded
    family: ModelFamily | None  # None for a hub id whose name does not tell, until it is downloaded
    variant: str | None = None  # a single file's: the configs it loads with (studio/models/configs/<variant>/)

    @property
    def name(self) -> str:
        """Short name for A1111's `Model:` field and file names."""
        if self.kind == "builtin":
            return self.id.split(":", 1)[1]
        if self.path is not None:
            return self.path.stem if self.kind == "file" else self.path.name
        return self.id.rsplit("/", 1)[-1]


@dataclass
class LoraChoice:
    """A LoRA to apply and its weight: a file in models/lora/ (stem or file name) or a path."""

    name: str
    weight: float = 1.0


def parse_lora(text: str) -> LoraChoice:
    """`NAME[:WEIGHT]` (the command line's and the Evaluate variants' form) as a LoraChoice; a name may hold colons
    (a path), so only a number after the last one is a weight."""
    text = (text or "").strip()
    if not text:
        raise ValueError("a LoRA is empty: write NAME or NAME:WEIGHT")
    name, _, weight = text.rpartition(":")
    if name:
        try:
            return LoraChoice(name, float(weight))
        except ValueError:
            pass
    return LoraChoice(text, 1.0)
