"""A plain peft LoRA loop that teaches the pocket UNet a new concept from a few captioned images (until studio.train lands).

    python -m studio.pocket.lora --seeds 50    # teach "zq" = star, print how often it is drawn before and after
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from dataclasses import dataclass

from PIL import Image

from studio.pocket.scenes import BACKGROUNDS, SHAPE_COLORS, shape_scene


@dataclass(frozen=True)
class ConceptLora:
    seed: int = 0
    steps: int = 300  # the ceiling; a new shape is learned well before it
    batch: int = 8
    rank: int = 8
    lr: float = 2e-3  # LoRA weights start at zero, so a high rate is safe and fast
    # Attention, feed-forward and resnet convs: a new shape is drawn by the convs, not only chosen by attention.
    target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                                       "ff.net.2", "conv1", "conv2")
    min_snr_gamma: float = 5.0


def concept_images(trigger: str = "zq", shape: str = "star", count: int = 8, seed: int = 0) -> list[tuple[Image.Image, str]]:
    """`count` drawings of a shape the pocket model never saw, captioned with `trigger` in place of its name."""
    if not 1 <= count <= 100:
        raise ValueError(f"`count` must be in 1..100 but is {count}")
    rng = random.Random(seed)
    colors, backgrounds = list(SHAPE_COLORS), list(BACKGROUNDS)
    out = []
    for i in range(count):
        scene = shape_scene(rng, shape=shape, color=colors[i % len(colors)], background=backgrounds[i % len(backgrounds)],
                            caption_style=0)
        out.append((scene.image, scene.caption.replace(shape, trigger)))
    return out


def train_concept_lora(pipe, examples: list[tuple[Image.Image, str]], cfg: ConceptLora = ConceptLora(), log=None) -> dict:
    """Add a LoRA adapter to `pipe.unet` and train it on (image, caption) pairs; the adapter stays active."""
    import numpy as np
    import torch
    from peft import LoraConfig

    if not examples:
        raise ValueError("`examples` must hold at least one (image, caption) pair but is empty")
    if cfg.steps < 1:
        raise ValueError(f"`steps` must be positive but is {cfg.steps}")
    start = time.time()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
    # 1. Latents of the images and their mirror images, and the frozen text encoder's view of the captions.
    with torch.no_grad():
        x = torch.from_numpy(np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im, _ in examples]))
        x = x.permute(0, 3, 1, 2) / 127.5 - 1.0  # (N, 3, H, W)
        dist = vae.encode(torch.cat([x, x.flip(-1)])).latent_dist
        ids = pipe.tokenizer([c for _, c in examples] * 2, padding="max_length", max_length=77, truncation=True,
                             return_tensors="pt").input_ids
        hidden = text_encoder(ids)[0]  # (2N, 77, width)
    scaling = vae.config.scaling_factor
    # 2. The adapter: only its weights train.
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=cfg.rank, lora_alpha=cfg.rank, init_lora_weights="gaussian",
                                target_modules=list(cfg.target_modules)))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    alphas = pipe.scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    unet.train()
    losses = []
    for step in range(cfg.steps):
        # 3. Denoising loss on a random batch at random timesteps, as in the base training.
        idx = torch.randint(0, len(hidden), (cfg.batch,), generator=gen)
        latents = (dist.mean[idx] + dist.std[idx] * torch.randn(dist.mean[idx].shape, generator=gen)) * scaling
        t = torch.randint(0, len(alphas), (cfg.batch,), generator=gen)
        noise = torch.randn(latents.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        pred = unet(a.sqrt() * latents + (1 - a).sqrt() * noise, t, hidden[idx]).sample
        weight = torch.clamp(snr[t], max=cfg.min_snr_gamma) / snr[t]
        loss = (weight * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if log and step % 50 == 0:
            log(f"lora step {step}/{cfg.steps} loss {sum(losses[-50:]) / len(losses[-50:]):.4f}")
    unet.eval()
    return {"steps": cfg.steps, "seconds": time.time() - start, "final_loss": sum(losses[-50:]) / len(losses[-50:]),
            "lora_parameters": sum(p.numel() for p in params)}


def main(argv: list[str] | None = None) -> None:
    import torch

    from studio.pocket import POCKET_DIR, load_pocket_pipeline
    from studio.pocket.checker import PocketChecker
    from studio.pocket.evaluate import generate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=POCKET_DIR)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--steps", type=int, default=ConceptLora.steps)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe, checker = load_pocket_pipeline(args.model), PocketChecker(args.model / "checker")
    seeds = list(range(args.seeds))
    prompts = ["a red zq on a white background", "a blue zq on a black background", "a green zq"]
    # 1. How often the untaught model draws a star for the trigger word, 2. teach it, 3. ask again.
    before = {p: [label for label, _ in checker.labels(generate(pipe, p, seeds))] for p in prompts}
    figures = train_concept_lora(pipe, concept_images("zq", "star", count=args.images), ConceptLora(steps=args.steps),
                                 log=lambda msg: print(msg, flush=True))
    after = {p: [label for label, _ in checker.labels(generate(pipe, p, seeds))] for p in prompts}
    figures["images"] = args.images
    figures["prompts"] = {p: {"star_before": before[p].count("star") / len(seeds), "star_after": after[p].count("star") / len(seeds)}
                          for p in prompts}
    for p, f in figures["prompts"].items():
        print(f"{p}: star in {f['star_before']:.0%} of {len(seeds)} seeds before, {f['star_after']:.0%} after", flush=True)
    print(f"LoRA: {figures['steps']} steps on {args.images} images in {figures['seconds']:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
