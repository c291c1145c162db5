"""What a checkpoint file does not carry, kept in the studio so single files load with no hub: one folder per model
variant (`sd15`, `sdxl-base`, `flux1-dev`, ...), laid out as a diffusers pipeline folder without weights
(model_index.json, each component's config.json, the scheduler's config, tokenizer files or what builds them).
A family's module names its variants and tells a file's variant from its keys and shapes."""

from __future__ import annotations

from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent


def variant_folder(variant: str) -> Path:
    """The carried folder of `variant`; a ValueError names the variants the studio carries when it has none."""
    folder = CONFIGS_DIR / variant
    if not (folder / "model_index.json").is_file():
        known = sorted(p.name for p in CONFIGS_DIR.iterdir() if (p / "model_index.json").is_file())
        raise ValueError(f"the studio carries no configs for {variant!r}; it carries {', '.join(known) or 'none'}")
    return folder
