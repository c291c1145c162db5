"""`python -m studio mine`: grow a sim-group of one consistent face (seed 000) from generated pictures or a folder,
continue it, or turn it into a dataset; one printed line per admission and drop."""

from __future__ import annotations

import time

_RESUMABLE = ("target", "max_candidates", "max_minutes")


def register(sub) -> None:
    from studio.cli.flags import add_flags
    from studio.mine.request import MiningRequest

    p = sub.add_parser("mine", help="mine a synthetic identity: grow a group of one face, then make it a dataset")
    add_flags(p, MiningRequest, required=("name",))  # every setting, by its declared flag
    p.add_argument("--resume", action="store_true", help="continue job --name after its last decided candidate")
    p.add_argument("--to-dataset", default=None, metavar="DATASET",
                   help="write the group as dataset DATASET (needs --trigger)")
    p.add_argument("--trigger", default=None, help="with --to-dataset: the word every caption starts with")
    p.add_argument("--class-word", default="person", help="with --to-dataset: what the subject is (person)")
    p.add_argument("--size", type=int, default=None, help="with --to-dataset: resolution (the model's native one)")
    p.set_defaults(run=run)


def request_from_args(args):
    """The MiningRequest the flags ask for: the one conversion the Mine tab and /mine_start go through."""
    from studio.cli.flags import given
    from studio.fields import build
    from studio.mine.request import MiningRequest

    return build(MiningRequest, given(args, MiningRequest))


def _settings_given(args, but=()) -> list[str]:
    """The MiningRequest flags given (but --name and those of `but`)."""
    from studio.cli.flags import flags_given
    from studio.fields import declared
    from studio.mine.request import MiningRequest

    return flags_given(args, MiningRequest, [n for n in declared(MiningRequest) if n not in ("name", *but)])


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
    others = _settings_given(args, but=_RESUMABLE)
    if others:
        raise ValueError(f"a continued mining job keeps its candidates and rules: only --target, --max-candidates "
                         f"and --max-minutes can change, not {', '.join(others)}")
    return jobs.resume_mining(studio, args.name, target=args.target, max_candidates=args.max_candidates,
                              max_minutes=args.max_minutes)


def run(args, studio) -> int:
    from studio.cli.follow import follow
    from studio.mine import jobs

    if args.to_dataset is not None:
        others = _settings_given(args) + ["--resume"] * args.resume
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
