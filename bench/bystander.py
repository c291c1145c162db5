"""Demonstration: a blurred "bystander" in every training drawing, learnt by a LoRA trained on every pixel and not by
one trained with the masked loss (studio/pocket/bystander.py), on builtin:pocket, offline.

    .venv/bin/python bench/bystander.py [--steps 300] [--seeds 20] [--threads 2] [--also-cfg 4] [--json out.json]

Trains the pocket preset (rank 8, all layers, batch 8, lr 2e-3) on 8 star drawings that each carry a blurred cyan head
and its mask, once with --no-masked-loss and once with the masked loss, then generates the demonstration's three
prompts for seeds 0..N-1 with the base, and with each LoRA, at CFG 1 (and again at --also-cfg), and prints how many
pictures show the smudge (pixels bluer than the background) and how many the pocket checker calls a star. The base's
figures are the baseline, measured in the same run.
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
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--also-cfg", type=float, nargs="*", default=[4.0],
                        help="measure the same LoRAs again at these CFG scales (the demonstration samples at 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    import torch

    from studio.context import Studio
    from studio.generate import LoraChoice
    from studio.pocket.bystander import demonstrate, share
    from studio.settings import Settings

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        studio = Studio.open(Settings(root=root, allow_downloads=False, default_model="builtin:pocket"))
        print("sampled at CFG 1 (one pass, as FLUX.1-dev samples):")
        result = demonstrate(studio, steps=args.steps, seeds=args.seeds)
        print(f"{args.steps} steps, {len(result.prompts)} prompts x {args.seeds} seeds, {result.seconds:.0f} s")
        again = {}
        for cfg in args.also_cfg:
            print(f"the same models sampled at CFG {cfg:g}:")
            again[cfg] = []
            for label, loras in (("base", []), ("blur only", [LoraChoice("zqb-blur", 1.0)]),
                                 ("masked loss", [LoraChoice("zqb-masked", 1.0)])):
                again[cfg].append(share(studio, label, result.prompts, args.seeds, loras, cfg=cfg))
                print(again[cfg][-1].line())
    if args.json:
        args.json.write_text(json.dumps({"steps": result.steps, "seeds": result.seeds, "prompts": result.prompts,
                                         "cfg_1": [s.__dict__ for s in result.shares],
                                         **{f"cfg_{c:g}": [s.__dict__ for s in v] for c, v in again.items()}},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
