"""Benchmark: where Face to animal's time goes, against Generate doing the same img2img in the same process.

    .venv/bin/python bench/animal.py [--seeds 4] [--steps 20] [--rounds 2]

On builtin:pocket with the Face to animal tab's offline example (a cartoon face into a dog; canny is drawn and
previewed, pocket has no ControlNet, img2img does the work), each round runs face_to_animal for `--seeds` seeds and
then studio.generate's img2img with the same picture, prompt, sampler, steps, CFG, strength and seeds, one call per
seed as face_to_animal makes them. It prints the control-image stage, the generation per seed, the sheet and saving
rest, and the ratio of the whole transform to the same generations through Generate. The first round loads the model
and is left out of the ratio; the summary is the median of the others (one busy moment on a shared machine
multiplies a round's time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from PIL import Image

    from studio.context import Studio
    from studio.generate import GenerationRequest, generate
    from studio.generate.animal import AnimalRequest, ControlChoice, face_to_animal
    from studio.quiet import quiet_third_party
    from studio.settings import Settings
    from studio.ui.animal_tab import POCKET_DEMO

    quiet_third_party()
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio.open(Settings(root=Path(tmp), models_dir=Path("models"), workspace_dir=Path(tmp) / "workspace",
                                      allow_downloads=False))
        photo = Image.open(POCKET_DEMO["image"]).convert("RGB")
        request = AnimalRequest(image=photo, prompt=POCKET_DEMO["prompt"], negative_prompt="",
                                controls=[ControlChoice("canny")], model="builtin:pocket",
                                strength=POCKET_DEMO["strength"], cfg=POCKET_DEMO["cfg"],
                                sampler=POCKET_DEMO["sampler"], seed=0, n_seeds=args.seeds, steps=args.steps,
                                out_dir=Path(tmp) / "out")
        print(f"builtin:pocket, the offline example, {args.seeds} seeds x {args.steps} steps, img2img at strength "
              f"{request.strength}, canny previewed (pocket has no ControlNet)")
        ratios = []
        for round_ in range(args.rounds):
            started = time.perf_counter()
            result = face_to_animal(studio, request)
            transform = time.perf_counter() - started
            work = result.preview.work
            started = time.perf_counter()
            for seed in range(args.seeds):
                generate(studio, GenerationRequest(prompt=result.prompt, model="builtin:pocket",
                                                   negative_prompt=result.negative_prompt, seed=seed,
                                                   steps=args.steps, cfg=request.cfg, sampler=request.sampler,
                                                   width=work.width, height=work.height, init_image=work,
                                                   strength=request.strength, save=False))
            plain = time.perf_counter() - started
            generation = sum(result.generation_seconds)
            rest = transform - result.control_seconds - generation
            print(f"round {round_ + 1}: transform {transform:.2f} s = controls {result.control_seconds:.2f} s + "
                  f"generation {generation:.2f} s ({', '.join(f'{s:.2f}' for s in result.generation_seconds)}) + "
                  f"sheet and saving {rest:.2f} s; Generate, same img2img: {plain:.2f} s; "
                  f"transform / Generate x{transform / plain:.2f}"
                  + ("  (loads the model: left out)" if round_ == 0 and args.rounds > 1 else ""))
            if round_ or args.rounds == 1:
                ratios.append(transform / plain)
        ratios.sort()
        print(f"transform / Generate (median of {len(ratios)} warm round(s)): x{ratios[len(ratios) // 2]:.2f}")


if __name__ == "__main__":
    main()
