"""Measures what the pocket model does: prompt following over many seeds, and a face turned into a dog with img2img.

    python -m studio.pocket.evaluate --seeds 50 --json docs/pocket_eval.json --grid docs/images/pocket_grid.png
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from studio.pocket import pocket_images
from studio.pocket.checker import PocketChecker
from studio.pocket.scenes import SHAPE_COLORS, SHAPES, human_face_scene

# Prompts naming a colour and a shape: every colour once, every shape twice, on the three backgrounds.
SHAPE_PROMPTS = (
    "a red circle on a white background",
    "a blue square on a white background",
    "a green triangle on a white background",
    "a yellow circle on a black background",
    "a purple square on a gray background",
    "a orange triangle on a black background",
)
FACE_PROMPTS = (
    "a cartoon face of a person with blonde hair, smiling",
    "a cartoon dog face with brown fur",
)
DOG_PROMPT = "a cartoon dog face with brown fur, on a white background"


@dataclass(frozen=True)
class Sampling:
    steps: int = 20  # Euler steps; 20 is where the pictures stop changing much
    guidance: float = 4.0  # classifier-free guidance scale
    size: int = 64


@dataclass(frozen=True)
class PromptScore:
    prompt: str
    seeds: int
    color_right: float | None  # fraction of seeds whose colour is right (None if the prompt names none)
    label_right: float  # fraction whose shape or face kind is right
    both_right: float


def generate(studio, prompt: str, seeds: list[int], sampling: Sampling = Sampling(),
             model: str = "builtin:pocket") -> list[Image.Image]:
    """One image per seed (consecutive seeds) through the studio's generator with the model's own sampler (Euler)."""
    _check_consecutive(seeds)
    return pocket_images(studio, prompt, first_seed=seeds[0], count=len(seeds), steps=sampling.steps,
                         cfg=sampling.guidance, sampler="Euler", model=model)


def score_prompt(studio, checker: PocketChecker, prompt: str, seeds: list[int], sampling: Sampling = Sampling(),
                 model: str = "builtin:pocket") -> tuple:
    """Generate `prompt` for every seed and check it; return (PromptScore, images)."""
    images = generate(studio, prompt, seeds, sampling, model)
    verdicts = checker.verdicts(images, prompt)
    n = len(verdicts)
    colors = [v.color_ok for v in verdicts if v.color_ok is not None]
    score = PromptScore(prompt, n, sum(colors) / n if colors else None, sum(bool(v.label_ok) for v in verdicts) / n,
                        sum(v.ok and v.label_ok is not None for v in verdicts) / n)
    return score, images


def face_to_dog(studio, face: Image.Image, seeds: list[int], strength: float = 0.75, prompt: str = DOG_PROMPT,
                sampling: Sampling = Sampling(), model: str = "builtin:pocket") -> list[Image.Image]:
    """Turn a cartoon human face into a cartoon dog face with img2img on the pocket model, one image per seed."""
    _check_consecutive(seeds)
    return pocket_images(studio, prompt, first_seed=seeds[0], count=len(seeds), steps=sampling.steps,
                         cfg=sampling.guidance, sampler="Euler", model=model, init_image=face, strength=strength)


def _check_consecutive(seeds: list[int]) -> None:
    if not seeds or list(seeds) != list(range(seeds[0], seeds[0] + len(seeds))):
        raise ValueError(f"`seeds` must be consecutive (seed, seed+1, ...) but are {seeds!r}")


def image_grid(rows: list[list[Image.Image]], scale: int = 2, gap: int = 2) -> Image.Image:
    cell = rows[0][0].width * scale
    grid = Image.new("RGB", (max(map(len, rows)) * (cell + gap) - gap, len(rows) * (cell + gap) - gap), "white")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im.resize((cell, cell), Image.NEAREST), (c * (cell + gap), r * (cell + gap)))
    return grid


@dataclass
class _Measured:
    scores: list[PromptScore]
    rows: list[list[Image.Image]]  # showcase prompts' first 8 pictures, for the grid
    faces: list[Image.Image]
    dogs: list[Image.Image]
    dog_rate: float
    started: float


def _measure(studio, checker: PocketChecker, model: str, args, sampling: Sampling) -> _Measured:
    seeds = list(range(args.seeds))
    start, scores, rows = time.time(), [], []
    # 1. Every colour x shape on white, then the showcase prompts with other backgrounds, then faces.
    prompts = [f"a {c} {s} on a white background" for c in SHAPE_COLORS for s in SHAPES]
    prompts += [p for p in SHAPE_PROMPTS if p not in prompts] + list(FACE_PROMPTS)
    for prompt in prompts:
        score, images = score_prompt(studio, checker, prompt, seeds, sampling, model)
        scores.append(score)
        if prompt in SHAPE_PROMPTS + FACE_PROMPTS:
            rows.append(images[:8])
        print(f"{score.both_right:5.0%}  colour {score.color_right if score.color_right is None else f'{score.color_right:.0%}'}"
              f"  label {score.label_right:.0%}  {prompt}", flush=True)
    # 2. Face to dog: procedural human faces (never seen as such by img2img) turned into dogs.
    faces = [human_face_scene(random.Random(1000 + i)).image for i in range(min(args.seeds, 10))]
    dogs = [face_to_dog(studio, face, [i], model=model)[0] for i, face in enumerate(faces)]
    dog_rate = sum(label == "dog" for label, _ in checker.labels(dogs)) / len(dogs)
    print(f"face to dog: {dog_rate:.0%} of {len(dogs)} faces become dogs", flush=True)
    return _Measured(scores, rows, faces, dogs, dog_rate, start)


def main(argv: list[str] | None = None) -> None:
    import torch

    from studio.context import Studio
    from studio.pocket import POCKET_DIR
    from studio.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=POCKET_DIR)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--steps", type=int, default=Sampling.steps)
    parser.add_argument("--guidance", type=float, default=Sampling.guidance)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the scores here")
    parser.add_argument("--grid", type=Path, default=None, help="write a grid of generations here")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be positive but is {args.seeds}")
    torch.set_num_threads(args.threads)
    sampling = Sampling(steps=args.steps, guidance=args.guidance)
    studio = Studio.open(Settings(allow_downloads=False, device="cpu", dtype="float32"))
    model = str(args.model.resolve())
    with studio.cache.borrow("checker", str(args.model / "checker")) as classifier:
        measured = _measure(studio, PocketChecker(classifier), model, args, sampling)
    scores, rows, faces, dogs, dog_rate = (measured.scores, measured.rows, measured.faces, measured.dogs,
                                           measured.dog_rate)
    shape_scores = [s for s in scores if s.color_right is not None]
    summary = {
        "sampling": asdict(sampling),
        "seeds": args.seeds,
        "shape_prompts_both_right": sum(s.both_right for s in shape_scores) / len(shape_scores),
        "prompts_at_least_80": sum(s.both_right >= 0.8 for s in shape_scores),
        "shape_prompts": len(shape_scores),
        "face_to_dog": dog_rate,
        "minutes": (time.time() - measured.started) / 60,
        "scores": [asdict(s) for s in scores],
    }
    print(f"colour+shape right: {summary['shape_prompts_both_right']:.1%} over {len(shape_scores)} prompts x {args.seeds} seeds; "
          f"{summary['prompts_at_least_80']} prompts at >= 80%", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    if args.grid:
        args.grid.parent.mkdir(parents=True, exist_ok=True)
        image_grid(rows + [faces[:8], dogs[:8]]).save(args.grid)


if __name__ == "__main__":
    main()
