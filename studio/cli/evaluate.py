"""`python -m studio evaluate`: a prompt x seed x variant grid scored by what fits (sim-score, CLIP, the pocket
checker), one line per image."""

from __future__ import annotations

import sys

from studio.fields import declared


def register(sub) -> None:
    from studio.cli.flags import add_flags
    from studio.evaluate.request import STUDY_SEEDS, EvaluationRequest

    p = sub.add_parser("evaluate", help="compare models over prompts x seeds: likeness (sim-score), CLIP score, and "
                                        "what builtin:pocket drew")
    add_flags(p, EvaluationRequest, skip=("seeds", "clip_model"), required=("name", "variants"))
    seeds = p.add_mutually_exclusive_group()
    add_flags(seeds, EvaluationRequest, skip=[n for n in declared(EvaluationRequest) if n != "seeds"])
    seeds.add_argument("--n-seeds", type=int, default=None,
                       help=f"the first N of seed 000's seeds ({','.join(map(str, STUDY_SEEDS))}), then more; without "
                            f"--seeds or this: those five, or 0,1,2,3 for builtin:pocket")
    p.add_argument("--clip", dest="clip_model", default="auto",
                   help=f"{declared(EvaluationRequest)['clip_model'].help}: auto (the first real CLIP on disk, else "
                        f"none), none, builtin:tiny-clip (random weights, for tests), a models/clip/ folder, a path or "
                        f"a hub id")
    p.set_defaults(run=run, gpu_work=True)  # it loads models: it takes its turn on the device


def request_from_args(args, studio):
    """The EvaluationRequest the flags ask for: what was not given (prompts, seeds, CLIP) from the studio's
    starting values, as the Evaluate tab starts with them; then the one conversion the tab and /evaluate go
    through."""
    from studio.cli.flags import given
    from studio.evaluate import EvaluationRequest, study_seeds
    from studio.evaluate.defaults import defaults_for
    from studio.fields import build
    from studio.models.clip import default_clip

    values = given(args, EvaluationRequest)
    start = defaults_for(studio, list(args.variants))
    if args.n_seeds is not None:
        values["seeds"] = study_seeds(args.n_seeds)
    if "prompts" not in values or "seeds" not in values:
        print(f"defaults: {start.why}", file=sys.stderr)
    values.setdefault("prompts", start.prompts)
    values.setdefault("seeds", start.seeds)
    values.setdefault("reference", start.reference)
    clip = args.clip_model.strip()
    values["clip_model"] = {"auto": default_clip(studio.settings), "none": ""}.get(clip.lower(), clip)
    return build(EvaluationRequest, values)


def run(args, studio) -> int:
    from studio.evaluate import evaluate, format_table
    from studio.evaluate.scoring import against_lines

    request = request_from_args(args, studio)
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
