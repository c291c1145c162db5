"""`python -m studio evaluate`: a prompt x seed x variant grid scored by sim-score (and CLIP), one line per image."""

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
    from studio.generate.samplers import SAMPLERS

    d = EvaluationRequest(name="", prompts=[], seeds=[], variants=[], reference="")
    p = sub.add_parser("evaluate", help="compare models: likeness (sim-score) and CLIP score over prompts x seeds")
    p.add_argument("--name", required=True, help="saved as workspace/evaluations/NAME/")
    p.add_argument("--prompt", action="append", required=True, help="a prompt (repeatable)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=_seeds, default=None,
                       help=f"fixed seeds, comma separated (default: seed 000's {','.join(map(str, STUDY_SEEDS))})")
    seeds.add_argument("--n-seeds", type=int, default=None, help="the first N of a fixed list of seeds")
    p.add_argument("--variant", action="append", required=True, metavar="LABEL=MODEL[+lora:NAME:W][+embedding:NAME]",
                   help="a model to compare (repeat, at least 2); MODEL may be empty for the default base, e.g. "
                        "control=builtin:tiny or mine=+lora:mine:0.8")
    p.add_argument("--reference", required=True, help="a dataset name or a folder of photos of the subject")
    p.add_argument("--clip", default="", help="CLIP model for CLIP scores (builtin:tiny-clip, a models/clip/ folder, "
                                              "a path or a hub id such as openai/clip-vit-base-patch16); default: "
                                              "no CLIP score")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--cfg", type=float, default=None, help="default: the family's (7; 1 for FLUX)")
    p.add_argument("--sampler", default=None, help=f"default: the family's; one of: {', '.join(SAMPLERS)}")
    p.add_argument("--width", type=int, default=None, help="default: the model's native size")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--tolerance", type=float, default=d.tolerance, help="sim-score counted as the same person")
    p.set_defaults(run=run)


def run(args, studio) -> int:
    from studio.evaluate import EvaluationRequest, evaluate, format_table, parse_variant, study_seeds
    from studio.evaluate.request import STUDY_SEEDS

    seeds = args.seeds if args.seeds is not None else (
        study_seeds(args.n_seeds) if args.n_seeds is not None else list(STUDY_SEEDS))
    request = EvaluationRequest(
        name=args.name, prompts=args.prompt, seeds=seeds, variants=[parse_variant(v) for v in args.variant],
        reference=args.reference, clip_model=args.clip, negative_prompt=args.negative, steps=args.steps,
        cfg=args.cfg, width=args.width, height=args.height, sampler=args.sampler, tolerance=args.tolerance,
    )
    last = [""]

    def progress(fraction: float, message: str) -> None:
        where = message.split(" (", 1)[0]
        if where != last[0]:  # one line per image or stage on stderr, not one per denoising step
            last[0] = where
            print(f"[{fraction:4.0%}] {where}", file=sys.stderr, flush=True)

    report = evaluate(studio, request, progress=progress)
    for r in report.rows:
        clip = "" if r.clip_score is None else f"\tclip={r.clip_score:.2f}"
        sim = "no face" if r.sim_score is None else f"{r.sim_score:.4f}"
        print(f"{report.folder / r.file}\tvariant={r.variant}\tseed={r.seed}\tsim={sim}{clip}\tprompt={r.prompt!r}")
    print()
    print(format_table(report.by_variant(), request.tolerance))
    print(f"\n{report.clip_note} Reference: {report.reference}. Saved in {report.folder} ({report.seconds:.1f} s).")
    return 0
