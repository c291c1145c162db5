"""`python -m studio generate`: images from a prompt, saved as PNGs with A1111 parameters, one printed line each."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from studio.generate.request import GenerationRequest, parse_lora
    from studio.generate.samplers import SAMPLERS

    d = GenerationRequest(prompt="")

    p = sub.add_parser("generate", help="generate images from a prompt")
    p.add_argument("--model", default="", help="base model id (default: the studio's default model)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--seed", type=int, default=-1, help="-1 for random (the seed used is printed)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--cfg", type=float, default=d.cfg)
    p.add_argument("--width", type=int, default=None, help="default: the model's native size")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--sampler", default=d.sampler, help=f"one of: {', '.join(SAMPLERS)}")
    p.add_argument("--lora", action="append", default=[], type=parse_lora, metavar="NAME:WEIGHT",
                   help="a LoRA file or models/lora name, with an optional weight (repeatable)")
    p.add_argument("--embedding", action="append", default=[], help="a textual-inversion file (repeatable)")
    p.add_argument("--init-image", type=Path, default=None, help="img2img from this image")
    p.add_argument("--strength", type=float, default=d.strength, help="img2img denoising strength")
    p.add_argument("--batch", type=int, default=1, help="images per prompt (seeds seed, seed+1, ...)")
    p.add_argument("--out", type=Path, required=True, help="folder to write the PNGs to")
    p.set_defaults(run=run)


def run(args, studio) -> int:
    from PIL import Image

    from studio.generate import GenerationRequest, generate
    from studio.generate.run import save_png

    init = None
    if args.init_image is not None:
        if not args.init_image.is_file():
            raise ValueError(f"`--init-image` {args.init_image} does not exist")
        init = Image.open(args.init_image)
    request = GenerationRequest(
        prompt=args.prompt, model=args.model, negative_prompt=args.negative, seed=args.seed, steps=args.steps,
        cfg=args.cfg, width=args.width, height=args.height, batch_size=args.batch, sampler=args.sampler,
        loras=args.lora, embeddings=args.embedding, init_image=init, strength=args.strength, save=False,
    )
    result = generate(studio, request)
    for item in result.images:
        path = save_png(item.image, item.parameters, args.out, item.seed)
        print(f"{path}\tseed={item.seed}")
    return 0
