"""`python -m studio generate`: images from a prompt (img2img, inpainting with --mask, hires fix with --hires-scale),
saved as PNGs with A1111 parameters, one printed line each."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from studio.cli.flags import add_flags
    from studio.generate.request import GenerationRequest

    p = sub.add_parser("generate", help="generate images from a prompt")
    add_flags(p, GenerationRequest, required=("prompt",))  # every setting, by its declared flag
    p.add_argument("--out", type=Path, required=True, help="folder to write the PNGs to")
    p.set_defaults(run=run, gpu_work=True)  # it loads models: it takes its turn on the device


def request_from_args(args):
    """The GenerationRequest the flags ask for: the one conversion the Generate tab and /generate go through."""
    from studio.cli.flags import given
    from studio.fields import build
    from studio.generate.request import GenerationRequest

    return build(GenerationRequest, given(args, GenerationRequest), save=False)


def run(args, studio) -> int:
    from studio.generate import generate
    from studio.generate.parameters import save_png

    result = generate(studio, request_from_args(args))
    for item in result.images:
        path = save_png(item.image, item.parameters, args.out, item.seed)
        print(f"{path}\tseed={item.seed}")
    for note in result.notes:
        print(f"note: {note}")
    return 0
