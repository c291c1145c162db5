"""`python -m studio generate`: images from a prompt (img2img, inpainting with --mask, hires fix with --hires-scale),
saved as PNGs with A1111 parameters, one printed line each."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from studio.generate.inpaint import INPAINT_AREAS
    from studio.generate.request import GenerationRequest, parse_lora
    from studio.generate.samplers import samplers_help

    d = GenerationRequest(prompt="")

    p = sub.add_parser("generate", help="generate images from a prompt")
    p.add_argument("--model", default="", help="base model id (default: the studio's default model)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--seed", type=int, default=-1, help="-1 for random (the seed used is printed)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--cfg", type=float, default=None,
                   help="classifier-free guidance (default: the family's: 7, or 1 for FLUX.1, where above 1 it "
                        "turns on real CFG and the negative prompt at twice the time)")
    p.add_argument("--distilled-cfg", type=float, default=None,
                   help="FLUX.1-dev's distilled guidance, Forge's Distilled CFG Scale (default 3.5)")
    p.add_argument("--max-sequence-length", type=int, default=None,
                   help="FLUX.1: T5 tokens of the prompt (default 512 for dev, 256 for schnell)")
    p.add_argument("--width", type=int, default=None, help="default: the model's native size")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--sampler", default=None,
                   help=f"default: the family's (Euler a; Euler for FLUX.1); by family: {samplers_help()}")
    p.add_argument("--lora", action="append", default=[], type=parse_lora, metavar="NAME:WEIGHT",
                   help="a LoRA file or models/lora name, with an optional weight (repeatable)")
    p.add_argument("--embedding", action="append", default=[], help="a textual-inversion file (repeatable)")
    p.add_argument("--init-image", type=Path, default=None, help="img2img from this image")
    p.add_argument("--strength", type=float, default=d.strength, help="img2img denoising strength")
    p.add_argument("--mask", type=Path, default=None,
                   help="with --init-image: inpaint where this mask is white (the picture's size)")
    p.add_argument("--mask-blur", type=int, default=d.mask_blur, help="soft edge of the inpainted region, pixels")
    p.add_argument("--inpaint-area", default=d.inpaint_area, choices=INPAINT_AREAS,
                   help="the whole picture, or only the mask's box (plus padding) at the model's size")
    p.add_argument("--inpaint-padding", type=int, default=d.inpaint_padding, help="pixels around the mask's box")
    p.add_argument("--hires-scale", type=float, default=d.hires_scale,
                   help="hires fix: upscale the first pass by this, then draw over it again (1: off)")
    p.add_argument("--hires-steps", type=int, default=d.hires_steps, help="steps of the second pass (0: --steps)")
    p.add_argument("--hires-upscaler", default=d.hires_upscaler, help="Lanczos or a model in models/upscale/")
    p.add_argument("--hires-strength", type=float, default=d.hires_strength,
                   help="denoising strength of the second pass")
    p.add_argument("--batch", type=int, default=1, help="images per prompt (seeds seed, seed+1, ...)")
    p.add_argument("--out", type=Path, required=True, help="folder to write the PNGs to")
    p.set_defaults(run=run, gpu_work=True)  # it loads models: it takes its turn on the device


def run(args, studio) -> int:
    from studio.cli import open_image
    from studio.generate import GenerationRequest, generate
    from studio.generate.parameters import save_png

    init = open_image(args.init_image, "--init-image") if args.init_image is not None else None
    mask = open_image(args.mask, "--mask") if args.mask is not None else None
    if mask is not None and init is None:
        raise ValueError("`--mask` needs `--init-image`: the picture to inpaint")
    request = GenerationRequest(
        prompt=args.prompt, model=args.model, negative_prompt=args.negative, seed=args.seed, steps=args.steps,
        cfg=args.cfg, width=args.width, height=args.height, batch_size=args.batch, sampler=args.sampler,
        loras=args.lora, embeddings=args.embedding, init_image=init, strength=args.strength, save=False,
        mask_image=mask, mask_blur=args.mask_blur, inpaint_area=args.inpaint_area,
        inpaint_padding=args.inpaint_padding, hires_scale=args.hires_scale, hires_steps=args.hires_steps,
        hires_upscaler=args.hires_upscaler, hires_strength=args.hires_strength, distilled_cfg=args.distilled_cfg,
        max_sequence_length=args.max_sequence_length,
    )
    result = generate(studio, request)
    for item in result.images:
        path = save_png(item.image, item.parameters, args.out, item.seed)
        print(f"{path}\tseed={item.seed}")
    for note in result.notes:
        print(f"note: {note}")
    return 0
