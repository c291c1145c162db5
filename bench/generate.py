"""Benchmark: studio generation and the model cache against bare diffusers, as ratios measured in one run.

    .venv/bin/python bench/generate.py [--model builtin:tiny] [--device cpu] [--repeats 5]

Prints: studio generate / bare pipeline call (goal <= 1.05); img2img from the cache / fresh from_pretrained
(goal <= 0.1) with RSS growth as a share of the model's size (goal <= 5%); LoRA switch A->B / reload with B
(goal <= 0.2) and whether the pixels are identical.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers import AutoPipelineForImage2Image

    from studio.cache import module_bytes
    from studio.context import Studio
    from studio.generate import GenerationRequest, LoraChoice, generate
    from studio.models import families
    from studio.settings import Settings
    from tests.weights_files import make_lora

    root = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    settings = Settings(root=root, device=args.device, allow_downloads=True)
    studio = Studio.open(settings)
    ref = studio.store.resolve(args.model)
    dtype = settings.resolve_dtype(args.device)
    request = GenerationRequest(prompt="a photo of a dog", model=args.model, seed=1, steps=args.steps, save=False)

    # 1. Studio generate vs a bare pipeline call on the same (cached) pipeline, same sampler and size.
    generate(studio, request)  # warm: load and first call
    with studio.cache.pipeline(args.model) as pipe:
        size = families.of(pipe).native_size(pipe)
        bare = pipe

    def bare_call():
        bare(prompt=request.prompt, num_inference_steps=args.steps, guidance_scale=7.0, width=size, height=size,
             generator=[torch.Generator("cpu").manual_seed(1)])

    from studio.generate.samplers import make_scheduler

    bare.scheduler = make_scheduler(request.sampler or families.of(bare).default_sampler, families.of(bare),
                                    bare.scheduler.config)
    studio_s, bare_s = [], []
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        studio_s.append(timed(lambda: generate(studio, request), 1))
        bare_s.append(timed(bare_call, 1))
    ratio = statistics.median(studio_s) / statistics.median(bare_s)
    print(f"generate: studio {statistics.median(studio_s):.3f}s / bare diffusers {statistics.median(bare_s):.3f}s "
          f"= {ratio:.3f} (goal <= 1.05)")

    # 2. img2img from the cache (shares the loaded modules) vs a fresh from_pretrained of the same model.
    model_bytes = module_bytes(bare)
    before = rss()
    t = time.perf_counter()
    with studio.cache.pipeline(args.model, task="img2img"):
        pass
    cached_s = time.perf_counter() - t
    growth = rss() - before
    source = str(ref.path) if ref.path is not None else ref.id
    fresh_s = timed(lambda: AutoPipelineForImage2Image.from_pretrained(source, dtype=dtype).to(args.device), 1)
    print(f"img2img: from cache {cached_s:.4f}s / fresh from_pretrained {fresh_s:.3f}s = {cached_s / fresh_s:.4f} "
          f"(goal <= 0.1); RSS growth {growth / 2**20:.1f} MiB = {100 * growth / model_bytes:.1f}% of the "
          f"{model_bytes / 2**20:.1f} MiB model (goal <= 5%)")

    # 3. LoRA switch A -> B on the cached base vs a fresh studio loading the base with B.
    lora_dir = settings.models_dir / "lora"
    make_lora(studio, args.model, lora_dir / "bench_a.safetensors", seed=1)
    make_lora(studio, args.model, lora_dir / "bench_b.safetensors", seed=2)
    with_a = GenerationRequest(**{**request.__dict__, "loras": [LoraChoice("bench_a")], "steps": 2})
    with_b = GenerationRequest(**{**request.__dict__, "loras": [LoraChoice("bench_b")], "steps": 2})
    generate(studio, with_a)
    generate(studio, with_b)  # both adapters now loaded once

    def switch():  # the switch itself: borrow the base with B active after A was
        with studio.cache.pipeline(args.model, loras=[LoraChoice(str(lora_dir / "bench_a.safetensors"))]):
            pass
        t = time.perf_counter()
        with studio.cache.pipeline(args.model, loras=[LoraChoice(str(lora_dir / "bench_b.safetensors"))]):
            pass
        return time.perf_counter() - t

    def reload():  # the alternative: load the base afresh and put B on it
        t = time.perf_counter()
        fresh = Studio.open(settings)
        with fresh.cache.pipeline(args.model, loras=[LoraChoice(str(lora_dir / "bench_b.safetensors"))]):
            pass
        return time.perf_counter() - t, fresh

    switch_s = statistics.median(switch() for _ in range(args.repeats))
    reloads = [reload() for _ in range(max(2, args.repeats // 2))]
    reload_s = statistics.median(r[0] for r in reloads)
    generate(studio, with_a)
    switched = np.asarray(generate(studio, with_b).images[0].image)
    same = np.array_equal(switched, np.asarray(generate(reloads[-1][1], with_b).images[0].image))
    print(f"lora switch: {switch_s:.4f}s / reload with B {reload_s:.3f}s = {switch_s / reload_s:.4f} (goal <= 0.2); "
          f"identical pixels: {same}")


if __name__ == "__main__":
    main()
