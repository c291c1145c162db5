"""`python -m studio train`: train a LoRA, DreamBooth or fully fine-tuned model or a textual-inversion embedding,
streaming progress."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

# command-line flag -> RunConfig field, for flags that map one to one
_FIELDS = {"method": "method", "model": "model", "out": "name", "steps": "max_steps",
           "epochs": "epochs", "lr": "lr", "text_encoder_lr": "text_encoder_lr", "rank": "rank", "alpha": "alpha",
           "resolution": "resolution", "batch_size": "batch_size", "grad_accum": "grad_accum",
           "seed": "seed", "validation_prompt": "validation_prompts",
           "validation_every": "validation_every", "validation_by": "validation_by",
           "validation_budget": "validation_budget", "lr_scheduler": "lr_scheduler", "init_word": "init_word",
           "class_prompt": "class_prompt", "mixed_precision": "mixed_precision", "lora_layers": "lora_layers",
           "ema": "ema", "clip_model": "clip_model", "unmasked_weight": "unmasked_weight",
           "continue_from": "continue_from", "gpus": "gpus", "processes": "processes"}


def register(sub) -> None:
    from studio.train.config import EMA_MODES, LORA_LAYERS, METHODS, PRECISIONS, VALIDATION_BY
    from studio.train.presets import PRESET_KEYS

    p = sub.add_parser("train", help="train a LoRA, DreamBooth or fine-tuned model or a textual-inversion embedding")
    p.add_argument("--method", choices=METHODS, default=None)
    p.add_argument("--model", default=None, help="base model id (default: the studio's default model)")
    p.add_argument("--dataset", action="append", default=None,
                   help="dataset name under workspace/datasets/ or a folder; again for a second subject (one --trigger "
                        "each, in the same order)")
    p.add_argument("--out", default=None, help="run name; also the name of the exported files")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="UNet (or embedding) learning rate")
    p.add_argument("--text-encoder-lr", type=float, default=None, help="0 keeps the text encoder frozen")
    p.add_argument("--rank", type=int, default=None)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--grad-accum", type=int, default=None)
    p.add_argument("--repeats", type=int, action="append", default=None,
                   help="times each picture is seen per epoch; with several datasets once for all or once each")
    p.add_argument("--trigger", action="append", default=None,
                   help="the word that names the subject (default: the run name); one per --dataset")
    p.add_argument("--class-word", action="append", default=None,
                   help="several datasets: each subject's class (person, dog...), once each; DreamBooth's prior "
                        "images are 'a photo of a <class word>', textual inversion starts each token from it")
    p.add_argument("--no-balance", action="store_true",
                   help="several datasets: each seen as its pictures x repeats say, not balanced to the largest")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--validation-prompt", nargs="+", default=None, help="validation prompts ({trigger} is filled in)")
    p.add_argument("--validation-by", choices=VALIDATION_BY, default=None,
                   help="budget (the default): validation takes at most --validation-budget of the run's time, spread "
                        "from the first epoch to the last; epochs or steps: every --validation-every of them")
    p.add_argument("--validation-budget", type=float, default=None,
                   help="the share of the run's wall time validation may take (default 0.1)")
    p.add_argument("--validation-every", type=int, default=None,
                   help="epochs (or steps, with --validation-by steps) between validation grids; 0 never validates")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the denoiser (slow first steps; pays on long runs where the compiler helps)")
    p.add_argument("--lr-scheduler", default=None)
    p.add_argument("--init-word", default=None, help="textual inversion: the word the new token starts from")
    p.add_argument("--class-prompt", default=None, help="DreamBooth: turns on prior preservation with this prompt")
    p.add_argument("--mixed-precision", choices=PRECISIONS, default=None)
    p.add_argument("--lora-layers", choices=LORA_LAYERS, default=None,
                   help="attention (default), transformer (kohya's default), all (adds ResNet convs, as LoCon)")
    p.add_argument("--ema", choices=EMA_MODES, default=None,
                   help="finetune/DreamBooth: an EMA average of the weights (auto: on for finetune; cpu: kept in RAM)")
    p.add_argument("--clip-model", default=None, help="score each validation image with its prompt by this CLIP")
    p.add_argument("--no-masked-loss", action="store_true",
                   help="train on every pixel, even where the dataset's masks (<stem>.mask.png) are black")
    p.add_argument("--unmasked-weight", type=float, default=None,
                   help="loss weight of the masks' black pixels (default 0: not learnt; OneTrainer uses 0.1)")
    p.add_argument("--continue-from", default=None, metavar="RUN",
                   help="add a subject: start this LoRA run from finished run RUN's LoRA (its subjects come along)")
    p.add_argument("--gpus", default=None, metavar="0,1",
                   help="the GPUs to train on, one process each sharing every batch (default: every GPU when --device "
                        "is auto or cuda)")
    p.add_argument("--processes", type=int, default=None, metavar="N",
                   help="N training processes on the CPU (gloo): the several-GPU path without GPUs")
    p.add_argument("--preset", default=None, help=f"start from a preset: {', '.join(PRESET_KEYS)} (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue the run named --out from its last checkpoint")
    p.add_argument("--config", type=Path, default=None, help="a run.json to start from; flags override it")
    p.set_defaults(run=run)


def _resume(args, studio):
    """`--resume --out NAME [--epochs N | --steps N] [--lr X]`: the run's own settings, trained longer or at
    another learning rate (studio.train.jobs.resume_run: the one resume rule)."""
    from studio.train import jobs

    if not args.out:
        raise ValueError("`--out` is required with --resume: the name of the run to continue")
    others = [f"--{flag.replace('_', '-')}" for flag in _FIELDS if flag not in ("out", "epochs", "steps", "lr")
              and getattr(args, flag) is not None]
    others += [f"--{flag.replace('_', '-')}" for flag in _SUBJECT_FLAGS if getattr(args, flag) is not None]
    others += ["--preset"] * bool(args.preset) + ["--config"] * (args.config is not None)
    others += ["--no-masked-loss"] * args.no_masked_loss + ["--no-balance"] * args.no_balance
    others += ["--compile"] * args.compile
    if others:
        raise ValueError(f"a resumed run keeps its settings: only --epochs, --steps and --lr can change, not "
                         f"{', '.join(others)}")
    max_steps = args.steps if args.steps is not None else (0 if args.epochs is not None else None)
    return jobs.resume_run(studio, args.out, epochs=args.epochs, max_steps=max_steps, lr=args.lr)


_SUBJECT_FLAGS = ("dataset", "trigger", "class_word", "repeats")


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
    """RunConfig from the flags given, over `--config run.json` and `--preset`."""
    from studio.train.config import RunConfig

    given = {field: getattr(args, flag) for flag, field in _FIELDS.items() if getattr(args, flag) is not None}
    given.update(_subjects(args))
    if args.no_balance:
        given["balance"] = False
    if args.steps is not None:
        given.setdefault("epochs", 0)
    elif args.epochs is not None:
        given["max_steps"] = 0  # epochs asked for by name rule over a preset's or config's step count
    if args.class_prompt is not None:
        given["prior_preservation"] = True
    if args.no_masked_loss:
        given["masked_loss"] = False
    if args.compile:
        given["compile"] = True
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
    return _resume(args, studio) if args.resume else jobs.start_run(studio, config_from_args(args))


def run(args, studio) -> int:
    from studio.cli.follow import follow
    from studio.train import jobs, sampling

    status = submit(args, studio)
    print(f"run {status.name}: {status.run_dir}", flush=True)
    seen, last_print = 0, 0.0

    def show(current):
        nonlocal seen, last_print
        for text in current.messages[seen:]:
            print(text, flush=True)
        seen = len(current.messages)
        if time.monotonic() - last_print > 1.0 and current.step:
            print(current.line(), flush=True)
            last_print = time.monotonic()

    status, _ = follow(studio, jobs.RUNS, status.name, show, cancelling="cancelling (a checkpoint is written first)...")
    print(status.line(), flush=True)
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
