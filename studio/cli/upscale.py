"""`python -m studio upscale`: a picture upscaled with Lanczos or a model from models/upscale/, one printed line."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from studio.generate.upscale import UpscaleRequest

    d = UpscaleRequest(image=None)
    p = sub.add_parser("upscale", help="upscale a picture (Lanczos, or ESRGAN/Real-ESRGAN/SwinIR/... models)")
    p.add_argument("--image", type=Path, required=True, help="the picture (its PNG parameters are kept)")
    p.add_argument("--upscaler", default=d.upscaler,
                   help="lanczos, or a model in models/upscale/ (its file stem) or a path")
    p.add_argument("--scale", type=float, default=d.scale, help="output side / input side, 1 to 8")
    p.add_argument("--tile", type=int, default=d.tile,
                   help="tile side in input pixels for model upscalers (0: untiled)")
    p.add_argument("--tile-overlap", type=int, default=d.tile_overlap, help="pixels two tiles share")
    p.add_argument("--out", type=Path, required=True, help="folder to write the PNG to")
    p.set_defaults(run=run, gpu_work=True)  # it loads models: it takes its turn on the device


def run(args, studio) -> int:
    from studio.cli import open_image
    from studio.generate.upscale import UpscaleRequest, upscale

    image = open_image(args.image, "--image")
    request = UpscaleRequest(image=image, upscaler=args.upscaler, scale=args.scale, tile=args.tile,
                             tile_overlap=args.tile_overlap, parameters=image.info.get("parameters", "") or "",
                             out_dir=args.out)
    result = upscale(studio, request)
    info = result.info
    how = f"\ttiles={info.tile}px" if info.tile else ""
    print(f"{result.path}\t{info.size[0]}x{info.size[1]}\tupscaler={info.upscaler}{how}")
    return 0
