"""`python -m studio queue`: what runs on the device and what waits, in order, with about when each starts; add a
run, sweep or mining job without following it, take a waiting one out, move one, cancel the running one, and say
what a restart does with a job it finds dead."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("queue", help="the GPU queue: list, add, remove, move, cancel, options")
    actions = p.add_subparsers(dest="action")
    actions.add_parser("list", help="what runs and what waits, in order, with about when (the default)")
    add = actions.add_parser("add", help="queue a job without following it: `queue add train|sweep|mine FLAGS...` "
                                         "(the flags of that command)")
    add.add_argument("command", choices=("train", "sweep", "mine"))
    add.add_argument("flags", nargs=argparse.REMAINDER, help="that command's flags")
    remove = actions.add_parser("remove", help="take a waiting entry out (a job that never started goes with it)")
    remove.add_argument("entry", help="run:NAME, sweep:NAME, mining:NAME, or a name only one entry has")
    move = actions.add_parser("move", help="put a waiting entry at POSITION (1: next to start)")
    move.add_argument("entry")
    move.add_argument("position", type=int)
    cancel = actions.add_parser("cancel", help="cancel a job: the running one stops after its step, a waiting one "
                                               "leaves the queue")
    cancel.add_argument("entry")
    options = actions.add_parser("options", help="what a restart of the studio does with a job it finds dead")
    options.add_argument("--on-restart", choices=("resume", "stop"), required=True,
                         help="resume: it continues first, from its checkpoint; stop: it stays stopped")
    p.set_defaults(run=run)


def _kinds() -> dict:
    """The kinds of job, each declared by its own module."""
    from studio.mine.jobs import MINING
    from studio.train.jobs import RUNS
    from studio.train.sweep_jobs import SWEEPS

    return {k.key: k for k in (RUNS, SWEEPS, MINING)}


def run(args, studio) -> int:
    from studio import claims, jobs, queue

    folder = claims.queue_dir(studio.settings)
    action = args.action or "list"
    if action == "list":
        return _list(studio)
    if action == "add":
        return _add(args, studio)
    if action == "options":
        if not studio.settings.is_admin:
            raise ValueError("the queue's options are the studio's, for everyone: only an admin may change them")
        queue.set_on_restart(folder, args.on_restart)
        print(f"on restart: {args.on_restart}")
        return 0
    _kinds()  # (each kind declares itself as its module is imported)
    kind, name, owner = jobs.find_job(studio, args.entry)  # (among the entries this user may act on)
    entry = queue.entry_id(kind.key, name, owner)
    if action == "move":
        queue.move(folder, entry, args.position)
        return _list(studio)
    if action == "remove" and any(e.id == entry for e in queue.lineup(folder).running):
        raise ValueError(f"`entry` {entry!r} is running: `queue cancel` stops it (remove takes out a waiting one)")
    status = jobs.cancel(jobs.owners_studio(studio, owner), kind, name)
    print(f"{entry}: asked to stop; it stops after its current step" if status.active else status.line())
    return 0


def _list(studio) -> int:
    from studio import claims, jobs, queue

    _kinds()  # (each kind's progress line for its running jobs)
    view = jobs.queue_view(studio)
    if not view.rows:
        print("nothing of yours runs or waits" if view.others else "nothing runs or waits")
    for r in view.rows:
        place = "running" if r.position == 0 else f"{r.position}."
        what = r.line or r.needs
        print(f"{place:8} {r.entry:24} {', '.join(r.devices):8} {r.when()}; {what}")
    if view.others:
        print(view.says())
    on_restart = queue.lineup(claims.queue_dir(studio.settings)).on_restart
    print(f"on restart: {on_restart} (a job found dead after a restart "
          f"{'continues first' if on_restart == 'resume' else 'stays stopped'})")
    return 0


def _add(args, studio) -> int:
    import importlib

    from studio.cli import build_parser

    parsed = build_parser().parse_args([args.command, *args.flags])
    status = importlib.import_module(f"studio.cli.{args.command}").submit(parsed, studio)
    print(status.line())
    return 0
