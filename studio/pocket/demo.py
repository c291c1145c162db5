"""The offline demo in one call: builtin:pocket learns a star under the trigger word `zq`, from its own concept
dataset, with the studio's own LoRA training (the "pocket" preset). The web studio's first-run panel and
`python -m studio pocket demo` both run it."""

from __future__ import annotations

from dataclasses import dataclass

from studio.pocket.concept import write_concept_dataset

DEMO_TRIGGER = "zq"
DEMO_PROMPT = "a red zq on a white background"


@dataclass
class DemoStart:
    run: str  # the run now training (or the one that already did)
    dataset: str
    made_dataset: bool  # the concept drawings were written now
    started: bool  # False: a demo run was already training or done, and is shown instead
    message: str


def demo_dataset(studio, trigger: str = DEMO_TRIGGER) -> tuple[str, bool]:
    """The concept dataset `trigger` (8 star drawings captioned "a red zq on ..."), written when missing. A folder
    of that name that holds something else is refused, never overwritten."""
    folder = studio.settings.datasets_dir / trigger
    if folder.is_dir() and any(folder.iterdir()):
        drawings = sorted(p.name for p in folder.glob(f"{trigger}_*.png"))
        if not drawings:
            raise ValueError(f"dataset {trigger!r} exists and is not the demo's drawings ({folder}); the demo does not "
                             f"touch it: rename that dataset to run the demo")
        return trigger, False
    write_concept_dataset(folder, trigger=trigger)
    return trigger, True


def start_demo(studio, trigger: str = DEMO_TRIGGER) -> DemoStart:
    """Make the dataset if needed and start the pocket preset on it; a demo run that is training or done is shown
    instead of starting another. Returns what happened, in words for the user."""
    from studio import train
    from studio.train.config import RunConfig
    from studio.train.presets import PRESETS, preset_name

    dataset, made = demo_dataset(studio, trigger)
    runs = {r.name: r for r in train.list_runs(studio)}
    taken = [name for name in runs if name == trigger or name.startswith(f"{trigger}-")]
    for name in taken:
        status = runs[name]
        if status.config.dataset == dataset and status.state in ("queued", "starting", "running", "done"):
            verb = {"done": "has finished", "queued": "waits in the queue"}.get(status.state, "is training")
            return DemoStart(name, dataset, made, False, f"The demo run {name!r} {verb}: {_next_step(name)}")
    name = trigger if trigger not in runs else next(f"{trigger}-{i}" for i in range(2, 1000)
                                                     if f"{trigger}-{i}" not in runs)
    config = RunConfig(name=name, dataset=dataset, trigger=trigger, **PRESETS[preset_name("pocket")]).check()
    status = train.start_run(studio, config)
    made_words = f"wrote dataset {dataset!r} (8 star drawings, captioned \"{DEMO_PROMPT}\" and so on), " if made else ""
    began = f"queued ({status.message})" if status.state == "queued" else "started"
    return DemoStart(status.name, dataset, made, True,
                     f"Started: {made_words}training run {status.name!r} {began} (300 steps, a few minutes on 2 CPU "
                     f"cores). {_next_step(status.name)}")


def _next_step(run: str) -> str:
    # the prompt as a code span: the web page shows "<lora:...>" as written (not as an HTML tag), ready to copy
    return (f"when it is done, Generate draws stars with `{DEMO_PROMPT} <lora:{run}:1>` (pocket has never seen one "
            f"without it)")
