"""`python -m studio mine`: grow a sim-group of one consistent face (seed 000) from generated pictures or a folder,
continue it, or turn it into a dataset; one printed line per admission and drop."""

from __future__ import annotations

import time
from pathlib import Path

# command-line flag -> MiningRequest field, for flags that map one to one (None: not given, the request's default)
_FIELDS = {"prompt": "prompt", "candidates": "candidates", "negative": "negative_prompt", "model": "model",
           "steps": "steps", "cfg": "cfg", "sampler": "sampler", "width": "width", "height": "height",
           "seed_start": "seed_start", "batch": "batch_size", "upscaler": "upscaler", "tolerance": "tolerance",
           "near_miss": "near_miss", "drop_tolerance": "drop_tolerance", "seed_face": "seed_face",
           "target": "target", "max_candidates": "max_candidates"}
_RESUMABLE = ("target", "max_candidates", "max_minutes")


def register(sub) -> None:
    from studio.faces import DEFAULT_TOLERANCE
    from studio.generate.request import parse_lora
    from studio.mine.group import NEAR_MISS

    p = sub.add_parser("mine", help="mine a synthetic identity: grow a group of one face, then make it a dataset")
    p.add_argument("--name", required=True, help="the job's name (its folder under workspace/mining/)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--prompt", default=None, help="candidates from the generator, seed --seed-start, +1, ...")
    source.add_argument("--candidates", type=Path, default=None, help="candidates from a folder (or .zip) of images")
    p.add_argument("--negative", default=None, help="negative prompt")
    p.add_argument("--model", default=None, help="base model id (default: the studio's default model)")
    p.add_argument("--lora", action="append", default=[], type=parse_lora, metavar="NAME:WEIGHT",
                   help="a LoRA with an optional weight (repeatable)")
    p.add_argument("--embedding", action="append", default=[], help="a textual-inversion file (repeatable)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--cfg", type=float, default=None)
    p.add_argument("--sampler", default=None)
    p.add_argument("--width", type=int, default=None, help="default: the model's native size")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--seed-start", type=int, default=None, help="candidate i is generated with this seed + i (0)")
    p.add_argument("--batch", type=int, default=None, help="pictures per generator call (1)")
    p.add_argument("--upscaler", default=None,
                   help="upscale each candidate 4x before looking for its face: Lanczos or a model in models/upscale/")
    p.add_argument("--tolerance", type=float, default=None,
                   help=f"admit a face whose mean distance to the group is at most this ({DEFAULT_TOLERANCE:g})")
    p.add_argument("--near-miss", type=float, default=None,
                   help=f"up to this, a face is a near miss, kept apart ({NEAR_MISS:g})")
    p.add_argument("--drop-tolerance", type=float, default=None,
                   help="drop members whose mean distance to the rest exceeds this (default: the tolerance)")
    p.add_argument("--no-recheck", action="store_true", help="never drop a member")
    p.add_argument("--seed-face", type=Path, default=None, help="a picture of the face to start from")
    p.add_argument("--pin-seed", action="store_true", help="never drop the seed face")
    p.add_argument("--target", type=int, default=None, help="stop once the group has this many members (300)")
    p.add_argument("--max-candidates", type=int, default=None, help="stop after this many candidates (0: no limit)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this much mining time (0: no limit)")
    p.add_argument("--resume", action="store_true", help="continue job --name after its last decided candidate")
    p.add_argument("--to-dataset", default=None, metavar="DATASET",
                   help="write the group as dataset DATASET (needs --trigger)")
    p.add_argument("--trigger", default=None, help="with --to-dataset: the word every caption starts with")
    p.add_argument("--class-word", default="person", help="with --to-dataset: what the subject is (person)")
    p.add_argument("--size", type=int, default=None, help="with --to-dataset: resolution (the model's native one)")
    p.set_defaults(run=run)


def _given(args, flags) -> list[str]:
    """The flags among `flags` given on the command line."""
    return [f"--{flag.replace('_', '-')}" for flag in flags if getattr(args, flag) not in (None, False, [])]


