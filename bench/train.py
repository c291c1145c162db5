"""Benchmark: a studio LoRA run with cached latents and text embeddings vs the same run without the cache.

    .venv/bin/python bench/train.py [--steps 200] [--images 8] [--resolution 64] [--threads 1]

Each variant trains builtin:tiny (SD 1.x) in its own process (so peak RSS is its own), batch 1, validation off,
from the same seed. Steps per second are timed from the run's own step events (the first 5 steps, which warm up,
are left out); peak RSS is the process's maximum resident set. Without the cache every step encodes its image with
the VAE and its caption with the text encoder, which is the work diffusers' train_dreambooth_lora.py does per step.
A third process times the UNet's LoRA forward, backward and optimizer step alone on random inputs: the ceiling
any trainer of this model could reach on this machine at this moment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
WARMUP = 5


def one_run(root: Path, cache: bool, steps: int, images: int, resolution: int) -> dict:
    """Train in this process and report steps/s and peak RSS (run as a child by main())."""
    import resource

    import torch
    from skimage import data as skdata
    from PIL import Image

    from studio.context import Studio
    from studio.settings import Settings
    from studio.train.config import RunConfig
    from studio.train.loop import train
    from studio.train.runlog import RunLog, read_events

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    settings = Settings(root=root, models_dir=root / "models", allow_downloads=False)
    studio = Studio.open(settings)
    folder = settings.datasets_dir / "bench"
    if not folder.is_dir():
        folder.mkdir(parents=True)
        photo = Image.fromarray(skdata.astronaut())
        for i in range(images):  # distinct crops of a real photo, so every image costs its own encode
            side = 300 + 20 * i
            photo.crop((i * 10, i * 5, i * 10 + side, i * 5 + side)).resize((resolution, resolution)).save(
                folder / f"{i:03d}.png")
            (folder / f"{i:03d}.txt").write_text(f"sks, a photo, crop {i}")
    name = f"bench-{'cache' if cache else 'nocache'}"
    config = RunConfig(name=name, dataset="bench", model="builtin:tiny", trigger="sks", resolution=resolution,
                       max_steps=steps, epochs=0, validation_every=0, cache=cache, seed=0).check()
    run_dir = settings.runs_dir / name
    log = RunLog(run_dir)
    started = time.perf_counter()
    result = train(studio.store, settings, config, run_dir, log=log, should_stop=lambda: False)
    wall = time.perf_counter() - started
    log.close()
    times = [e["time"] for e in read_events(run_dir) if e["type"] == "step"][WARMUP:]
    return {"variant": name, "steps": result.steps, "steps_per_s": (len(times) - 1) / (times[-1] - times[0]),
            "wall_s": wall, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def unet_alone(root: Path, steps: int, resolution: int) -> dict:
    """The ceiling: LoRA forward, backward and AdamW step of the same UNet on random inputs, nothing else."""
    import resource

    import torch

    from studio.context import Studio
    from studio.settings import Settings
    from studio.train.config import RunConfig
    from studio.train.methods import LoraMethod
    from studio.train.parts import load_parts

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    studio = Studio.open(Settings(root=root, models_dir=root / "models", allow_downloads=False))
    parts = load_parts(studio.store, "builtin:tiny", "cpu")
    method = LoraMethod(parts, RunConfig(name="x", dataset="x"))
    parts.denoiser.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(method.param_groups(), weight_decay=1e-2)
    side = resolution // parts.vae_factor
    latents = torch.randn(1, 4, side, side).to(memory_format=torch.channels_last)
    hidden = torch.randn(1, 77, parts.denoiser.config.cross_attention_dim)
    times = []
    for step in range(steps):
        pred = parts.denoiser(latents, torch.tensor([step * 7 % 1000]), hidden).sample
        torch.nn.functional.mse_loss(pred, latents).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.time())
    times = times[WARMUP:]
    return {"variant": "unet", "steps": steps, "steps_per_s": (len(times) - 1) / (times[-1] - times[0]),
            "wall_s": 0.0, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (the machine is shared)")
    parser.add_argument("--one", choices=("cache", "nocache", "unet"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one == "unet":
        print(json.dumps(unet_alone(args.root, args.steps, args.resolution)))
        return
    if args.one:
        print(json.dumps(one_run(args.root, args.one == "cache", args.steps, args.images, args.resolution)))
        return

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        # the uncached run first builds the tiny model; the cached run then starts from the same files
        for variant in ("nocache", "cache", "unet"):
            out = subprocess.run([sys.executable, __file__, "--one", variant, "--root", tmp, "--steps", str(args.steps),
                                  "--images", str(args.images), "--resolution", str(args.resolution)],
                                 env=env, capture_output=True, text=True, check=True)
            rows[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"LoRA on builtin:tiny, {args.resolution} px, batch 1, {args.steps} steps, {args.images} images, "
          f"{args.threads} thread(s)")
    labels = {"nocache": "no cache", "cache": "cache", "unet": "UNet alone"}
    print(f"{'variant':<11} {'steps/s':>8} {'wall s':>8} {'peak RSS MB':>12}")
    for variant, row in rows.items():
        wall = f"{row['wall_s']:>8.1f}" if row["wall_s"] else f"{'':>8}"
        print(f"{labels[variant]:<11} {row['steps_per_s']:>8.2f} {wall} {row['peak_rss_mb']:>12.0f}")
    speed = rows["cache"]["steps_per_s"] / rows["nocache"]["steps_per_s"]
    memory = rows["cache"]["peak_rss_mb"] / rows["nocache"]["peak_rss_mb"]
    print(f"cache / no cache: steps/s x{speed:.2f}, peak RSS x{memory:.2f}")
    print(f"cache / UNet alone (the ceiling of any trainer on this model): "
          f"x{rows['cache']['steps_per_s'] / rows['unet']['steps_per_s']:.2f}")


if __name__ == "__main__":
    main()
