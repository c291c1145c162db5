"""What an evaluation asks for: prompts x seeds x variants (base + LoRAs + embeddings), a reference set or none, CLIP or
not."""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field

from studio.faces.identity import DEFAULT_TOLERANCE
from studio.fields import setting
from studio.generate.request import MAX_SEED, GenerationRequest, LoraChoice, parse_lora
from studio.names import check_name

# Seed 000's four prompts and five seeds (its [sd1]..[sd5] commands); "amari" stands for the subject's trigger word.
STUDY_PROMPTS = (
    "a photo of amari",
    "a photograph of amari walking outside",
    "a side profile image of amari",
    "an extremely detailed photograph of amari",
)
STUDY_SEEDS = (335728730, 691007764, 1295044561, 2565311105, 1995053400)
_LABEL = re.compile(r"^[A-Za-z0-9][\w.@ -]{0,39}$")


@dataclass
class Variant:
    """One column of the grid: a base model with optional LoRAs and embeddings, generated with the same settings."""

    label: str  # what the grid, charts and tables call it: "control", "my-lora@0.6"
    model: str = ""  # "" means the studio's default base model
    loras: list[LoraChoice] = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)

    def spec(self) -> str:
        """The variant as one line of text, the form parse_variant reads back."""
        parts = [self.model] + [f"lora:{lc.name}:{lc.weight:g}" for lc in self.loras]
        return f"{self.label}=" + "+".join(parts + [f"embedding:{e}" for e in self.embeddings])


def parse_variant(text: str) -> Variant:
    """Read `label=MODEL[+lora:NAME:W][+embedding:NAME]`; MODEL may be empty (the default base).

    Without `label=` the label is the text itself: "lora:mine:0.6" alone is the default base with that LoRA.
    """
    text = (text or "").strip()
    if not text:
        raise ValueError("`variant` is empty: write label=MODEL[+lora:NAME:WEIGHT][+embedding:NAME]")
    label, sep, body = text.partition("=")
    if not sep:
        label, body = text, text
    label, parts = label.strip(), [p.strip() for p in body.split("+")]
    model, loras, embeddings = "", [], []
    for i, part in enumerate(parts):
        kind, _, rest = part.partition(":")
        if kind == "lora" and rest:
            loras.append(parse_lora(rest))
        elif kind == "embedding" and rest:
            embeddings.append(rest)
        elif i == 0:
            model = part
        else:
            raise ValueError(f"`variant` {text!r}: part {part!r} is neither lora:NAME:WEIGHT nor embedding:NAME "
                             f"(the model comes first)")
    return Variant(label, model, loras, embeddings)


def study_seeds(n: int) -> list[int]:
    """`n` fixed seeds: seed 000's five first, then more from a seeded generator (the same list every time)."""
    if not 1 <= n <= 100:
        raise ValueError(f"`n_seeds` must be between 1 and 100 but is {n}")
    seeds = list(STUDY_SEEDS[:n])
    extra = random.Random(0)
    while len(seeds) < n:
        s = extra.randint(0, MAX_SEED)
        if s not in seeds:
            seeds.append(s)
    return seeds


