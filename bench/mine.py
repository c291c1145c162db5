"""Benchmark: mining speed on the CPU and where the time goes, and what one comparison costs as the group grows.

    .venv/bin/python bench/mine.py [--generated 16] [--photos 24] [--steps 20]

1. The generator path on builtin:tiny (random weights: no faces) and builtin:pocket (64 px cartoons), each candidate
   upscaled 4x with LANCZOS (a stand-in for an upscaler, to time that stage): candidates per second and seconds per
   stage (generate, upscale, save, faces, compare), the model loaded before the clock starts.
2. The folder path on real photos (skimage's astronaut, matplotlib's Grace Hopper, 512 px): the first job (faces
   found and encoded now) and a second job over the same folder (faces from the cache).
3. dlib's share: the same photos detected without and with encodings (encode = the difference).
4. One comparison against a group of 10, 100, 1000 and 3000 synthetic members, printed as ratios against size 10:
   a rejected candidate (one vectorised distance computation), an admitted one (plus the running sums and the
   re-check), and what recomputing every pair of members per admission would cost instead (one matrix product).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

STAGES = ("generate", "load", "upscale", "save", "faces", "compare")


def stage_line(label: str, report: dict) -> str:
    seconds, n = report["seconds_per_stage"], report["counts"]["candidates"]
    total = sum(seconds.values())
    parts = [f"{k} {1000 * seconds[k] / n:.1f} ms ({100 * seconds[k] / total:.0f}%)" for k in STAGES if seconds.get(k)]
    return f"{label}: {n} candidates, {n / total:.2f} candidates/s; per candidate: " + ", ".join(parts)


def mine_once(studio, request, upscale=None) -> dict:
    import json

    from studio.mine import mine
    from studio.mine.disk import mining_folder

    folder = mining_folder(studio.settings, request.name)
    mine(studio, request, folder, upscale=upscale)
    return json.loads((folder / "report.json").read_text())


def generator_path(studio, count: int, steps: int) -> None:
    from PIL import Image

    from studio.generate import GenerationRequest, generate
    from studio.mine import MiningRequest

    def upscale(image):
        return image.resize((image.width * 4, image.height * 4), Image.Resampling.LANCZOS)

    for model, prompt in (("builtin:tiny", "a photo of a face"), ("builtin:pocket", "a cartoon face with brown hair")):
        generate(studio, GenerationRequest(prompt, model=model, steps=1, save=False))  # load before the clock
        request = MiningRequest(f"gen-{model.split(':')[1]}", prompt=prompt, model=model, steps=steps,
                                max_candidates=count)
        report = mine_once(studio, request, upscale)
        print(stage_line(f"{model}, {steps} steps, 64 px -> 256 px", report) +
              f"; faces found {report['counts']['faces']}")


def make_photos(folder: Path, count: int) -> None:
    from PIL import Image, ImageEnhance

    from fixtures_faces import astronaut, hopper

    folder.mkdir(parents=True)
    bases = [astronaut(), hopper().crop((0, 44, 512, 556))]
    for i in range(count):
        im = bases[i % 4 == 3]  # one in four is someone else
        side = 400 + (i * 37) % 112
        left, top = (i * 13) % (512 - side + 1), (i * 29) % (512 - side + 1)
        im = im.crop((left, top, left + side, top + side)).resize((512, 512), Image.Resampling.LANCZOS)
        if i % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        ImageEnhance.Brightness(im).enhance(0.8 + 0.01 * i).save(folder / f"photo_{i:03d}.jpg", quality=90)


def folder_path(studio, photos: Path) -> None:
    from studio.mine import MiningRequest

    for name in ("first", "again"):
        report = mine_once(studio, MiningRequest(f"folder-{name}", candidates=photos))
        c = report["counts"]
        print(stage_line(f"folder, {name} job ({c['encoded']} encoded, {c['cached']} from the face cache)", report)
              + f"; group {report['group_size']}, rejected {c['rejected']}")


def dlib_split(photos: Path, count: int = 8) -> None:
    from PIL import Image

    from studio.faces import detect_faces

    pictures = [Image.open(p).convert("RGB") for p in sorted(photos.iterdir())[:count]]
    detect_faces(pictures[0])  # dlib's models loaded before the clock
    timings = {}
    for encode in (False, True):
        started = time.perf_counter()
        for im in pictures:
            detect_faces(im, encode=encode)
        timings[encode] = (time.perf_counter() - started) / len(pictures)
    print(f"dlib on 512 px photos: detect + landmarks {1000 * timings[False]:.0f} ms, encode "
          f"{1000 * (timings[True] - timings[False]):.0f} ms per photo")


def naive_means(members: np.ndarray) -> np.ndarray:
    """Every member's mean distance to the others from scratch, as a script that re-checks the whole group after each
    admission does; (M, M) through one matrix product, the fastest way numpy has."""
    squares = (members * members).sum(1)  # (M,)
    gram = squares[:, None] + squares[None, :] - 2 * members @ members.T  # (M, M)
    return np.sqrt(np.clip(gram, 0, None)).sum(1) / (len(members) - 1)


def comparison_cost(sizes=(10, 100, 1000, 3000), repeats: int = 300) -> None:
    from studio.mine.group import Member, Rules, SimGroup

    rng = np.random.default_rng(0)
    centre = rng.normal(size=128) * 0.05
    far = centre + rng.normal(size=128) * 0.1  # ~1.1 away: rejected
    rows = {}
    for size in sizes:
        group = SimGroup(Rules())
        faces = centre + rng.normal(size=(size, 128)) * 0.008  # ~0.13 apart: all admitted
        for i, e in enumerate(faces):
            group.consider(Member(i, f"seed {i}"), e)
        assert group.size == size
        reject, admit = [], []
        for r in range(repeats):
            started = time.perf_counter()
            group.consider(Member(-2, "far"), far)
            reject.append(time.perf_counter() - started)
            near = centre + rng.normal(size=128) * 0.008
            started = time.perf_counter()
            group.consider(Member(size + r, "near"), near)
            admit.append(time.perf_counter() - started)
            group._remove(group.size - 1)  # back to `size` members
        members = group.encodings
        started = time.perf_counter()
        for _ in range(max(1, repeats // 10)):
            naive_means(members)
        naive = (time.perf_counter() - started) / max(1, repeats // 10)
        rows[size] = (statistics.median(reject), statistics.median(admit), naive)
    base = rows[sizes[0]]
    print("comparison cost (median per candidate; ratio against a group of 10):")
    for size, (reject, admit, naive) in rows.items():
        print(f"  group {size:>5}: rejected {1e6 * reject:7.1f} us (x{reject / base[0]:5.1f}), admitted with re-check "
              f"{1e6 * admit:7.1f} us (x{admit / base[1]:5.1f}); every pair recomputed would be {1e6 * naive:9.1f} us "
              f"(x{naive / base[2]:7.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", type=int, default=16, help="candidates per builtin model")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps per generated candidate")
    parser.add_argument("--photos", type=int, default=24, help="real photos for the folder path")
    args = parser.parse_args()

    from studio.context import Studio
    from studio.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="bench-mine-"))
    studio = Studio.open(Settings(root=root, models_dir=root / "models", allow_downloads=False))
    generator_path(studio, args.generated, args.steps)
    photos = root / "photos"
    make_photos(photos, args.photos)
    folder_path(studio, photos)
    dlib_split(photos)
    comparison_cost()


if __name__ == "__main__":
    main()
