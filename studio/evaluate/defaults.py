"""What an evaluation starts with, by model: seed 000's prompts and five seeds for real models (its "amari" replaced by
the LoRA's trigger word), and for a builtin with hints (builtin:pocket) its own prompts, short seeds and CFG.

The tab and the command line both start from these; every value can be changed before the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.evaluate.request import STUDY_PROMPTS, STUDY_SEEDS, Variant
from studio.generate.request import LoraChoice

STUDY_SUBJECT = "amari"  # the word in seed 000's prompts that stands for the subject


@dataclass(frozen=True)
class Defaults:
    variants: list[Variant]
    prompts: list[str]
    seeds: list[int]
    cfg: float | None  # None: the family's
    reference: str  # a dataset to score likeness against ("" for none)
    why: str  # where these come from, for the user


def model_hints(studio, model: str) -> dict:
    """A base model's per-model starting values (studio.models.builtin.HINTS); {} for most models and for a model
    that cannot be resolved yet."""
    from studio.models.builtin import HINTS

    try:
        ref = studio.store.resolve(model or studio.store.default_model)
    except (ValueError, OSError):
        return {}
    return dict(HINTS.get(ref.name, {})) if ref.kind == "builtin" else {}


def lora_facts(studio, name: str) -> dict:
    """What a studio-trained LoRA records about itself: trigger, dataset, base model ({} for other files)."""
    from safetensors import safe_open

    try:
        path = studio.store.lora_file(name)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (ValueError, OSError):
        return {}
    return {key: meta[f"studio.{key}"] for key in ("trigger", "dataset", "base_model") if meta.get(f"studio.{key}")}


def default_variants(studio) -> list[Variant]:
    """The base alone, then the two newest LoRAs made for the same base (the newest LoRA's, else the default)."""
    files = sorted(studio.store.list_models().lora, key=lambda p: p.stat().st_mtime, reverse=True)
    facts = {p.stem: lora_facts(studio, p.stem) for p in files}

    def base_of(f: dict) -> str:  # "" stands for the studio's default base
        return "" if f.get("base_model", "") in ("", studio.store.default_model) else f["base_model"]

    base = next((base_of(f) for f in facts.values() if f.get("base_model")), "")
    picked = [name for name, f in facts.items() if base_of(f) == base or not f.get("base_model")][:2]
    return [Variant("control", base), *(Variant(name, base, [LoraChoice(name, 1.0)]) for name in picked)]


def defaults_for(studio, variants: list[Variant] | None = None) -> Defaults:
    """Starting prompts, seeds, CFG and reference for `variants` (default_variants() when None)."""
    variants = default_variants(studio) if variants is None else variants
    facts = [lora_facts(studio, lc.name) for v in variants for lc in v.loras]
    triggers = list(dict.fromkeys(f["trigger"] for f in facts if f.get("trigger")))
    hints = [model_hints(studio, v.model) for v in variants]
    hint = hints[0] if hints and all(h == hints[0] for h in hints) else {}

    # 1. A builtin with its own evaluation prompts (builtin:pocket): them, its seeds and CFG, no face reference
    if hint.get("evaluate_prompts"):
        if triggers:
            templates = hint["evaluate_trigger_prompts"]
            prompts = [p.format(trigger=t) for t in triggers for p in templates]
            why = (f"the model's own prompts with the LoRA trigger word{'s' if len(triggers) > 1 else ''} "
                   f"{', '.join(repr(t) for t in triggers)}")
        else:
            prompts, why = list(hint["evaluate_prompts"]), "the model's own prompts"
        seeds = list(hint["evaluate_seeds"])
        why += f", {len(seeds)} seeds and CFG {hint['cfg']:g} (what this model was trained for)"
        return Defaults(variants, list(dict.fromkeys(prompts)), seeds, hint.get("cfg"), "", why)

    # 2. Any other model: seed 000's four prompts and five seeds, with the subject's trigger word when one is known
    prompts, why = list(STUDY_PROMPTS), "seed 000's four prompts and five seeds"
    if len(triggers) == 1:
        prompts = [p.replace(STUDY_SUBJECT, triggers[0]) for p in prompts]
        why += f", with the LoRA's trigger word {triggers[0]!r} for {STUDY_SUBJECT!r}"
    datasets = [f["dataset"] for f in facts if f.get("dataset")]
    reference = datasets[0] if datasets and _is_listed(studio, datasets[0]) else ""
    if reference:
        why += f"; reference: {reference!r}, the dataset the LoRA was trained on"
    return Defaults(variants, prompts, list(STUDY_SEEDS), hint.get("cfg"), reference, why)


def _is_listed(studio, dataset: str) -> bool:
    from studio.data import list_datasets

    return dataset in {d.name for d in list_datasets(studio.settings)}
