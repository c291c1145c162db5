"""`python -m studio train`: train a LoRA, DreamBooth or fully fine-tuned model or a textual-inversion embedding,
streaming progress."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

# RunConfig's settings that the train verb takes its own way: one --dataset, --trigger and --repeats per subject
_SUBJECT_FLAGS = ("dataset", "trigger", "repeats")


def register(sub) -> None:
    from studio.cli.flags import add_flags
    from studio.fields import declared
    from studio.train.config import RunConfig
    from studio.train.presets import PRESETS

    settings = declared(RunConfig)
    p = sub.add_parser("train", help="train a LoRA, DreamBooth or fine-tuned model or a textual-inversion embedding")
    add_flags(p, RunConfig, skip=_SUBJECT_FLAGS)  # every other setting, by its declared flag
    p.add_argument("--dataset", action="append", default=None,
                   help=f"{settings['dataset'].help}; again for a second subject (one --trigger each, in the same "
                        f"order)")
    p.add_argument("--trigger", action="append", default=None,
                   help=f"{settings['trigger'].help}; one per --dataset")
    p.add_argument("--repeats", type=int, action="append", default=None,
                   help=f"{settings['repeats'].help}; with several datasets once for all or once each")
    p.add_argument("--class-word", action="append", default=None,
                   help="several datasets: each subject's class (person, dog...), once each; DreamBooth's prior "
                        "images are 'a photo of a <class word>', textual inversion starts each token from it")
    p.add_argument("--preset", default=None, help=f"start from a preset: {', '.join(PRESETS)} (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue the run named --out from its last checkpoint")
    p.add_argument("--config", type=Path, default=None, help="a run.json to start from; flags override it")
    p.add_argument("--dry-run", action="store_true",
                   help="print the run's memory plan, phase by phase, and exit: 0 when it fits the GPU, 2 when not "
                        "(naming the preset or settings that would)")
    p.add_argument("--vram-gb", type=float, default=None,
                   help="plan for a CUDA GPU of this many GB instead of this machine's device")
    p.add_argument("--force", action="store_true", help="start the run even when its memory plan does not fit")
    p.set_defaults(run=run)


def _resume(args, studio):
    """`--resume --out NAME [--epochs N | --steps N] [--lr X]`: the run's own settings, trained longer or at
    another learning rate (studio.train.jobs.resume_run: the one resume rule)."""
    from studio.cli.flags import flags_given
    from studio.fields import declared
    from studio.train import jobs
    from studio.train.config import RunConfig

    if not args.name:
        raise ValueError("`--out` is required with --resume: the name of the run to continue")
    others = flags_given(args, RunConfig, [n for n in declared(RunConfig) if n not in ("name", "epochs", "max_steps",
                                                                                       "lr", *_SUBJECT_FLAGS)])
    others += [f"--{flag.replace('_', '-')}" for flag in (*_SUBJECT_FLAGS, "class_word")
               if getattr(args, flag) is not None]
    others += ["--preset"] * bool(args.preset) + ["--config"] * (args.config is not None)
    if others:
        raise ValueError(f"a resumed run keeps its settings: only --epochs, --steps and --lr can change, not "
                         f"{', '.join(others)}")
    max_steps = args.max_steps if args.max_steps is not None else (0 if args.epochs is not None else None)
    return jobs.resume_run(studio, args.name, force=args.force, epochs=args.epochs, max_steps=max_steps, lr=args.lr)


def _subjects(args) -> dict:
    """The subject flags as RunConfig fields: one --dataset as always; several, each with its own --trigger (and
    --class-word, --repeats when given per dataset), the first as `dataset`/`trigger`, the rest `extra_subjects`."""
    from studio.train.config import Subject

    datasets, triggers = args.dataset or [], args.trigger or []
    words, repeats = args.class_word or [], args.repeats or []
    if len(datasets) <= 1:
        for flag, values in (("--trigger", triggers), ("--repeats", repeats)):
            if len(values) > 1:
                raise ValueError(f"`{flag}` is given {len(values)} times for {len(datasets)} --dataset: give one "
                                 f"--dataset per subject, each with its --trigger")
        if words:
            raise ValueError("`--class-word` is for several datasets (one each); for one subject use --init-word "
                             "(textual inversion) or --class-prompt (DreamBooth)")
        given = {"dataset": datasets[0]} if datasets else {}
        given.update({"trigger": triggers[0]} if triggers else {})
        return {**given, **({"repeats": repeats[0]} if repeats else {})}
    if len(triggers) != len(datasets):
        raise ValueError(f"`--trigger` is given {len(triggers)} times for {len(datasets)} --dataset: each subject "
                         f"needs its own trigger word, in the same order as the datasets")
    if words and len(words) != len(datasets):
        raise ValueError(f"`--class-word` is given {len(words)} times for {len(datasets)} --dataset: give one per "
                         f"dataset, or none")
    if len(repeats) not in (0, 1, len(datasets)):
        raise ValueError(f"`--repeats` is given {len(repeats)} times for {len(datasets)} --dataset: give it once (for "
                         f"all) or once per dataset")
    per_repeats = repeats if len(repeats) == len(datasets) else [0] * len(datasets)
    given = {"dataset": datasets[0], "trigger": triggers[0],
             "extra_subjects": [Subject(d, t, words[k + 1] if words else "", per_repeats[k + 1])
                                for k, (d, t) in enumerate(zip(datasets[1:], triggers[1:]))]}
    if repeats:
        given["repeats"] = repeats[0]
    if words:
        given["init_word"] = words[0]
        given["class_prompt"] = f"a photo of a {words[0]}"
    return given


def config_from_args(args):
    """RunConfig from the flags given (the one conversion of studio.fields, as the Train tab's and the API's), over
    `--config run.json` and `--preset`."""
    from studio.cli.flags import given as given_flags
    from studio.fields import values
    from studio.train.config import RunConfig

    given = values(RunConfig, {**given_flags(args, RunConfig), **_subjects(args)})
    if args.epochs is not None and args.max_steps is None:
        given["max_steps"] = 0  # epochs asked for by name rule over a preset's or config's step count
    base = RunConfig.load(args.config) if args.config is not None else None
    if base is None:
        for flag, field in (("out", "name"), ("dataset", "dataset")):
            if field not in given:
                raise ValueError(f"`--{flag}` is required (or give --config run.json)")
        base = RunConfig(name=given["name"], dataset=given["dataset"])
    if args.preset:
        from studio.train.presets import apply_preset

        base = apply_preset(base, args.preset)
    return replace(base, **given)


def submit(args, studio):
    """Queue the run the flags ask for (or continue one, with --resume); it starts at once when the device is free."""
    from studio.fileio import clean_stale_files
    from studio.train import jobs

    clean_stale_files(studio.settings.runs_dir)  # what a killed run left half-written
    if args.resume:
        return _resume(args, studio)
    return jobs.start_run(studio, config_from_args(args), force=args.force, vram_gb=args.vram_gb)


def dry_run(args, studio) -> int:
    """`--dry-run`: the memory plan of the run the flags ask for, its verdict on the device (or --vram-gb) and what
    would fit; nothing is queued. The dataset need not exist (nor be named)."""
    from studio.train import fit

    if args.resume:
        raise ValueError("`--dry-run` plans a new run; a resumed run keeps the settings it was started with")
    args.name = args.name or "dry-run"
    args.dataset = args.dataset or ["dry-run"]
    config = config_from_args(args).check()
    _, verdict = fit.plan_for(studio, config, args.vram_gb)
    for line in verdict.lines():
        print(line, flush=True)
    return 2 if verdict.fits is False else 0


def run(args, studio) -> int:
    from studio.cli.follow import follow
    from studio.train import jobs, sampling

    if args.dry_run:
        return dry_run(args, studio)
    status = submit(args, studio)
    print(f"run {status.name}: {status.run_dir}", flush=True)
    seen, last_print = 0, 0.0

    said = set()

    def show(current):
        nonlocal seen, last_print
        for text in current.messages[seen:]:
            if text not in said:  # (a warning the studio gave when queuing the run, the run gives again)
                print(text, flush=True)
                said.add(text)
        seen = len(current.messages)
        if time.monotonic() - last_print > 1.0 and current.step:
            print(current.line(), flush=True)
            last_print = time.monotonic()

    status, _ = follow(studio, jobs.RUNS, status.name, show, cancelling="cancelling (a checkpoint is written first)...")
    print(status.line(), flush=True)
    for warning in status.warnings:  # again at the end, where the eye lands
        print(f"note: {warning}", file=sys.stderr, flush=True)
    if status.state == "failed" and status.failure_code == 3:  # the guard's one-line reason, where scripts look
        print(f"stopped ({status.signal}): {status.message}", file=sys.stderr, flush=True)
    for v in status.validations:
        if v.get("grid"):
            score = f", mean sim-score {v['mean_score']:.3f}" if v.get("mean_score") is not None else ""
            print(f"epoch {v['epoch']}: {v['grid']}{score}")
            for line in sampling.subject_lines(v):
                print(f"  {line}")
    if status.best_epoch is not None:
        judged = any(v.get("worst_score") is not None for v in status.validations)
        how = ("every subject kept: the lowest worst-subject score" if judged else
               "most faces found, then lowest mean sim-score")
        print(f"best epoch ({how}): {status.best_epoch}")
    for f in status.files:
        print(f"wrote {f}")
    return status.exit_code