@dataclass
class EvaluationRequest:
    """A prompt x seed x variant grid, each setting declared once (studio.fields): the Evaluate tab, `evaluate` and
    /evaluate are made from these declarations."""

    name: str = setting(label="Evaluation name", help="saved as workspace/evaluations/NAME/")
    prompts: list[str] = setting(label="Prompts (one per line)", lines=4, flag="--prompt",
                                 help="seed 000's four for real models ('amari' is the subject's trigger word); "
                                      "builtin:pocket's shape prompts for it")
    # fixed seeds: every variant draws the same noise for a prompt and seed
    seeds: list[int] = setting(label="Seeds", split=r"[\s,]+",
                               help="fixed seeds, comma separated: every variant gets the same noise")
    variants: list[Variant] = setting(
        label="Variants to compare (2 or more)", lines=3, flag="--variant", parse=parse_variant, show=Variant.spec,
        help="one per line: label=MODEL[+lora:NAME:WEIGHT][+embedding:NAME]; an empty MODEL is the studio's default "
             "base, e.g. control= (the base alone), mine=+lora:mine:1, mine@0.6=+lora:mine:0.6")
    # a dataset name (workspace/datasets/) or a folder of photos of the subject; "": no likeness
    reference: str = setting("", label="Reference for likeness: a dataset of the subject's photos", names="dataset",
                             help="none, or a set with no faces (shapes, a style): no likeness score")
    clip_model: str = setting("", label="CLIP model", names="CLIP model", flag="--clip",
                              help="CLIP scores of each picture with its prompt; a real CLIP on disk is picked by "
                                   "default")
    negative_prompt: str = setting("", label="Negative prompt", flag="--negative", group="generation", advanced=True)
    steps: int = setting(20, label="Steps", span=(1, 150, 1), group="generation", advanced=True)
    cfg: float | None = setting(None, label="CFG scale", unset=0, group="generation", advanced=True,
                                help="0: the model's (builtin:pocket 4) or the family's (7; 1 for FLUX.1)")
    width: int | None = setting(None, label="Width", unset=0, group="generation", advanced=True,
                                help="0: the model's native size")
    height: int | None = setting(None, label="Height", unset=0, group="generation", advanced=True)
    sampler: str | None = setting(None, label="Sampler", names="sampler", group="generation", advanced=True,
                                  help="default: the model's (Euler a, or Euler for FLUX.1)")
    # sim-score at or below which a face counts as the subject (seed 000: 0.40)
    tolerance: float = setting(DEFAULT_TOLERANCE, label="Same-person tolerance", span=(0.2, 0.8, 0.01),
                               group="generation", advanced=True, help="seed 000: 0.40")
    # Other subjects' datasets (a LoRA of several subjects): each picture also sim-scored against each of them, so a
    # variant is scored against every subject's faces and one face bleeding into the other shows
    also_against: list[str] = setting(default_factory=list, label="Also score against (other subjects' datasets, "
                                                                  "one a line)",
                                      help="a LoRA of several subjects: each picture against every subject's faces")

    def check(self) -> "EvaluationRequest":
        """Raise ValueError naming the first bad argument and its value."""
        self.name = check_name(self.name)
        if not self.prompts or any(not p or not p.strip() for p in self.prompts):
            raise ValueError(f"`prompts` must hold at least one non-empty prompt but is {self.prompts!r}")
        if len(set(self.prompts)) != len(self.prompts):
            raise ValueError(f"`prompts` has a prompt twice: {self.prompts!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"`seeds` must be one or more distinct seeds but is {self.seeds!r}")
        for s in self.seeds:
            if not 0 <= s <= MAX_SEED:
                raise ValueError(f"`seeds` must be between 0 and {MAX_SEED} (fixed, not -1) but holds {s}")
        if len(self.variants) < 2:
            raise ValueError(f"`variants` must hold at least 2 variants to compare but holds {len(self.variants)}")
        labels = [v.label for v in self.variants]
        for label in labels:
            if not _LABEL.match(label or ""):
                raise ValueError(f"variant label must be 1-40 letters, digits, '_', '-', '.', '@' or spaces, "
                                 f"starting with a letter or digit, but is {label!r}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"variant labels must differ but are {labels!r}")
        if not 0.0 < self.tolerance < 2.0:
            raise ValueError(f"`tolerance` must be between 0 and 2 but is {self.tolerance}")
        self.also_against = [a.strip() for a in self.also_against if a and a.strip()]
        if len(set(self.also_against)) != len(self.also_against) or self.reference.strip() in self.also_against:
            raise ValueError(f"`also_against` must name datasets other than the reference, each once, but is "
                             f"{self.also_against!r}")
        for variant in self.variants:  # the generation checks: size, steps, cfg, sampler, LoRA weights
            self.generation(variant, self.prompts[0], self.seeds[0]).check()
        return self

    def generation(self, variant: Variant, prompt: str, seed: int) -> GenerationRequest:
        """The one generation behind a cell of the grid: the same settings for every variant."""
        return GenerationRequest(prompt=prompt, model=variant.model, negative_prompt=self.negative_prompt, seed=seed,
                                 steps=self.steps, cfg=self.cfg, width=self.width, height=self.height,
                                 sampler=self.sampler, loras=list(variant.loras), embeddings=list(variant.embeddings),
                                 save=False)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "EvaluationRequest":
        variants = [Variant(v["label"], v["model"], [LoraChoice(**lc) for lc in v["loras"]], list(v["embeddings"]))
                    for v in d["variants"]]
        return cls(**{**d, "variants": variants})
