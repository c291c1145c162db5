"""Benchmark: tiled model upscaling against the same upscale untiled (time and peak memory), and face fix time per face
against its parts (detection and one inpaint of the same size), as ratios measured in one run on the CPU.

    .venv/bin/python bench/upscale.py [--size 512] [--scale 4] [--tile 256] [--face-model builtin:pocket]

The upscalers are random-weight networks of the real architectures, saved as safetensors and loaded through the
studio's cache as a user's would be: Real-ESRGAN Compact (realesr-general-x4v3's shape, 64 features, --convs convs)
and ESRGAN/RRDBNet (--esrgan-filters features, --esrgan-blocks blocks; the real 4x+ has 64 and 23). Peak memory is the
process's resident set sampled every 2 ms, above what it held before the call; the tiled run goes first so memory
the allocator keeps from it cannot hide the untiled run's peak.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class PeakRSS:
    """The highest resident set size while the block runs, above the size when it began (bytes)."""

    def __enter__(self):
        import psutil

        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._done.wait(0.002):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def save_network(path: Path, arch: str, args) -> str:
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    if arch == "compact":
        net = Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=args.convs, upscale=args.scale)
        label = f"Real-ESRGAN Compact 64 features, {args.convs} convs"
    else:
        net = ESRGAN(in_nc=3, out_nc=3, num_filters=args.esrgan_filters, num_blocks=args.esrgan_blocks, scale=args.scale)
        label = f"ESRGAN {args.esrgan_filters} features, {args.esrgan_blocks} RRDB blocks"
    with torch.no_grad():  # random weights at a tame scale, so activations stay finite through every block
        for p in net.parameters():
            p.mul_(0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return label


def bench_upscale(studio, name: str, label: str, image, args) -> None:
    import numpy as np

    from studio.generate.upscale import UpscaleRequest, upscale

    with studio.cache.borrow("upscaler", name):  # loaded once, so neither run pays for the load
        pass
    runs = {}
    for tile in (args.tile, 0):
        request = UpscaleRequest(image=image, upscaler=name, scale=args.scale, tile=tile,
                                 tile_overlap=args.overlap, save=False)
        with PeakRSS() as memory:
            t = time.perf_counter()
            result = upscale(studio, request)
            seconds = time.perf_counter() - t
        runs[tile] = (seconds, memory.growth, np.asarray(result.image, dtype=np.int16), result.info)
    (t_tiled, m_tiled, tiled, info), (t_whole, m_whole, whole, _) = runs[args.tile], runs[0]
    diff = np.abs(tiled - whole)
    print(f"upscale {args.scale}x of {image.width}x{image.height} -> {tiled.shape[1]}x{tiled.shape[0]} ({label}):")
    fits = "" if info.tile else ", the picture fits one tile"
    print(f"  untiled {t_whole:.2f}s, peak +{m_whole / 2**20:.0f} MiB; tiled {args.tile} px (overlap "
          f"{args.overlap}{fits}) {t_tiled:.2f}s, peak +{m_tiled / 2**20:.0f} MiB")
    print(f"  tiled / untiled: time {t_tiled / t_whole:.2f}, peak memory {m_tiled / max(m_whole, 1):.2f}; "
          f"pixels max |diff| {int(diff.max())} levels, mean {diff.mean():.3f}")


def bench_face_fix(studio, model: str, steps: int, repeats: int) -> None:
    from studio.faces import detect_faces
    from studio.generate import GenerationRequest, generate
    from studio.generate.facefix import FaceFixRequest, fix_faces, mask_box
    from tests.fixtures_faces import astronaut

    photo = astronaut()
    request = FaceFixRequest(image=photo, prompt="a photo of a woman", model=model, steps=steps, seed=1, save=False)
    fix_faces(studio, request)  # warm: the model loaded, dlib's models read
    fixes, detects, inpaints = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fix_faces(studio, request)
        fixes.append((time.perf_counter() - t) / len(result.faces))
        t = time.perf_counter()
        face = detect_faces(photo)[0]
        detects.append(time.perf_counter() - t)
        from PIL import Image

        mask = Image.new("L", photo.size, 0)
        mask.paste(255, mask_box(face.box, photo.size, request.dilate))
        t = time.perf_counter()
        generate(studio, GenerationRequest(prompt=request.prompt, model=model, steps=steps, seed=1, init_image=photo,
                                           mask_image=mask, strength=request.strength, inpaint_area="only masked",
                                           save=False))
        inpaints.append(time.perf_counter() - t)
    per_face, detect_s, inpaint_s = (statistics.median(x) for x in (fixes, detects, inpaints))
    print(f"face fix on the astronaut ({model}, {steps} steps at strength {request.strength}, "
          f"{len(result.faces)} face): {per_face:.2f}s per face")
    print(f"  one detection {detect_s:.2f}s + one only-masked inpaint {inpaint_s:.2f}s = {detect_s + inpaint_s:.2f}s; "
          f"face fix / (detection + inpaint) = {per_face / (detect_s + inpaint_s):.2f} (the rest: the second "
          f"detection and the two encodings that give the sim-scores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="input picture side for the upscalers")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--convs", type=int, default=16, help="Compact's convs (realesr-general-x4v3 has 32)")
    parser.add_argument("--esrgan-filters", type=int, default=32)
    parser.add_argument("--esrgan-blocks", type=int, default=2)
    parser.add_argument("--arch", choices=("compact", "esrgan", "both"), default="both")
    parser.add_argument("--face-model", default="builtin:pocket", help="'' skips the face fix timing")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from PIL import Image

    from studio.context import Studio
    from studio.settings import Settings
    from tests.fixtures_faces import astronaut

    root = Path(tempfile.mkdtemp(prefix="bench-upscale-"))
    studio = Studio.open(Settings(root=root, device=args.device, allow_downloads=False))
    image = astronaut().resize((args.size, args.size), Image.Resampling.LANCZOS)
    for arch in ("compact", "esrgan") if args.arch == "both" else (args.arch,):
        name = f"{args.scale}x-bench-{arch}"
        label = save_network(studio.settings.models_dir / "upscale" / f"{name}.safetensors", arch, args)
        bench_upscale(studio, name, label, image, args)
        studio.cache.release()
    if args.face_model:
        bench_face_fix(studio, args.face_model, args.steps, args.repeats)


if __name__ == "__main__":
    main()
