"""Benchmark: the collapse guard over many runs: no run that learns is stopped, every run at a collapsing learning
rate is.

    .venv/bin/python bench/guard.py [--only pocket|tiny] [--first N]

Every run trains in this process, one after another, with the guard as shipped (its defaults) and validation every
`every` epochs (pocket's 8 drawings at batch 8 make one step an epoch):

- builtin:pocket learning the star (studio/pocket/concept.py: 8 drawings written under each run's trigger word,
  `pocket concept <trigger>`), the pocket preset (LoRA) at its lr 2e-3 and the pocket-finetune preset at its 2e-4,
  over triggers, seeds, lengths 40-300 and validation every 10-50; then the same presets at lr 1e-2 and above.
- builtin:tiny (random weights) on four crops of scikit-image's astronaut photo, 64 px, LoRA at its default lr and
  above, and a full fine-tune at 1e-2 and above.

For each run the table says how it ended (done, or stopped: the signal and the step), how many validations it made,
how many of them the guard saw as collapsed without stopping (the run had no checkpoint to fall back to yet), the
lowest sameness seen (the pictures' spread over the base's), the highest `strayed` seen (how far every picture left
both the base's pictures and the dataset's, in units of how far those are apart), where the sameness test alone
(the guard before it held pictures against the dataset) would have stopped the run, and on pocket how many of the
last validation's three pictures the pocket checker sees as a star. A summary counts stops per group.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.photos import astronaut_crops  # noqa: E402


@dataclass(frozen=True)
class Case:
    model: str  # "pocket" or "tiny"
    preset: str  # pocket: "pocket" (LoRA) or "pocket-finetune"; tiny: "lora" or "finetune"
    lr: float
    steps: int
    every: int  # validation every this many epochs
    trigger: str = "zq"
    seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.model}-{self.preset}-{self.lr:g}-{self.steps}-v{self.every}-{self.trigger}-s{self.seed}"

    @property
    def high(self) -> bool:
        """A learning rate the issue asks the guard to stop: 1e-2 and above."""
        return self.lr >= 1e-2


def cases() -> list[Case]:
    lora, finetune = "pocket", "pocket-finetune"
    healthy = [Case("pocket", lora, 2e-3, steps, every, trigger, seed) for steps, every, trigger, seed in (
        (40, 10, "zq", 0), (40, 10, "sks", 1), (40, 20, "ohwx", 2), (40, 10, "vlx", 3), (60, 10, "zq", 1),
        (60, 20, "sks", 0), (60, 10, "tok", 2), (60, 20, "kq", 3), (60, 10, "star", 0), (100, 10, "zq", 2),
        (100, 25, "ohwx", 0), (100, 50, "vlx", 1), (150, 50, "sks", 2), (200, 20, "zq", 3), (200, 50, "kq", 0),
        (300, 50, "zq", 0), (300, 25, "sks", 1), (300, 50, "ohwx", 4))]
    healthy += [Case("pocket", finetune, 2e-4, steps, every, trigger, seed) for steps, every, trigger, seed in (
        (60, 10, "zq", 0), (100, 25, "sks", 1), (100, 20, "vlx", 2))]
    high = [Case("pocket", lora, lr, steps, every, trigger, seed) for lr, steps, every, trigger, seed in (
        (1e-2, 60, 10, "zq", 0), (1e-2, 100, 20, "sks", 1), (1e-2, 300, 50, "zq", 0), (2e-2, 60, 10, "vlx", 2),
        (3e-2, 40, 10, "sks", 0), (5e-2, 100, 25, "zq", 3))]
    high += [Case("pocket", finetune, lr, steps, every, trigger, seed) for lr, steps, every, trigger, seed in (
        (1e-2, 40, 10, "zq", 0), (1e-2, 100, 25, "sks", 1), (2e-2, 60, 20, "ohwx", 2))]
    tiny = [Case("tiny", method, lr, 60, every, "sks", seed) for method, lr, every, seed in (
        ("lora", 1e-4, 1, 0), ("lora", 1e-4, 3, 1), ("lora", 1e-3, 3, 0), ("lora", 1e-2, 3, 0), ("lora", 1e-1, 3, 1),
        ("finetune", 1e-2, 3, 0), ("finetune", 1e-1, 3, 0))]
    return healthy + high + tiny


def _studio(root: Path):
    from studio.context import Studio
    from studio.settings import Settings

    return Studio.open(Settings(root=root, models_dir=root / "models", allow_downloads=False))


def _dataset(studio, case: Case) -> str:
    """The run's dataset, written once: pocket's star drawings under the trigger, or four astronaut crops."""
    folder = studio.settings.datasets_dir / (case.trigger if case.model == "pocket" else "astronaut")
    if folder.is_dir():
        return folder.name
    if case.model == "pocket":
        from studio.pocket.concept import write_concept_dataset

        write_concept_dataset(folder, trigger=case.trigger)
        return folder.name
    astronaut_crops(folder, 4, 64, [f"{case.trigger}, a photo, crop {i}" for i in range(4)])
    return folder.name


def _config(studio, case: Case):
    from studio.train.config import RunConfig
    from studio.train.presets import apply_preset

    dataset = _dataset(studio, case)
    if case.model == "pocket":
        config = apply_preset(RunConfig(name=case.name, dataset=dataset, trigger=case.trigger), case.preset)
    else:
        config = RunConfig(name=case.name, dataset=dataset, model="builtin:tiny", trigger=case.trigger,
                           method=case.preset, resolution=64, epochs=0)
    return replace(config, lr=case.lr, max_steps=case.steps, validation_by="epochs", validation_every=case.every,
                   seed=case.seed, export=False).check()


def run_case(studio, case: Case, checker) -> dict:
    from studio.train.loop import train
    from studio.train.runlog import RunLog, read_events
    from studio.train.setup import TrainingDiverged

    config = _config(studio, case)
    run_dir = studio.settings.runs_dir / case.name
    log = RunLog(run_dir)
    started = time.perf_counter()
    try:
        train(studio.store, studio.settings, config, run_dir, log=log, should_stop=lambda: False)
        ended = "done"
    except TrainingDiverged as e:
        ended = f"{e.signal} @{e.step}"
    finally:
        log.close()
    seconds = time.perf_counter() - started
    events = read_events(run_dir)
    base = next(e for e in events if e["type"] == "validation" and e["stage"] == "base")
    seen = [e for e in events if e["type"] == "validation" and e["stage"] != "base"]
    ratios = [e["spread"] / base["spread"] for e in seen if e.get("spread") is not None and base.get("spread")]
    # the guard before this one: the first validation whose spread fell below 0.5x the base's
    old = next((e["step"] for e in seen if e.get("spread") is not None and base.get("spread", 0) >= 0.05
                and e["spread"] < 0.5 * base["spread"]), None)
    stars = None
    if checker is not None and seen and ended == "done":
        from PIL import Image

        stars = sum(label == "star" for label, _ in checker.labels([Image.open(p).convert("RGB")
                                                                      for p in seen[-1]["images"]]))
    return {"case": case, "ended": ended, "validations": len(seen),
            "waited": sum(1 for e in seen if not e.get("passed", True) and "not stopped" in (e.get("guard") or "")),
            "min_spread": min(ratios) if ratios else None,
            "max_strayed": max((e["strayed"] for e in seen if e.get("strayed") is not None), default=None),
            "old": old, "stars": stars, "seconds": seconds}


def _checker(studio):
    from studio.evaluate.checking import checker_folder
    from studio.models.classifier import load_classifier
    from studio.pocket.checker import PocketChecker

    return PocketChecker(load_classifier(checker_folder(studio.store.resolve("builtin:pocket"))))


def _cell(value, form: str) -> str:
    return "-" if value is None else format(value, form)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("pocket", "tiny"), help="only this model's runs")
    parser.add_argument("--first", type=int, default=0, help="only the first N runs (a quick look)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.setdefault("OMP_NUM_THREADS", "1")))
    todo = [c for c in cases() if args.only in (None, c.model)]
    todo = todo[:args.first] if args.first else todo
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmp:
        studio = _studio(Path(tmp))
        checker = _checker(studio) if any(c.model == "pocket" for c in todo) else None
        print(f"{'model':<7} {'method':<16} {'lr':>6} {'steps':>5} {'every':>5} {'trigger':<7} {'seed':>4} "
              f"{'ended':<11} {'val':>3} {'waited':>6} {'same':>5} {'strayed':>7} {'old':>4} {'stars':>5} {'s':>6}",
              flush=True)
        for case in todo:
            row = run_case(studio, case, checker if case.model == "pocket" else None)
            rows.append(row)
            print(f"{case.model:<7} {case.preset:<16} {case.lr:>6g} {case.steps:>5} {case.every:>5} "
                  f"{case.trigger:<7} {case.seed:>4} {row['ended']:<11} {row['validations']:>3} {row['waited']:>6} "
                  f"{_cell(row['min_spread'], '.2f'):>5} {_cell(row['max_strayed'], '.1f'):>7} "
                  f"{_cell(row['old'], 'd'):>4} {_cell(row['stars'], 'd'):>5} {row['seconds']:>6.0f}", flush=True)
    print("same: lowest spread / base spread seen; strayed: highest seen (the images signal needs same < 0.5 and "
          "strayed > 1.5); old: the step the sameness test alone would have stopped at; stars: of the last "
          "validation's 3 pictures (pocket checker); waited: validations seen collapsed, not stopped (no checkpoint "
          "to fall back to yet)")
    for model in ("pocket", "tiny"):
        for high in (False, True):
            group = [r for r in rows if r["case"].model == model and r["case"].high == high]
            if not group:
                continue
            stopped = [r for r in group if r["ended"] != "done"]
            old = [r for r in group if r["old"] is not None]
            by = sorted({r["ended"].split(" ")[0] for r in stopped})
            print(f"{model} at lr {'1e-2 and above' if high else 'below 1e-2'}: {len(group)} runs, "
                  f"{len(stopped)} stopped{' (by ' + ', '.join(by) + ')' if by else ''}; the sameness test alone "
                  f"would have stopped {len(old)}")


if __name__ == "__main__":
    main()
