"""Benchmark: dataset preparation speed, first run (faces detected) vs a re-run (faces from the cache), as a ratio.

    .venv/bin/python bench/dataset.py [--count 100] [--size 512]

Builds `count` different real-face photos at `size` px (crops, mirrors, light and rotation of skimage's astronaut
and matplotlib's Grace Hopper), prepares them twice with the face cache cold then warm, and prints images per
second for ingest + face work (the part the cache saves) and for the whole preparation, and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_photos(folder: Path, count: int, size: int) -> None:
    from PIL import Image, ImageEnhance

    from tests.fixtures_faces import astronaut, hopper

    bases = [astronaut(), hopper()]
    folder.mkdir(parents=True)
    for i in range(count):
        im = bases[i % 10 == 9]  # one in ten is someone else, as in a real upload
        w, h = im.size
        cut = 0.55 + 0.45 * ((i * 7) % 10) / 10  # 55% .. 95% of the picture
        side = int(min(w, h) * cut)
        left, top = (i * 37) % (w - side + 1), (i * 53) % (h - side + 1)
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        if i % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        im = ImageEnhance.Brightness(im).enhance(0.75 + 0.05 * (i % 10) + 0.002 * i)  # every photo distinct
        im.rotate((i % 5 - 2) * 3, resample=Image.Resampling.BICUBIC).save(folder / f"photo_{i:03d}.jpg", quality=90)


def timed_prepare(studio, request):
    """Seconds for the whole preparation and for ingest + face work (up to the first crop)."""
    from studio.data import prepare_dataset

    marks = {}
    start = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        if message.startswith("cropping") and "faces" not in marks:
            marks["faces"] = time.perf_counter() - start

    result = prepare_dataset(studio, request, progress=progress)
    return time.perf_counter() - start, marks["faces"], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=-1, help="face detection processes (-1: automatic)")
    args = parser.parse_args()

    from studio.data import PrepareRequest
    from studio.context import Studio
    from studio.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    photos = root / "photos"
    make_photos(photos, args.count, args.size)
    settings = Settings(root=root, allow_downloads=False)
    studio = Studio.open(settings)

    from studio.data.scan import auto_workers

    print(f"face detection processes: {auto_workers(args.count) if args.workers < 0 else args.workers} "
          f"(0 = in this process)")
    runs = []
    for name in ("first", "cached"):
        request = PrepareRequest((photos,), name, "ohwx", size=512, blur_bystanders=True, workers=args.workers)
        total, faces, result = timed_prepare(studio, request)
        runs.append((total, faces))
        print(f"{name:>6} run: {args.count} photos, faces detected {result.faces_detected}, cached "
              f"{result.faces_cached}; ingest + faces {faces:.2f}s = {args.count / faces:.1f} img/s; whole "
              f"preparation {total:.2f}s = {args.count / total:.1f} img/s; flagged {len(result.flagged)}")
    (first_total, first_faces), (cached_total, cached_faces) = runs
    print(f"ingest + faces: cached re-run is {first_faces / cached_faces:.1f}x faster "
          f"(time ratio cached/first = {cached_faces / first_faces:.3f}); "
          f"whole preparation {first_total / cached_total:.1f}x (ratio {cached_total / first_total:.3f})")


if __name__ == "__main__":
    main()
