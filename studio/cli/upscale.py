"""`python -m studio upscale`: a picture upscaled with Lanczos or a model from models/upscale/, one printed line."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from studio.cli.flags import add_flags
    from studio.generate.upscale import UpscaleRequest

    p = sub.add_parser("upscale", help="upscale a picture (Lanczos, or ESRGAN/Real-ESRGAN/SwinIR/... models)")
    add_flags(p, UpscaleRequest, required=("image",))  # every setting, by its declared flag
    p.add_argument("--out", type=Path, required=True, help="folder to write the PNG to")
    p.set_defaults(run=run, gpu_work=True)  # it loads models: it takes its turn on the device


def request_from_args(args):
    """The UpscaleRequest the flags ask for (the picture's own parameters carried over)."""
    from studio.cli.flags import given
    from studio.fields import build
    from studio.generate.upscale import UpscaleRequest

    return build(UpscaleRequest, given(args, UpscaleRequest), out_dir=args.out,
                 parameters=args.image.info.get("parameters", "") or "")


def run(args, studio) -> int:
    from studio.generate.upscale import upscale

    result = upscale(studio, request_from_args(args))
    info = result.info
    how = f"\ttiles={info.tile}px" if info.tile else ""
    print(f"{result.path}\t{info.size[0]}x{info.size[1]}\tupscaler={info.upscaler}{how}")
    return 0
