"""The command line: one module per verb, each with `register(subparsers)` that sets `run(args, studio) -> int`
(and optionally `adjust_settings(args, settings) -> Settings`)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from studio.settings import OFFLOADS, WHEN_BUSY

# Verbs, each a module under studio/cli/ (a dash in the verb is an underscore in the module's name) that adds its
# subparser and sets defaults(run=...).
VERBS = ("serve", "generate", "upscale", "fix-faces", "models", "dataset", "delete-subject", "mine", "train", "sweep",
         "queue", "animal", "evaluate", "pocket", "users", "share")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit code 2, as for every bad argument
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    # The same options before or after the verb; after it they only override what was given before.
    d = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    parser.add_argument("--root", type=Path, default=d(None), help="folder holding models/ and workspace/ (default: cwd)")
    parser.add_argument("--models-dir", type=Path, default=d(None), help="model store folder (default: ROOT/models)")
    parser.add_argument("--workspace", type=Path, default=d(None),
                        help="datasets, runs and outputs (default: ROOT/workspace)")
    parser.add_argument("--device", default=d("auto"), help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--dtype", default=d("auto"),
                        help="auto, float32, float16 or bfloat16 (default: on a GPU each family's half precision: fp16 "
                             "for SD, bf16 for FLUX and the other flow transformers where the GPU has it)")
    parser.add_argument("--offload", choices=OFFLOADS, default=d("auto"),
                        help="a base model that does not fit the GPU's free memory generates offloaded to the CPU "
                             "(auto: decided by its size, and said; none; model: a model at a time; sequential: layer "
                             "by layer, slowest)")
    parser.add_argument("--cache-gb", type=float, default=d(0.0),
                        help="weights the model cache may hold, in GiB (default: 3/4 of GPU memory, half the RAM on CPU)")
    parser.add_argument("--allow-pickle", action="store_true", default=d(False),
                        help="allow .ckpt/.bin/.pt files (they can run code)")
    parser.add_argument("--offline", action="store_true", default=d(False), help="never download from the hub")
    parser.add_argument("--max-image-mp", type=float, default=d(None),
                        help="largest picture decoded, in megapixels (default 40; bigger ones are refused)")
    parser.add_argument("--user", default=d(""), metavar="NAME",
                        help="act as this user of a studio of several people: their workspace (workspace/users/NAME/) "
                             "and models (default: the studio's owner, an admin: workspace/ and models/ themselves)")
    if not (suppress and "--workers" in parser._option_string_actions):  # (`dataset prepare --workers N` is its own)
        parser.add_argument("--workers", dest="workers_address", default=d(None), metavar="ray://HOST:PORT",
                            help="send queued runs to this Ray cluster's GPU workers instead of training here "
                                 "(default: $RAY_ADDRESS, else here); the datasets' photos travel to them")
    parser.add_argument("--insecure-workers", action="store_true", default=d(False),
                        help="allow --workers beyond the local network without Ray's TLS (the photos cross it "
                             "unencrypted)")
    parser.add_argument("--when-busy", choices=WHEN_BUSY, default=d("wait"),
                        help="while a job (run, sweep, mining) holds the GPU: wait for it in the queue (default), or "
                             "run on the CPU now (Generate, Evaluate, captions, upscaling...)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m studio", description="Likeness Studio: personal image models, end to end.")
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for verb in VERBS:
        importlib.import_module(f"studio.cli.{verb.replace('-', '_')}").register(sub)
    for verb_parser in sub.choices.values():
        for leaf in _with_nested(verb_parser):  # `dataset list --root X` as well as `train --root X`
            _add_global_options(leaf, suppress=True)
    return parser


def _with_nested(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """A parser and the parsers of its sub-commands, at any depth."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _with_nested(child)
    return found


def settings_from_args(args: argparse.Namespace):
    from studio.settings import Settings

    kwargs = dict(device=args.device, dtype=args.dtype, cache_budget_bytes=int(args.cache_gb * 1024**3),
                  allow_pickle=args.allow_pickle, allow_downloads=not args.offline, when_busy=args.when_busy,
                  offload=args.offload,
                  models_dir=args.models_dir, workspace_dir=args.workspace,
                  workers=os.environ.get("RAY_ADDRESS", "") if args.workers_address is None else args.workers_address,
                  insecure_workers=args.insecure_workers)
    if args.root is not None:
        kwargs["root"] = args.root
    if args.max_image_mp is not None:
        kwargs["max_image_pixels"] = int(args.max_image_mp * 1_000_000)
    settings = Settings(**kwargs)
    if args.user:
        from studio.users import check_user

        settings = settings.for_user(check_user(settings, args.user))
    return settings


def main(argv: list[str] | None = None) -> int:
    from studio.quiet import quiet_third_party

    quiet_third_party()  # before any heavy import: torch, diffusers and mediapipe read their log settings once
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from studio.context import Studio

        settings = settings_from_args(args)
        if hasattr(args, "adjust_settings"):  # a verb may add settings of its own (serve: host, port, auth)
            settings = args.adjust_settings(args, settings)
        studio = Studio.open(settings)
        if getattr(args, "gpu_work", False):  # a verb that loads models takes its turn on the device first
            return _in_turn(args, studio)
        return int(args.run(args, studio) or 0)
    except ValueError as e:  # bad input found past argparse: one line, exit 2
        print(f"python -m studio {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


def _in_turn(args, studio) -> int:
    """Run the verb holding the studio's device: while a job holds it, wait (saying for what, on stderr, every
    change and at most every 10 s) or, with --when-busy cpu, run on the CPU, saying so."""
    from studio.gpu import device_turn

    last = {"text": "", "at": 0.0}

    def waiting(fraction: float, text: str) -> None:
        if text != last["text"] and time.monotonic() - last["at"] > 10:
            print(text, file=sys.stderr, flush=True)
            last.update(text=text, at=time.monotonic())

    with device_turn(studio, args.verb, progress=waiting) as turn:
        if turn.note:
            print(turn.note, file=sys.stderr, flush=True)
        return int(args.run(args, studio) or 0)
