"""`python -m studio animal`: a face photo as an animal (same face, pose, expression), one printed line per PNG."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from studio.cli.flags import add_flags
    from studio.faces.control import CONTROL_MODULES, ControlOptions
    from studio.fields import declared, flag
    from studio.generate.animal import AnimalRequest, ControlChoice

    p = sub.add_parser("animal", help="turn a face photo into an animal with ControlNet img2img")
    add_flags(p, AnimalRequest, required=("image",))  # every setting, by its declared flag
    add_flags(p, ControlOptions)
    # The controls: one --control each, with their ControlNet and weight once for all or once each
    control = declared(ControlChoice)
    p.add_argument("--control", action="append", choices=CONTROL_MODULES, default=None,
                   help="control image(s) to use, repeatable (default: mediapipe_face)")
    p.add_argument(flag("model", control["model"]), dest="controlnet", action="append", default=None,
                   metavar="MODEL", help=f"{control['model'].help}; one for all --control, or one each")
    p.add_argument(flag("weight", control["weight"]), dest="control_scale", action="append", type=float,
                   default=None, help=f"{control['weight'].help}; one for all --control, or one each (default 1.0)")
    for name in ("guidance_start", "guidance_end"):
        p.add_argument(flag(name, control[name]), dest=name, type=float, default=None,
                       help=f"{control[name].label}, for every control")
    p.add_argument("--out", type=Path, required=True, help="folder to write the PNGs to")
    p.set_defaults(run=run, gpu_work=True)  # it loads models: it takes its turn on the device


def _per_control(values: list | None, n: int, name: str) -> list:
    """One value for every control: none given -> None (the default), one -> shared, n -> one each."""
    if not values:
        return [None] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"`{name}` was given {len(values)} times for {n} controls; give it once or once per control")
    return values


def request_from_args(args):
    """The AnimalRequest the flags ask for: the one conversion the Face to animal tab and /animal go through."""
    from studio.cli.flags import given
    from studio.faces.control import ControlOptions
    from studio.fields import build
    from studio.generate.animal import AnimalRequest, ControlChoice

    modules = args.control or ["mediapipe_face"]
    models = _per_control(args.controlnet, len(modules), "--controlnet")
    scales = _per_control(args.control_scale, len(modules), "--control-scale")
    controls = [build(ControlChoice, {"model": model, "weight": scale, "guidance_start": args.guidance_start,
                                      "guidance_end": args.guidance_end}, module=module)
                for module, model, scale in zip(modules, models, scales)]
    return build(AnimalRequest, given(args, AnimalRequest), controls=controls, out_dir=args.out,
                 options=build(ControlOptions, given(args, ControlOptions)))


def run(args, studio) -> int:
    from studio.generate.animal import face_to_animal

    result = face_to_animal(studio, request_from_args(args))
    for item in result.images:
        print(f"{item.path}\tseed={item.seed}")
    print(f"{result.sheet_path}\tside by side")
    for note in result.notes:
        print(f"note: {note}")
    return 0
