"""What a mining job asks for: where candidates come from, the sim-group's rules (every threshold a knob), and when
to stop. Checked at the edge; written to mine.json and read back when the job continues."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from studio.faces.identity import DEFAULT_TOLERANCE
from studio.generate.request import MAX_SEED, GenerationRequest, LoraChoice, parse_lora
from studio.mine.group import NEAR_MISS, Rules
from studio.names import check_name

# A mining job that continues may go on longer; everything else it asked for stays, so the group stays one group.
RESUME_CHANGES = ("target", "max_candidates", "max_seconds")


@dataclass(frozen=True)
class MiningRequest:
    name: str  # the job's folder under workspace/mining/

    # 1. Candidates: from the studio's generator (a prompt) or from a folder of images, never both.
    prompt: str = ""  # candidate i is generated from this prompt with seed seed_start + i
    candidates: Path | None = None  # a folder (or .zip) of images, taken in name order as the Dataset tab reads them
    negative_prompt: str = ""
    model: str = ""  # "" means the studio's default base model
    loras: tuple[LoraChoice, ...] = ()
    embeddings: tuple[str, ...] = ()
    steps: int = 20
    cfg: float | None = None  # None: the family's default (7 for SD, 1 for FLUX)
    sampler: str | None = None  # None: the family's default (Euler a; Euler for FLUX)
    width: int | None = None  # None: the model's native size
    height: int | None = None
    seed_start: int = 0
    batch_size: int = 1  # images per generator call; batches start at multiples of it, so a resume redraws the same
    # "" none; else Lanczos or a model in models/upscale/, 4x before the face is looked for (seed 000: Real-ESRGAN)
    upscaler: str = ""

    # 2. The sim-group's rules (studio.mine.group.Rules says exactly what each does)
    tolerance: float = DEFAULT_TOLERANCE  # admit a face whose mean distance to the members is at most this
    near_miss: float = NEAR_MISS  # above the tolerance and up to this: a near miss, kept apart
    recheck: bool = True  # after each admission, drop members whose mean distance to the rest exceeds drop_tolerance
    drop_tolerance: float | None = None  # None: the tolerance
    seed_face: str = ""  # "" the first face found; else a picture of the face to start from
    pin_seed: bool = False  # never drop the seed face

    # 3. When to stop (whichever comes first; 0 means no limit)
    target: int = 300  # members in the group
    max_candidates: int = 0  # candidates looked at, over every run of the job
    max_seconds: float = 0.0  # mining time, over every run of the job

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
        if self.max_seconds < 0:
            raise ValueError(f"`max_seconds` must be 0 (no limit) or more but is {self.max_seconds}")

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
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["loras"] = tuple(parse_lora(text) for text in d.get("loras", ()))
        d["embeddings"] = tuple(d.get("embeddings", ()))
        return cls(**d)
