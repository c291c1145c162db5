"""builtin:pocket, the small SD 1.x model the project trains itself on procedural scenes, so the studio works offline.

Its weights load through the model store and model cache like every model's; pictures come from studio.generate.
"""

from __future__ import annotations

from pathlib import Path

POCKET_DIR = Path(__file__).resolve().parents[2] / "models" / "builtin" / "pocket"
CHECKER_DIR = POCKET_DIR / "checker"


def pocket_images(studio, prompt: str, *, first_seed: int = 0, count: int = 1, steps: int = 20, cfg: float = 4.0,
                  sampler: str = "Euler a", loras: list | None = None, model: str = "builtin:pocket",
                  init_image=None, strength: float = 0.75) -> list:
    """`count` pictures of `prompt` for seeds first_seed, first_seed+1, ... through the studio's generator (txt2img,
    or img2img from `init_image`); seed i gives the same picture whatever the batch around it."""
    from studio.generate import GenerationRequest, generate

    if not 1 <= count <= 1000:
        raise ValueError(f"`count` must be in 1..1000 but is {count}")
    images = []
    for start in range(first_seed, first_seed + count, 16):  # Generate's batch limit
        batch = min(16, first_seed + count - start)
        request = GenerationRequest(prompt=prompt, model=model, seed=start, batch_size=batch, steps=steps, cfg=cfg,
                                    sampler=sampler, loras=list(loras or []), init_image=init_image,
                                    strength=strength, save=False)
        images += [made.image for made in generate(studio, request).images]
    return images
