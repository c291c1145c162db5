"""`python -m studio animal`: a face photo as an animal (same face, pose, expression), one printed line per PNG."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from studio.faces.control import CONTROL_MODULES
    from studio.generate.animal import ANIMALS, AnimalRequest
    from studio.generate.request import CONTROL_MODES

    d = AnimalRequest(image=None)
    p = sub.add_parser("animal", help="turn a face photo into an animal with ControlNet img2img")
    p.add_argument("--image", type=Path, required=True, help="the face photo")
    p.add_argument("--animal", default=d.animal, help=f"one of: {', '.join(ANIMALS)}")
    p.add_argument("--breed", default="", help="e.g. 'golden retriever' (any text; see the docs for each list)")
    p.add_argument("--prompt", default="", help="replaces the animal's prompt template")
    p.add_argument("--negative", default=None, help="replaces the animal's negative prompt")
    p.add_argument("--control", action="append", choices=CONTROL_MODULES, default=None,
                   help="control image(s) to use, repeatable (default: mediapipe_face)")
    p.add_argument("--controlnet", action="append", default=None, metavar="MODEL",
                   help="ControlNet id for each --control (one for all, or one each; 'none' previews only; "
                        "default: builtin:tiny-controlnet for builtin:tiny, else the module's SD 1.5 hub model)")
    p.add_argument("--control-scale", action="append", type=float, default=None,
                   help="ControlNet weight, one for all or one per --control (default: 1.0)")
    p.add_argument("--guidance-start", type=float, default=0.0)
    p.add_argument("--guidance-end", type=float, default=1.0)
    p.add_argument("--control-mode", default=d.control_mode, choices=CONTROL_MODES)
    p.add_argument("--txt2img", action="store_true", help="follow the control images only, not the photo's colours")
    p.add_argument("--strength", type=float, default=d.strength, help="img2img denoising strength")
    p.add_argument("--model", default="", help="base model id (default: the studio's default model)")
    p.add_argument("--seed", type=int, default=-1, help="-1 for random (the seeds used are printed)")
    p.add_argument("--n-seeds", type=int, default=1, help="results for seed, seed+1, ...")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--cfg", type=float, default=None, help="default: the family's (7; 1 for FLUX.1)")
    p.add_argument("--sampler", default=None, help="default: DPM++ 2S a (seed 003's), Euler for FLUX.1")
    p.add_argument("--size", type=int, default=None,
                   help="longer side of the picture the model works on (default: the model's native size)")
    p.add_argument("--crop-face", action="store_true", help="transform a square around the face only")
    p.add_argument("--no-paste-back", action="store_true", help="with --crop-face: keep the crop, not the photo")
    p.add_argument("--face-index", type=int, default=0, help="which face when there are several (0: largest)")
    p.add_argument("--max-faces", type=int, default=1, help="faces drawn by the face controls")
    p.add_argument("--min-confidence", type=float, default=0.5, help="mediapipe_face detection confidence")
    p.add_argument("--canny-low", type=int, default=100)
    p.add_argument("--canny-high", type=int, default=200)
    p.add_argument("--out", type=Path, required=True, help="folder to write the PNGs to")
    p.set_defaults(run=run, gpu_work=True)  # it loads models: it takes its turn on the device


def _per_control(values: list | None, n: int, name: str, default) -> list:
    """One value for every control: none given -> the default, one -> shared, n -> one each."""
    if not values:
        return [default] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"`{name}` was given {len(values)} times for {n} controls; give it once or once per control")
    return values


def run(args, studio) -> int:
    from PIL import Image, UnidentifiedImageError

    from studio.faces.control import ControlOptions
    from studio.generate.animal import AnimalRequest, ControlChoice, face_to_animal

    # 1. Read the photo and line up each control with its ControlNet and weight.
    if not args.image.is_file():
        raise ValueError(f"`--image` {args.image} does not exist")
    try:
        image = Image.open(args.image)
        image.load()
    except UnidentifiedImageError as e:
        raise ValueError(f"`--image` {args.image} is not a picture: {e}") from e
    modules = args.control or ["mediapipe_face"]
    models = _per_control(args.controlnet, len(modules), "--controlnet", "")
    scales = _per_control(args.control_scale, len(modules), "--control-scale", 1.0)
    controls = [ControlChoice(m, model, scale, args.guidance_start, args.guidance_end)
                for m, model, scale in zip(modules, models, scales)]

    # 2. Transform and list what was written.
    request = AnimalRequest(
        image=image, animal=args.animal, breed=args.breed, prompt=args.prompt, negative_prompt=args.negative,
        controls=controls, model=args.model, task="txt2img" if args.txt2img else "img2img", strength=args.strength,
        control_mode=args.control_mode, seed=args.seed, n_seeds=args.n_seeds, steps=args.steps, cfg=args.cfg,
        sampler=args.sampler, size=args.size, crop_to_face=args.crop_face, paste_back=not args.no_paste_back,
        face_index=args.face_index, out_dir=args.out,
        options=ControlOptions(max_faces=args.max_faces, min_confidence=args.min_confidence,
                               canny_low=args.canny_low, canny_high=args.canny_high),
    )
    result = face_to_animal(studio, request)
    for item in result.images:
        print(f"{item.path}\tseed={item.seed}")
    print(f"{result.sheet_path}\tside by side")
    for note in result.notes:
        print(f"note: {note}")
    return 0
