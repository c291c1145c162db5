"""`python -m studio sweep`: train a grid of settings (seed 001's lr x steps), one run per cell (cells that differ only
in length share one), score every cell, stop collapsing cells, and write workspace/sweeps/<name>/report.json."""

from __future__ import annotations

from dataclasses import replace


def register(sub) -> None:
    from studio.cli.flags import add_flags
    from studio.fields import declared
    from studio.train.config import RunConfig
    from studio.train.presets import PRESETS
    from studio.train.sweep import SET_BY_SWEEP, SweepRequest

    p = sub.add_parser("sweep", help="train a grid of settings and score each cell (CLIP, likeness), guarded "
                                     "against collapse")
    add_flags(p, SweepRequest, skip=("grid", "preset"), required=("name",))
    p.add_argument("--grid", action="append", default=[], metavar="KNOB=V1,V2",
                   help=f"{declared(SweepRequest)['grid'].help}; one knob a flag (repeatable): lr=1e-5,1e-3, "
                        f"steps=400,2000, rank=4,8 ...")
    p.add_argument("--preset", default=None, help=f"start from a preset: {', '.join(PRESETS)} (seed-001 brings "
                                                  "its lr x steps grid)")
    add_flags(p, RunConfig, skip=SET_BY_SWEEP)  # the run settings every cell shares, by their declared flags
    p.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE",
                   help="a setting every cell shares, by its RunConfig name (repeatable): batch_size=4, ema=cpu ...")
    p.add_argument("--resume", action="store_true", help="continue sweep --name where it was")
    p.add_argument("--export", nargs="?", const="best", default=None, metavar="CELL",
                   help="export a cell of sweep --name to the model store (default: the best cell), then stop")
    p.set_defaults(run=run)


def request_from_args(args):
    from studio.cli.flags import given
    from studio.fields import build, values
    from studio.train.config import RunConfig
    from studio.train.presets import apply_preset
    from studio.train.sweep import SET_BY_SWEEP, SweepRequest, knob_name, parse_grid, parse_value, preset_grid

    if not args.dataset:
        raise ValueError("`--dataset` is required to start a sweep")
    base = RunConfig(name=args.name, dataset=args.dataset)
    if args.preset:
        base = apply_preset(base, args.preset)
    shared = values(RunConfig, {k: x for k, x in given(args, RunConfig).items() if k not in SET_BY_SWEEP})
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"`--set` {item!r} must read knob=value")
        key, value = item.split("=", 1)
        name = knob_name(key)
        shared[name] = parse_value(name, value)
    base = replace(base, **shared)
    grid = parse_grid(args.grid) if args.grid else preset_grid(args.preset)
    if not grid:
        raise ValueError("`--grid` is required (e.g. --grid lr=1e-5,1e-3 --grid steps=400,2000), or a preset "
                         "that brings one (--preset seed-001)")
    return build(SweepRequest, {"name": args.name, "grid": grid, "preset": args.preset or ""}, base=base)


def table(report: dict) -> str:
    """The report as a fixed-width table: the base model first, a line per cell, the best marked."""
    def number(x, digits):
        return "-" if x is None else f"{x:.{digits}f}"

    def share(x):  # drawn as its shape, by the base's checker
        return "-" if x is None else f"{x:.0%}"

    header = ("cell", "settings", "state", "CLIP", "likeness", "no face", "shape", "loss", "time s", "")
    rows = []
    if report.get("base"):
        s = report["base"]["scores"]
        rows.append(("base", "the base model", "", number(s["mean_clip"], 2), number(s["mean_sim"], 4),
                     "-" if s["no_face"] is None else str(s["no_face"]), share(s.get("shape")), "-", "-", ""))
    for c in report["cells"]:
        s = c["scores"]
        rows.append((c["id"], c["label"], c["state"], number(s["mean_clip"], 2), number(s["mean_sim"], 4),
                     "-" if s["no_face"] is None else str(s["no_face"]), share(s.get("shape")), number(c["loss"], 4),
                     number(c["time_s"], 1), "best" if c["best"] else ""))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])


def submit(args, studio):
    """Queue the sweep the flags ask for (or continue it, with --resume); it starts at once when the devices are
    free."""
    from studio.fileio import clean_stale_files
    from studio.train import sweep_jobs

    clean_stale_files(sweep_jobs.sweeps_dir(studio.settings))  # what a killed driver left half-written
    if args.resume:
        return sweep_jobs.resume_sweep(studio, args.name)
    return sweep_jobs.start_sweep(studio, request_from_args(args))


def run(args, studio) -> int:
    from studio.cli.follow import follow
    from studio.train import sweep_jobs

    if args.export is not None:
        files = sweep_jobs.export_cell(studio, args.name, "" if args.export == "best" else args.export)
        for f in files:
            print(f"wrote {f}")
        return 0
    status = submit(args, studio)
    print(f"sweep {status.name}: {status.folder}", flush=True)
    for note in status.report["notes"]:
        print(note, flush=True)
    seen, last_line = 0, ""

    def show(current):
        nonlocal seen, last_line
        for text in current.messages[seen:]:
            print(text, flush=True)
        seen = len(current.messages)
        if current.line() != last_line:
            last_line = current.line()
            print(last_line, flush=True)

    status, _ = follow(studio, sweep_jobs.SWEEPS, args.name, show, poll_s=0.5,
                       cancelling="cancelling (running cells write a checkpoint first; --resume continues)...")
    if not (status.folder / sweep_jobs.REQUEST).is_file():  # taken out of the queue before it started
        print(status.line())
        return status.exit_code
    print(table(status.report))
    for c in status.report["cells"]:
        if c["reason"]:
            print(f"{c['id']} {c['state']}: {c['reason']}")
    print(f"report: {status.folder / 'report.json'}")
    if status.report.get("grid_image"):
        print(f"grid: {status.report['grid_image']}")
    return status.exit_code