def request_from_args(args):
    from studio.mine.request import MiningRequest

    given = {field: getattr(args, flag) for flag, field in _FIELDS.items() if getattr(args, flag) is not None}
    if args.max_minutes is not None:
        given["max_seconds"] = args.max_minutes * 60
    return MiningRequest(name=args.name, loras=tuple(args.lora), embeddings=tuple(args.embedding),
                         recheck=not args.no_recheck, pin_seed=args.pin_seed, **given)


_MINING_FLAGS = [*_FIELDS, "lora", "embedding", "no_recheck", "pin_seed", "max_minutes"]


def submit(args, studio):
    """Queue the mining job the flags ask for (or continue it, with --resume); it starts at once when the device is
    free."""
    from studio.fileio import clean_stale_files
    from studio.mine import jobs

    if args.trigger is not None or args.size is not None:
        raise ValueError("`--trigger` and `--size` go with --to-dataset DATASET")
    clean_stale_files(studio.settings.workspace_dir / "mining")  # what a killed job left half-written
    if not args.resume:
        return jobs.start_mining(studio, request_from_args(args))
    others = _given(args, [f for f in _MINING_FLAGS if f not in _RESUMABLE])
    if others:
        raise ValueError(f"a continued mining job keeps its candidates and rules: only --target, --max-candidates "
                         f"and --max-minutes can change, not {', '.join(others)}")
    minutes = args.max_minutes
    return jobs.resume_mining(studio, args.name, target=args.target, max_candidates=args.max_candidates,
                              max_seconds=None if minutes is None else minutes * 60)


def run(args, studio) -> int:
    from studio.cli.follow import follow
    from studio.mine import jobs

    if args.to_dataset is not None:
        others = _given(args, [*_MINING_FLAGS, "resume"])
        if others:
            raise ValueError(f"--to-dataset writes the group of job --name as it stands; it takes no "
                             f"{', '.join(others)}")
        return _to_dataset(args, studio)
    started = time.time()
    status = submit(args, studio)
    print(f"mining {status.name}: {status.folder}", flush=True)
    status, interrupted = follow(studio, jobs.MINING, status.name, _shower(started),
                                 cancelling="stopping (the candidate in flight is dropped; --resume continues)...")
    print(status.line(), flush=True)
    if interrupted:
        return 130
    print(f"report: {status.folder / 'report.json'}")
    return {"done": 0, "cancelled": 130}.get(status.state, 1)


def _shower(since: float):
    """show(status) for the follow loop: each admission, drop and message the child writes from time `since` on,
    and a progress line every 10 s."""
    from studio.joblog import read_events
    from studio.mine.disk import EVENTS

    seen, last_line = 0, time.monotonic()

    def show(status) -> None:
        nonlocal seen, last_line
        events = read_events(status.folder, EVENTS, since=seen)
        seen += len(events)
        for event in events:
            text = _event_line(event) if event["time"] >= round(since, 3) else ""
            if text:
                print(text, flush=True)
        if time.monotonic() - last_line > 10 and status.counts["candidates"]:
            print(status.line(), flush=True)
            last_line = time.monotonic()

    return show


def _event_line(event: dict) -> str:
    if event["type"] == "message":
        return event["text"]
    if event["type"] == "drop":
        return f"dropped {event['source']}: {event['reason']}"
    if event["type"] == "candidate" and event["decision"] in ("seed", "admitted"):
        score = "" if event.get("distance") is None else f" at {event['distance']:.3f}"
        return f"{event['decision']} {event['source']}{score}: group {event['group_size']}"
    return ""


def _to_dataset(args, studio) -> int:
    from studio.mine import GroupDataset, group_to_dataset

    if not args.trigger:
        raise ValueError("`--trigger` is required with --to-dataset: the word every caption starts with")
    result = group_to_dataset(studio, GroupDataset(args.name, args.to_dataset, args.trigger, args.class_word,
                                                   args.size))
    print(result.summary())
    return 0
