"""`python -m studio fix-faces`: every face in a picture re-drawn (ADetailer's way) with the subject's LoRA; one printed
line for the PNG written, with each face's sim-score before and after."""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    from studio.cli.flags import add_flags
    from studio.generate.facefix import FaceFixRequest

    p = sub.add_parser("fix-faces", help="re-draw each face at the model's size and report its sim-score")
    add_flags(p, FaceFixRequest, required=("image",))  # every setting, by its declared flag
    p.add_argument("--reference", default="", help="dataset name or folder of photos: sim-scores against it "
                                                    "(default: each face against itself before the fix)")
    p.add_argument("--out", type=Path, required=True, help="folder to write the PNG to")
    p.set_defaults(run=run, gpu_work=True)  # it loads models: it takes its turn on the device


def request_from_args(args, studio):
    """The FaceFixRequest the flags ask for: the picture's own parameters carried over, the reference's faces."""
    from studio.cli.flags import given
    from studio.evaluate.scoring import load_reference
    from studio.fields import build
    from studio.generate.facefix import FaceFixRequest

    reference = load_reference(studio.settings, args.reference) if args.reference else None
    return build(FaceFixRequest, given(args, FaceFixRequest), out_dir=args.out,
                 parameters=args.image.info.get("parameters", "") or "",
                 reference=None if reference is None else reference.encodings,
                 reference_name="" if reference is None else reference.source)


def run(args, studio) -> int:
    from studio.generate.facefix import fix_faces

    result = fix_faces(studio, request_from_args(args, studio))
    if not result.faces:  # nothing written: say why, and exit apart from a bad argument's 2
        print(f"python -m studio fix-faces: {args.image.filename}: {result.message}", file=sys.stderr)
        return 1
    scores = "; ".join(f.line for f in result.faces)
    print(f"{result.path}\tagainst {result.against}: {scores}")
    return 0
