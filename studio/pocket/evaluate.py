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


def generate(pipe, prompt: str, seeds: list[int], sampling: Sampling = Sampling()) -> list[Image.Image]:
    """One image per seed; seed i gives the same image whatever the batch around it."""
    import torch

    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return pipe([prompt] * len(seeds), num_inference_steps=sampling.steps, guidance_scale=sampling.guidance,
                height=sampling.size, width=sampling.size, generator=generators).images


def score_prompt(pipe, checker: PocketChecker, prompt: str, seeds: list[int], sampling: Sampling = Sampling()) -> tuple:
    """Generate `prompt` for every seed and check it; return (PromptScore, images)."""
    images = generate(pipe, prompt, seeds, sampling)
    verdicts = checker.verdicts(images, prompt)
    n = len(verdicts)
    colors = [v.color_ok for v in verdicts if v.color_ok is not None]
    score = PromptScore(prompt, n, sum(colors) / n if colors else None, sum(bool(v.label_ok) for v in verdicts) / n,
                        sum(v.ok and v.label_ok is not None for v in verdicts) / n)
    return score, images


def face_to_dog(pipe, face: Image.Image, seeds: list[int], strength: float = 0.75, prompt: str = DOG_PROMPT,
                sampling: Sampling = Sampling()) -> list[Image.Image]:
    """Turn a cartoon human face into a cartoon dog face with img2img on the pocket model, one image per seed."""
    import torch
    from diffusers import AutoPipelineForImage2Image

    if not 0 < strength <= 1:
        raise ValueError(f"`strength` must be in (0, 1] but is {strength}")
    img2img = AutoPipelineForImage2Image.from_pipe(pipe)  # shares the weights, loads nothing (and warns of nothing)
    img2img.set_progress_bar_config(disable=True)
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    return img2img([prompt] * len(seeds), image=[face] * len(seeds), strength=strength,
                   num_inference_steps=sampling.steps, guidance_scale=sampling.guidance, generator=generators).images


def image_grid(rows: list[list[Image.Image]], scale: int = 2, gap: int = 2) -> Image.Image:
    cell = rows[0][0].width * scale
    grid = Image.new("RGB", (max(map(len, rows)) * (cell + gap) - gap, len(rows) * (cell + gap) - gap), "white")
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            grid.paste(im.resize((cell, cell), Image.NEAREST), (c * (cell + gap), r * (cell + gap)))
    return grid


def main(argv: list[str] | None = None) -> None:
    import torch

    from studio.pocket import POCKET_DIR, load_pocket_pipeline

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
    pipe, checker = load_pocket_pipeline(args.model), PocketChecker(args.model / "checker")
    seeds = list(range(args.seeds))
    start, scores, rows = time.time(), [], []
    # 1. Every colour x shape on white, then the showcase prompts with other backgrounds, then faces.
    prompts = [f"a {c} {s} on a white background" for c in SHAPE_COLORS for s in SHAPES]
    prompts += [p for p in SHAPE_PROMPTS if p not in prompts] + list(FACE_PROMPTS)
    for prompt in prompts:
        score, images = score_prompt(pipe, checker, prompt, seeds, sampling)
        scores.append(score)
        if prompt in SHAPE_PROMPTS + FACE_PROMPTS:
            rows.append(images[:8])
        print(f"{score.both_right:5.0%}  colour {score.color_right if score.color_right is None else f'{score.color_right:.0%}'}"
              f"  label {score.label_right:.0%}  {prompt}", flush=True)
    # 2. Face to dog: procedural human faces (never seen as such by img2img) turned into dogs.
    faces = [human_face_scene(random.Random(1000 + i)).image for i in range(min(args.seeds, 10))]
    dogs = [face_to_dog(pipe, face, [i])[0] for i, face in enumerate(faces)]
    dog_rate = sum(label == "dog" for label, _ in checker.labels(dogs)) / len(dogs)
    print(f"face to dog: {dog_rate:.0%} of {len(dogs)} faces become dogs", flush=True)
    shape_scores = [s for s in scores if s.color_right is not None]
    summary = {
        "sampling": asdict(sampling),
        "seeds": args.seeds,
        "shape_prompts_both_right": sum(s.both_right for s in shape_scores) / len(shape_scores),
        "prompts_at_least_80": sum(s.both_right >= 0.8 for s in shape_scores),
        "shape_prompts": len(shape_scores),
        "face_to_dog": dog_rate,
        "minutes": (time.time() - start) / 60,
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
