"""Two subjects in one model, both kept: seed 004's two-subject attempt, offline on builtin:pocket.

Seed 004 tuned a model on a second subject after the first and was left with the second only. Here the subjects are
two shapes the pocket model never saw (a star under `zq`, a heart under `vlx`, eight drawings each). `demonstrate`
trains one LoRA on both at once (the pocket preset, balanced sampling, each subject seeing as many pictures as it
would alone), then the sequential way: a LoRA on the star, continued on the heart ("add a subject",
RunConfig.continue_from). For each model the pocket checker counts, over the seeds, how often each trigger's prompt
is drawn as its own shape and as the other's, and whether a prompt of the base's own ("a blue circle") still comes
out a blue circle (docs/training.md has the figures):

    .venv/bin/python bench/two_subjects.py --steps 120 --seeds 10
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

SUBJECTS = (("zq", "star", "tsa"), ("vlx", "heart", "tsb"))  # (trigger, shape, dataset)
BASE_PROMPT = "a blue circle on a white background"  # what the base draws; the LoRA must not change it


def subject_prompt(trigger: str) -> str:
    return f"a red {trigger} on a white background"


@dataclass(frozen=True)
class Count:
    """What one model draws for one prompt over the seeds."""

    model: str  # "base", "both at once", "A alone", "A then B"
    prompt: str
    pictures: int
    labels: dict  # the checker's label -> pictures
    colors: dict  # foreground colour -> pictures

    def of(self, label: str) -> int:
        return self.labels.get(label, 0)

    def line(self) -> str:
        labels = ", ".join(f"{k} {v}" for k, v in sorted(self.labels.items(), key=lambda kv: -kv[1]))
        return f"{self.model:13s} {self.prompt!r:42s} ({self.pictures} seeds): {labels}"


@dataclass
class Demonstration:
    steps: int  # per subject
    seeds: int
    cfg: float
    counts: list[Count] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, model: str, prompt: str) -> Count:
        return next(c for c in self.counts if c.model == model and c.prompt == prompt)

    def summary(self) -> list[str]:
        """The figures in words: each trigger's own shape and the other's, per model; the base prompt."""
        (ta, sa, _), (tb, sb, _) = SUBJECTS
        out = []
        for model in dict.fromkeys(c.model for c in self.counts):
            parts = []
            for trigger, shape, other in ((ta, sa, sb), (tb, sb, sa)):
                found = [c for c in self.counts if c.model == model and c.prompt == subject_prompt(trigger)]
                if found:
                    c = found[0]
                    parts.append(f"{trigger}: {shape} {c.of(shape)}/{c.pictures}, {other} {c.of(other)}/{c.pictures}")
            base = [c for c in self.counts if c.model == model and c.prompt == BASE_PROMPT]
            if base:
                c = base[0]
                parts.append(f"blue circle: circle {c.of('circle')}/{c.pictures}, blue "
                             f"{c.colors.get('blue', 0)}/{c.pictures}")
            out.append(f"{model:13s} " + "; ".join(parts))
        return out


def count(studio, model: str, prompt: str, seeds: int, loras: list, cfg: float) -> Count:
    from studio.pocket.concept import check_prompt

    result = check_prompt(studio, prompt, seeds=seeds, loras=loras, cfg=cfg)
    return Count(model, prompt, len(result.images), dict(result.labels), {str(k): v for k, v in result.colors.items()})


def _train(studio, config) -> None:
    from studio.train.loop import train
    from studio.train.runlog import RunLog

    run_dir = studio.settings.runs_dir / config.name
    log = RunLog(run_dir)
    try:
        train(studio.store, studio.settings, config.check(), run_dir, log=log, should_stop=lambda: False)
    finally:
        log.close()


def demonstrate(studio, *, steps: int = 120, seeds: int = 10, count_per_subject: int = 8, cfg: float = 4.0,
                sequential: bool = True, prefix: str = "two", log=print) -> Demonstration:
    """Write the two datasets, train the joint LoRA (2 x `steps`: each subject sees as many pictures as in a run of
    its own) and, with `sequential`, the star alone for `steps` and then continued on the heart for `steps`; count
    what each model draws (the base's counts first). In this process, through the studio's one training loop."""
    from dataclasses import replace

    from studio.generate import LoraChoice
    from studio.pocket.concept import write_concept_dataset
    from studio.train.config import RunConfig, Subject
    from studio.train.presets import apply_preset

    started = time.perf_counter()
    for trigger, shape, dataset in SUBJECTS:
        folder = studio.settings.datasets_dir / dataset
        if not folder.is_dir():
            write_concept_dataset(folder, trigger=trigger, shape=shape, count=count_per_subject)
    (ta, _, da), (tb, _, db) = SUBJECTS
    prompts = (subject_prompt(ta), subject_prompt(tb), BASE_PROMPT)
    out = Demonstration(steps, seeds, cfg)

    def measure(model: str, loras: list, which=prompts) -> None:
        for prompt in which:
            out.counts.append(count(studio, model, prompt, seeds, loras, cfg))
            log(out.counts[-1].line())

    measure("base", [])
    pocket = apply_preset(RunConfig(name=f"{prefix}-both", dataset=da, trigger=ta), "pocket")
    joint = replace(pocket, extra_subjects=[Subject(db, tb)], max_steps=2 * steps, validation_every=0)
    _train(studio, joint)
    measure("both at once", [LoraChoice(joint.name, 1.0)])
    if sequential:
        first = replace(pocket, name=f"{prefix}-a", max_steps=steps, validation_every=0)
        _train(studio, first)
        measure("A alone", [LoraChoice(first.name, 1.0)], prompts[:1] + prompts[2:])
        then = replace(pocket, name=f"{prefix}-a-then-b", dataset=db, trigger=tb, max_steps=steps, validation_every=0,
                       continue_from=first.name)
        _train(studio, then)
        measure("A then B", [LoraChoice(then.name, 1.0)])
    out.seconds = time.perf_counter() - started
    return out
