"""What a mining job asks for: where candidates come from, the sim-group's rules (every threshold a knob), and when
to stop. Checked at the edge; written to mine.json and read back when the job continues."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from studio.faces.identity import DEFAULT_TOLERANCE
from studio.generate.request import MAX_SEED, GenerationRequest, LoraChoice, parse_lora
from studio.fields import setting
from studio.mine.group import NEAR_MISS, Rules
from studio.names import check_name

# A mining job that continues may go on longer; everything else it asked for stays, so the group stays one group.
RESUME_CHANGES = ("target", "max_candidates", "max_minutes")


def _lora_text(lora: LoraChoice) -> str:
    return f"{lora.name}:{lora.weight:g}"


@dataclass(frozen=True)
class MiningRequest:
    """A mining job, each setting declared once (studio.fields): the Mine tab, `mine` and /mine_start are made from
    these declarations."""

    name: str = setting(label="Job name", help="the job's folder under workspace/mining/")

    # 1. Candidates: from the studio's generator (a prompt) or from a folder of images, never both.
    prompt: str = setting("", label="Prompt", lines=2,
                          help="candidates from the generator: candidate i with seed seed_start + i")
    # a folder (or .zip) of images, taken in name order as the Dataset tab reads them
    candidates: Path | None = setting(None, label="Or pictures from a dataset", names="dataset",
                                      help="candidates from a folder in workspace/datasets/ (the command line: any "
                                           "folder or .zip) instead of a prompt")
    negative_prompt: str = setting("", label="Negative prompt", flag="--negative")
    model: str = setting("", label="Base model", names="base model", help="default: the studio's default model")
    loras: tuple[LoraChoice, ...] = setting((), label="LoRAs (NAME or NAME:WEIGHT)", flag="--lora", parse=parse_lora,
                                            show=_lora_text, help="a LoRA with an optional weight")
    embeddings: tuple[str, ...] = setting((), label="Embeddings", flag="--embedding", names="embedding")
    steps: int = setting(20, label="Steps", group="generation", advanced=True)
    cfg: float | None = setting(None, label="CFG scale", unset=0, group="generation", advanced=True,
                                help="0: the family's (7; 1 for FLUX.1)")
    sampler: str | None = setting(None, label="Sampler", names="sampler", group="generation", advanced=True,
                                  help="default: the model's (Euler a, or Euler for FLUX.1)")
    width: int | None = setting(None, label="Width", unset=0, group="generation", advanced=True,
                                help="0: the model's native size")
    height: int | None = setting(None, label="Height", unset=0, group="generation", advanced=True)
    seed_start: int = setting(0, label="First seed", group="generation", advanced=True, help="candidate i: this + i")
    # batches start at multiples of it, so a resume redraws the same
    batch_size: int = setting(1, label="Batch size", flag="--batch", group="generation", advanced=True,
                              help="pictures per generator call")
    # 4x before the face is looked for (seed 000: Real-ESRGAN)
    upscaler: str = setting("", label="Upscaler", names="upscaler", group="generation", advanced=True,
                            help="upscale each candidate 4x before its face is looked for: Lanczos or a model in "
                                 "models/upscale/; empty: none")

    # 2. The sim-group's rules (studio.mine.group.Rules says exactly what each does)
    tolerance: float = setting(DEFAULT_TOLERANCE, label="Tolerance", span=(0.2, 0.8, 0.01), group="rules",
                               help="admit a face whose mean distance to the group is at most this (seed 000: 0.40)")
    near_miss: float = setting(NEAR_MISS, label="Near miss up to", span=(0.2, 1.0, 0.01), group="rules",
                               help="above the tolerance and up to this: a near miss, kept apart, not thrown away")
    recheck: bool = setting(True, label="Drop members that drift away", group="rules",
                            help="after each admission, drop members whose mean distance to the rest exceeds the drop "
                                 "tolerance")
    drop_tolerance: float | None = setting(None, label="Drop above", span=(0.0, 0.8, 0.01), unset=0, group="rules",
                                           help="a member's mean distance to the rest; 0: the tolerance")
    seed_face: str = setting("", label="Seed face", help="a picture of the face to start from; empty: the first face "
                                                         "found")
    pin_seed: bool = setting(False, label="Never drop the seed face", group="rules")

    # 3. When to stop (whichever comes first; 0 means no limit)
    target: int = setting(300, label="Target group size", group="budget", help="members in the group")
    max_candidates: int = setting(0, label="Image budget", group="budget",
                                  help="candidates looked at, over every run of the job; 0: no limit")
    max_minutes: float = setting(0.0, label="Time budget (minutes)", group="budget",
                                 help="mining time, over every run of the job; 0: no limit")

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_name(self.name))
        object.__setattr__(self, "prompt", (self.prompt or "").strip())
        if self.candidates is not None and str(self.candidates).strip():
            object.__setattr__(self, "candidates", Path(self.candidates).expanduser())
        else:
            object.__setattr__(self, "candidates", None)
        object.__setattr__(self, "loras", tuple(self.loras))
        object.__setattr__(self, "embeddings", tuple(e for e in self.embeddings if e))
        object.__setattr__(self, "seed_face", str(self.seed_face or "").strip())
        object.__setattr__(self, "upscaler", (self.upscaler or "").strip())
        # 1. Candidates
        if bool(self.prompt) == (self.candidates is not None):
            raise ValueError("give either `prompt` (candidates from the generator) or `candidates` (a folder of "
                             f"images), not {'both' if self.prompt else 'neither'}")
        if self.from_generator:
            if not 0 <= self.seed_start <= MAX_SEED:
                raise ValueError(f"`seed_start` must be between 0 and {MAX_SEED} but is {self.seed_start}")
            if not 1 <= self.batch_size <= 16:
                raise ValueError(f"`batch_size` must be between 1 and 16 but is {self.batch_size}")
            self.generation(self.seed_start).check()  # prompt, steps, cfg, size, sampler, LoRA weights
        # 2. Rules
        _ = self.rules
        # 3. Budgets
        if not 1 <= self.target <= 100_000:
            raise ValueError(f"`target` must be between 1 and 100000 members but is {self.target}")
        if self.max_candidates < 0:
            raise ValueError(f"`max_candidates` must be 0 (no limit) or more but is {self.max_candidates}")
        if self.max_minutes < 0:
            raise ValueError(f"`max_minutes` must be 0 (no limit) or more but is {self.max_minutes}")

    @property
    def max_seconds(self) -> float:
        return self.max_minutes * 60

    @property
    def from_generator(self) -> bool:
        return bool(self.prompt)

    @property
    def rules(self) -> Rules:
        return Rules(self.tolerance, self.near_miss, self.recheck, self.drop_tolerance, self.pin_seed)

    def seed_of(self, index: int) -> int:
        """The seed candidate `index` is generated with."""
        return (self.seed_start + index) % (MAX_SEED + 1)

    def generation(self, seed: int, batch_size: int = 1) -> GenerationRequest:
        """The studio generator's request for the candidates from `seed` on: what regenerates a mined face."""
        return GenerationRequest(prompt=self.prompt, model=self.model, negative_prompt=self.negative_prompt, seed=seed,
                                 steps=self.steps, cfg=self.cfg, width=self.width, height=self.height,
                                 batch_size=batch_size, sampler=self.sampler, loras=list(self.loras),
                                 embeddings=list(self.embeddings), save=False)

    def continued(self, **changes) -> "MiningRequest":
        """This request with a longer budget (RESUME_CHANGES); None keeps a value."""
        unknown = sorted(set(changes) - set(RESUME_CHANGES))
        if unknown:
            raise ValueError(f"a continued mining job keeps its candidates and rules; only {', '.join(RESUME_CHANGES)} "
                             f"can change, not {', '.join(unknown)} (start a new job for that)")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_json(self) -> dict:
        d = asdict(self)
        d["candidates"] = str(self.candidates) if self.candidates is not None else None
        d["loras"] = [f"{lc.name}:{lc.weight:g}" for lc in self.loras]
        d["embeddings"] = list(self.embeddings)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "MiningRequest":
        if "max_seconds" in d:  # mine.json written before the budget was said in minutes
            d = {**d, "max_minutes": d["max_seconds"] / 60}
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["loras"] = tuple(parse_lora(text) for text in d.get("loras", ()))
        d["embeddings"] = tuple(d.get("embeddings", ()))
        return cls(**d)
