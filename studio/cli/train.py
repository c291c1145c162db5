"""`python -m studio train`: train a LoRA, DreamBooth or fully fine-tuned model or a textual-inversion embedding,
streaming progress."""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

# command-line flag -> RunConfig field, for flags that map one to one
_FIELDS = {"method": "method", "model": "model", "dataset": "dataset", "out": "name", "steps": "max_steps",
           "epochs": "epochs", "lr": "lr", "text_encoder_lr": "text_encoder_lr", "rank": "rank", "alpha": "alpha",
           "resolution": "resolution", "batch_size": "batch_size", "grad_accum": "grad_accum", "repeats": "repeats",
           "trigger": "trigger", "seed": "seed", "validation_prompt": "validation_prompts",
           "validation_every": "validation_every", "lr_scheduler": "lr_scheduler", "init_word": "init_word",
           "class_prompt": "class_prompt", "mixed_precision": "mixed_precision", "lora_layers": "lora_layers",
           "ema": "ema", "clip_model": "clip_model", "unmasked_weight": "unmasked_weight"}


def register(sub) -> None:
    from studio.train.config import EMA_MODES, LORA_LAYERS, METHODS, PRECISIONS, PRESET_KEYS

    p = sub.add_parser("train", help="train a LoRA, DreamBooth or fine-tuned model or a textual-inversion embedding")
    p.add_argument("--method", choices=METHODS, default=None)
    p.add_argument("--model", default=None, help="base model id (default: the studio's default model)")
    p.add_argument("--dataset", default=None, help="dataset name under workspace/datasets/ or a folder")
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
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--trigger", default=None, help="the word that names the subject (default: the run name)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--validation-prompt", nargs="+", default=None, help="validation prompts ({trigger} is filled in)")
    p.add_argument("--validation-every", type=int, default=None, help="epochs between validation grids; 0 never")
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
    p.add_argument("--preset", default=None, help=f"start from a preset: {', '.join(PRESET_KEYS)} (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue the run named --out from its last checkpoint")
    p.add_argument("--config", type=Path, default=None, help="a run.json to start from; flags override it")
    p.set_defaults(run=run)


def _as_interrupt(signum, frame):
    raise KeyboardInterrupt


def _resume(args, studio):
    """`--resume --out NAME [--epochs N | --steps N] [--lr X]`: the run's own settings, trained longer or at
    another learning rate (studio.train.jobs.resume_run: the one resume rule)."""
    from studio.train import jobs

    if not args.out:
        raise ValueError("`--out` is required with --resume: the name of the run to continue")
    others = [f"--{flag.replace('_', '-')}" for flag in _FIELDS if flag not in ("out", "epochs", "steps", "lr")
              and getattr(args, flag) is not None]
    others += ["--preset"] * bool(args.preset) + ["--config"] * (args.config is not None)
    others += ["--no-masked-loss"] * args.no_masked_loss
    if others:
        raise ValueError(f"a resumed run keeps its settings: only --epochs, --steps and --lr can change, not "
                         f"{', '.join(others)}")
    max_steps = args.steps if args.steps is not None else (0 if args.epochs is not None else None)
    return jobs.resume_run(studio, args.out, epochs=args.epochs, max_steps=max_steps, lr=args.lr)


def config_from_args(args):
    """RunConfig from the flags given, over `--config run.json` and `--preset`."""
    from studio.train.config import RunConfig

    given = {field: getattr(args, flag) for flag, field in _FIELDS.items() if getattr(args, flag) is not None}
    if args.steps is not None:
        given.setdefault("epochs", 0)
    elif args.epochs is not None:
        given["max_steps"] = 0  # epochs asked for by name rule over a preset's or config's step count
    if args.class_prompt is not None:
        given["prior_preservation"] = True
    if args.no_masked_loss:
        given["masked_loss"] = False
    base = RunConfig.load(args.config) if args.config is not None else None
    if base is None:
        for flag, field in (("out", "name"), ("dataset", "dataset")):
            if field not in given:
                raise ValueError(f"`--{flag}` is required (or give --config run.json)")
        base = RunConfig(name=given["name"], dataset=given["dataset"])
    if args.preset:
        from studio.train.config import apply_preset

        base = apply_preset(base, args.preset)
    return replace(base, **given)


def run(args, studio) -> int:
    from studio.fileio import clean_stale_files
    from studio.train import jobs

    clean_stale_files(studio.settings.runs_dir)  # what a killed run left half-written
    if args.resume:
        status = _resume(args, studio)
    else:
        status = jobs.start_run(studio, config_from_args(args))
    config = status.config
    print(f"run {status.name}: {status.run_dir}", flush=True)
    seen, last_print = 0, 0.0
    # SIGTERM (a service manager, `kill`) stops the run like Ctrl-C: the child is told, writes its checkpoint and
    # stops; otherwise it would train on, orphaned.
    previous = signal.signal(signal.SIGTERM, _as_interrupt)
    try:
        while True:
            status = jobs.run_status(studio, config.name)
            for text in status.messages[seen:]:
                print(text, flush=True)
            seen = len(status.messages)
            if time.monotonic() - last_print > 1.0 and status.step:
                print(status.line(), flush=True)
                last_print = time.monotonic()
            if not status.active:
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        print("cancelling (a checkpoint is written first)...", flush=True)
        status = jobs.cancel_run(studio, config.name, wait_s=120)
    finally:
        signal.signal(signal.SIGTERM, previous)
    status = jobs.wait_run(studio, config.name)
    print(status.line(), flush=True)
    if status.state == "failed" and status.failure_code == 3:  # the guard's one-line reason, where scripts look
        print(f"stopped ({status.signal}): {status.message}", file=sys.stderr, flush=True)
    for v in status.validations:
        if v.get("grid"):
            score = f", mean sim-score {v['mean_score']:.3f}" if v.get("mean_score") is not None else ""
            print(f"epoch {v['epoch']}: {v['grid']}{score}")
    if status.best_epoch is not None:
        print(f"best epoch (most faces found, then lowest mean sim-score): {status.best_epoch}")
    for f in status.files:
        print(f"wrote {f}")
    return status.exit_code
