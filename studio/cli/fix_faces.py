"""`python -m studio fix-faces`: every face in a picture re-drawn (ADetailer's way) with the subject's LoRA; one printed
line for the PNG written, with each face's sim-score before and after."""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    from studio.generate.facefix import FaceFixRequest
    from studio.generate.request import parse_lora

    d = FaceFixRequest(image=None)
    p = sub.add_parser("fix-faces", help="re-draw each face at the model's size and report its sim-score")
    p.add_argument("--image", type=Path, required=True, help="the picture (its PNG parameters give prompt and seed)")
    p.add_argument("--prompt", default="", help="face prompt (default: the picture's own; [PROMPT] stands for it)")
    p.add_argument("--negative", default=None, help="negative prompt (default: the picture's own)")
    p.add_argument("--lora", action="append", default=[], type=parse_lora, metavar="NAME:WEIGHT",
                   help="a LoRA file or models/lora name, with an optional weight (repeatable)")
    p.add_argument("--model", default="", help="base or inpainting model id (default: the studio's default model)")
    p.add_argument("--seed", type=int, default=-1, help="-1: the picture's own seed, else random")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--cfg", type=float, default=d.cfg)
    p.add_argument("--sampler", default=d.sampler)
    p.add_argument("--strength", type=float, default=d.strength, help="denoising strength")
    p.add_argument("--confidence", type=float, default=d.confidence, help="lowest detection score that is a face")
    p.add_argument("--dilate", type=int, default=d.dilate, help="pixels added around each grown face box")
    p.add_argument("--mask-blur", type=int, default=d.mask_blur)
    p.add_argument("--padding", type=int, default=d.padding, help="pixels around the face box for the working crop")
    p.add_argument("--whole-picture", action="store_true", help="inpaint the whole picture, not only the face box")
    p.add_argument("--size", type=int, default=None, help="working side (default: the model's native size)")
    p.add_argument("--max-faces", type=int, default=d.max_faces, help="only the N largest faces (0: all)")
    p.add_argument("--reference", default="", help="dataset name or folder of photos: sim-scores against it "
                                                    "(default: each face against itself before the fix)")
    p.add_argument("--out", type=Path, required=True, help="folder to write the PNG to")
    p.set_defaults(run=run, gpu_work=True)  # it loads models: it takes its turn on the device


def run(args, studio) -> int:
    from studio.cli import open_image
    from studio.evaluate.scoring import load_reference
    from studio.generate.facefix import FaceFixRequest, fix_faces

    image = open_image(args.image, "--image")
    reference = load_reference(studio.settings, args.reference) if args.reference else None
    request = FaceFixRequest(
        image=image, prompt=args.prompt, negative_prompt=args.negative, loras=args.lora, model=args.model,
        seed=args.seed, steps=args.steps, cfg=args.cfg, sampler=args.sampler, strength=args.strength,
        confidence=args.confidence, dilate=args.dilate, mask_blur=args.mask_blur, only_masked=not args.whole_picture,
        padding=args.padding, size=args.size, max_faces=args.max_faces,
        reference=None if reference is None else reference.encodings,
        reference_name="" if reference is None else reference.source,
        parameters=image.info.get("parameters", "") or "", out_dir=args.out,
    )
    result = fix_faces(studio, request)
    if not result.faces:  # nothing written: say why, and exit apart from a bad argument's 2
        print(f"python -m studio fix-faces: {args.image}: {result.message}", file=sys.stderr)
        return 1
    scores = "; ".join(f.line for f in result.faces)
    print(f"{result.path}\tagainst {result.against}: {scores}")
    return 0
