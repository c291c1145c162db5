"""Demonstration: two new shapes under two triggers in one LoRA on builtin:pocket, both kept, against the same two
taught one after the other (studio/pocket/two_subjects.py), offline.

    .venv/bin/python bench/two_subjects.py [--steps 120] [--seeds 10] [--cfg 4] [--threads 2] [--json out.json]

Writes 8 star drawings captioned "zq" and 8 heart drawings captioned "vlx", trains the pocket preset (rank 8, all
layers, batch 8, lr 2e-3) on both at once for 2 x --steps (balanced: each shape seen as often as in a run of its
own), then on the star alone for --steps and, continuing that LoRA, on the heart for --steps. Counts with the pocket
checker, for seeds 0..N-1, what "a red zq / a red vlx on a white background" and the base's own "a blue circle on a
white background" come out as, for the base (the baseline, measured in the same run) and each LoRA.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120, help="per subject (the joint run trains twice as many)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--cfg", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-sequential", action="store_true", help="only the joint run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    import torch

    from studio.context import Studio
    from studio.pocket.two_subjects import demonstrate
    from studio.settings import Settings

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio.open(Settings(root=Path(tmp), allow_downloads=False, default_model="builtin:pocket"))
        result = demonstrate(studio, steps=args.steps, seeds=args.seeds, cfg=args.cfg,
                             sequential=not args.no_sequential)
    print(f"{args.steps} steps per subject, {args.seeds} seeds, CFG {args.cfg:g}, {result.seconds:.0f} s")
    for line in result.summary():
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"steps": result.steps, "seeds": result.seeds, "cfg": result.cfg,
                                         "counts": [c.__dict__ for c in result.counts]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
