"""`python -m studio evaluate`: a prompt x seed x variant grid scored by what fits (sim-score, CLIP, the pocket
checker), one line per image."""

from __future__ import annotations

import sys


def _seeds(text: str) -> list[int]:
    import argparse

    from studio.evaluate import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def register(sub) -> None:
    from studio.evaluate.request import STUDY_SEEDS, EvaluationRequest
    from studio.generate.samplers import samplers_help

    d = EvaluationRequest(name="", prompts=[], seeds=[], variants=[])
    p = sub.add_parser("evaluate", help="compare models over prompts x seeds: likeness (sim-score), CLIP score, and "
                                        "what builtin:pocket drew")
    p.add_argument("--name", required=True, help="saved as workspace/evaluations/NAME/")
    p.add_argument("--prompt", action="append", default=None,
                   help="a prompt (repeatable; default: seed 000's four, with the LoRA's trigger word; for "
                        "builtin:pocket its shape prompts)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=_seeds, default=None,
                       help=f"fixed seeds, comma separated (default: seed 000's {','.join(map(str, STUDY_SEEDS))}; "
                            f"0,1,2,3 for builtin:pocket)")
    seeds.add_argument("--n-seeds", type=int, default=None, help="the first N of seed 000's seeds, then more")
    p.add_argument("--variant", action="append", required=True, metavar="LABEL=MODEL[+lora:NAME:W][+embedding:NAME]",
                   help="a model to compare (repeat, at least 2); MODEL may be empty for the default base, e.g. "
                        "control=builtin:tiny or mine=+lora:mine:0.8")
    p.add_argument("--reference", default="", help="a dataset name or a folder of photos of the subject, for the "
                                                   "likeness score (default: none)")
    p.add_argument("--also-against", action="append", default=None, metavar="DATASET",
                   help="also sim-score every picture against this dataset (repeat): a LoRA of several subjects "
                        "scored against each subject's faces")
    p.add_argument("--clip", default="auto", help="CLIP model for CLIP scores: auto (the first real CLIP on disk, "
                                                  "else none), none, builtin:tiny-clip (random weights, for tests), "
                                                  "a models/clip/ folder, a path or a hub id")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--cfg", type=float, default=None, help="default: the model's (4 for builtin:pocket) or the "
                                                           "family's (7; 1 for FLUX)")
    p.add_argument("--sampler", default=None, help=f"default: the family's; by family: {samplers_help()}")
    p.add_argument("--width", type=int, default=None, help="default: the model's native size")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--tolerance", type=float, default=d.tolerance, help="sim-score counted as the same person")
    p.set_defaults(run=run, gpu_work=True)  # it loads models: it takes its turn on the device


def run(args, studio) -> int:
    from studio.evaluate import EvaluationRequest, evaluate, format_table, parse_variant, study_seeds
    from studio.evaluate.defaults import defaults_for
    from studio.evaluate.scoring import against_lines
    from studio.models.clip import default_clip

    variants = [parse_variant(v) for v in args.variant]
    start = defaults_for(studio, variants)
    seeds = args.seeds if args.seeds is not None else (
        study_seeds(args.n_seeds) if args.n_seeds is not None else start.seeds)
    clip = {"auto": default_clip(studio.settings), "none": ""}.get(args.clip.strip().lower(), args.clip.strip())
    if not args.prompt or args.seeds is None and args.n_seeds is None:
        print(f"defaults: {start.why}", file=sys.stderr)
    request = EvaluationRequest(
        name=args.name, prompts=args.prompt or start.prompts, seeds=seeds, variants=variants,
        reference=args.reference, clip_model=clip, negative_prompt=args.negative, steps=args.steps,
        cfg=args.cfg, width=args.width, height=args.height, sampler=args.sampler, tolerance=args.tolerance,
        also_against=list(args.also_against or []),
    )
    last = [""]

    def progress(fraction: float, message: str) -> None:
        where = message.split(" (", 1)[0]
        if where != last[0]:  # one line per image or stage on stderr, not one per denoising step
            last[0] = where
            print(f"[{fraction:4.0%}] {where}", file=sys.stderr, flush=True)

    report = evaluate(studio, request, progress=progress)
    for r in report.rows:
        scores = [f"sim={'no face' if r.sim_score is None else f'{r.sim_score:.4f}'}"] if r.likeness else []
        if r.drawn is not None:
            verdict = "" if r.as_asked is None else " (as asked)" if r.as_asked else " (not as asked)"
            scores.append(f"drawn={' '.join(w for w in (r.drawn_color, r.drawn) if w)}{verdict}")
        if r.clip_score is not None:
            scores.append(f"clip={r.clip_score:.2f}")
        print("\t".join([str(report.folder / r.file), f"variant={r.variant}", f"seed={r.seed}", *scores,
                         f"prompt={r.prompt!r}"]))
    print()
    print(format_table(report.by_variant(), request.tolerance, likeness=report.has_likeness, clip=report.has_clip,
                       checker=report.has_checker))
    for line in against_lines(report.rows, [v.label for v in request.variants], request.reference):
        print(line)
    print()
    for note in [*report.notes, report.clip_note]:
        print(note)
    where = f"Reference: {report.reference}. " if report.reference else ""
    print(f"{where}Saved in {report.folder} ({report.seconds:.1f} s).")
    return 0
