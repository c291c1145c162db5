"""`python -m studio pocket`: a dataset of a shape builtin:pocket never saw, and the pocket checker's view of what
a prompt draws (with and without LoRAs), for the offline teach-it-a-concept walkthrough."""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    from studio.generate.request import parse_lora
    from studio.pocket.scenes import NEW_SHAPES

    p = sub.add_parser("pocket", help="builtin:pocket: write a new-shape dataset, check what a prompt draws")
    actions = p.add_subparsers(dest="action", required=True)
    concept = actions.add_parser("concept", help="write drawings of a shape the pocket model never saw, captioned "
                                                 "with a trigger word, as a dataset")
    concept.add_argument("name", help="dataset name under workspace/datasets/, or a folder path")
    concept.add_argument("--trigger", default="", help="the word that stands for the shape (default: the name)")
    concept.add_argument("--shape", choices=NEW_SHAPES, default="star")
    concept.add_argument("--count", type=int, default=8, help="how many drawings (5 to 10 are plenty)")
    concept.add_argument("--bystander", action="store_true",
                         help="give every drawing a blurred cyan 'bystander' and its mask (<stem>.mask.png), as the "
                              "Dataset tab protects bystanders")
    demo = actions.add_parser("demo", help="the offline demo in one command: write the star dataset zq, teach "
                                           "builtin:pocket the star (the pocket preset), then check what it draws")
    demo.add_argument("--seeds", type=int, default=20, help="seeds checked with and without the LoRA")
    check = actions.add_parser("check", help="generate a prompt on builtin:pocket over seeds and say what the "
                                             "pocket checker sees (shape or face kind, colour)")
    check.add_argument("prompt")
    check.add_argument("--lora", action="append", default=[], type=parse_lora, metavar="NAME:WEIGHT",
                       help="a LoRA file or models/lora name (repeatable); the prompt is also checked without")
    check.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1")
    check.add_argument("--steps", type=int, default=20)
    check.add_argument("--cfg", type=float, default=4.0)
    check.add_argument("--grid", type=Path, default=None, help="also save the pictures as one PNG here")
    check.set_defaults(gpu_work=True)  # it generates: it takes its turn on the device
    p.set_defaults(run=run)


def run(args, studio) -> int:
    from studio.pocket.bystander import bystander_seen
    from studio.pocket.concept import check_prompt, write_concept_dataset

    if args.action == "concept":
        name = Path(args.name)
        folder = name if len(name.parts) > 1 or name.is_absolute() else studio.settings.datasets_dir / name
        written = write_concept_dataset(folder, trigger=args.trigger or name.name, shape=args.shape, count=args.count,
                                        bystander=args.bystander)
        masks = " and masks (a blurred bystander in each)" if args.bystander else ""
        print(f"wrote {len(written)} drawings of a {args.shape} with captions{masks} to {folder}")
        print(f"first caption: {written[0].with_suffix('.txt').read_text().strip()}")
        return 0
    if args.action == "demo":
        return _demo(args, studio)
    variants = [("without LoRA", [])] + ([("with " + ", ".join(f"{c.name}:{c.weight:g}" for c in args.lora),
                                           args.lora)] if args.lora else [])
    rows = []
    for title, loras in variants:
        result = check_prompt(studio, args.prompt, seeds=args.seeds, loras=loras, steps=args.steps, cfg=args.cfg)
        rows.append(result.images)
        labels = ", ".join(f"{label} {n}" for label, n in result.labels.most_common())
        colors = ", ".join(f"{color or 'none'} {n}" for color, n in result.colors.most_common())
        seen = sum(bystander_seen(im) for im in result.images)  # said when any (the bystander walkthrough)
        print(f"{title}: {args.prompt!r} over {args.seeds} seeds: {labels}; colours: {colors}"
              + (f"; cyan bystander in {seen}" if seen else ""))
    if args.grid:
        from studio import fileio
        from studio.pocket.evaluate import image_grid

        with fileio.atomic_path(args.grid) as tmp:
            image_grid(rows).save(tmp, format="PNG")
        print(f"wrote {args.grid}")
    return 0


def _demo(args, studio) -> int:
    from studio import train
    from studio.generate.request import LoraChoice
    from studio.gpu import device_turn
    from studio.pocket.concept import check_prompt
    from studio.pocket.demo import DEMO_PROMPT, start_demo

    started = start_demo(studio)
    print(started.message)
    status = train.wait_run(studio, started.run)
    print(status.line())
    if status.state != "done":
        return status.exit_code
    with device_turn(studio, "pocket demo") as turn:  # the checks generate: a turn on the device
        if turn.note:
            print(turn.note, file=sys.stderr, flush=True)
        for title, loras in (("without LoRA", []), (f"with {started.run}:1", [LoraChoice(started.run, 1.0)])):
            result = check_prompt(studio, DEMO_PROMPT, seeds=args.seeds, loras=loras)
            labels = ", ".join(f"{label} {n}" for label, n in result.labels.most_common())
            print(f"{title}: {DEMO_PROMPT!r} over {args.seeds} seeds: {labels}")
    return 0
