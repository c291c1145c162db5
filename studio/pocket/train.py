"""Trains the pocket model from scratch on procedural scenes: VAE first, then UNet + text encoder on cached latents.

    python -m studio.pocket.train --out models/builtin/pocket --seed 0

Everything is seeded and runs a fixed number of steps, so the same command gives the same weights on the same
machine. Progress goes to stdout; the figures (step counts, losses, minutes per stage) go to training.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from studio.fileio import temp_dir
from studio.models import families
from studio.pocket.model import (PocketArchitecture, build_scheduler, build_text_encoder, build_unet, build_vae,
                                 write_tokenizer)
from studio.pocket.scenes import make_scenes


@dataclass(frozen=True)
class PocketTraining:
    seed: int = 0
    # Torch threads; 1 leaves the second core to the rest of the machine (tests, the UI).
    threads: int = 1
    # VAE: most steps on 32x32 crops (4x cheaper; the VAE is fully convolutional), the last ones on whole images.
    vae_steps: int = 1400
    vae_full_steps: int = 200
    vae_batch: int = 16
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6  # as in SD's VAE: enough to keep latents bounded, not enough to blur
    # Dataset for the diffusion model: rendered once, encoded once, also flipped left-right.
    scenes: int = 8000
    face_fraction: float = 0.4
    # UNet + text encoder.
    unet_steps: int = 1500
    unet_batch: int = 64
    unet_lr: float = 5e-4
    warmup_steps: int = 100
    caption_dropout: float = 0.1  # empty captions teach the unconditional branch for classifier-free guidance
    min_snr_gamma: float = 5.0  # Min-SNR loss weighting: faster convergence at the same steps
    # Offset noise (a per-channel constant added to the noise) lets the model change a whole background's colour,
    # which SD's schedule otherwise leaves to the starting noise.
    offset_noise: float = 0.0
    ema_decay: float = 0.999
    # Stop a stage early if it runs past this many minutes (a safety net; the step counts decide normally).
    max_minutes: float = 45.0
    checker_steps: int = 600
    arch: PocketArchitecture = field(default_factory=PocketArchitecture)


def _images_to_tensor(images):
    import numpy as np
    import torch

    array = np.stack([np.asarray(im, dtype=np.float32) for im in images])  # (B, H, W, 3) in 0..255
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0  # (B, 3, H, W) in -1..1


def train_vae(cfg: PocketTraining, log) -> tuple:
    """Train the autoencoder on endless fresh scenes; return (vae, figures)."""
    import torch

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed + 1)
    vae = build_vae(cfg.arch)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    total = cfg.vae_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / total))))
    start, recent = time.time(), []
    for step in range(total):
        full = step >= total - cfg.vae_full_steps
        batch = cfg.vae_batch // 4 if full else cfg.vae_batch
        scenes = make_scenes(batch, seed=rng.randrange(2**31), size=cfg.arch.image_size, face_fraction=cfg.face_fraction)
        x = _images_to_tensor([s.image for s in scenes])  # (B, 3, 64, 64)
        if not full:
            i, j = rng.randrange(0, 33), rng.randrange(0, 33)
            x = x[:, :, i:i + 32, j:j + 32]  # (B, 3, 32, 32)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        l1 = (recon - x).abs().mean()
        loss = l1 + 0.5 * (recon - x).pow(2).mean() + cfg.vae_kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        recent = (recent + [l1.item()])[-50:]
        if step % 100 == 0 or step == total - 1:
            log(f"vae step {step}/{total} l1 {sum(recent) / len(recent):.4f} ({(time.time() - start) / 60:.1f} min)")
        if time.time() - start > cfg.max_minutes * 60:
            log(f"vae stopped by the time limit at step {step}")
            break
    return vae.eval(), {"vae_steps": step + 1, "vae_minutes": (time.time() - start) / 60, "vae_l1": sum(recent) / len(recent)}


def encode_scenes(cfg: PocketTraining, vae, tokenizer, log) -> tuple:
    """Render the training scenes, encode them (and their mirror images) once; return (latents, ids, figures)."""
    import torch

    start = time.time()
    scenes = make_scenes(cfg.scenes, seed=cfg.seed + 2, size=cfg.arch.image_size, face_fraction=cfg.face_fraction)
    means, stds = [], []
    with torch.no_grad():
        for i in range(0, len(scenes), 128):
            x = _images_to_tensor([s.image for s in scenes[i:i + 128]])
            for flipped in (x, x.flip(-1)):
                dist = vae.encode(flipped).latent_dist
                means.append(dist.mean)
                stds.append(dist.std)
    # The batches alternate plain/flipped; reorder to [all plain, all flipped] to pair with the captions.
    mean = torch.cat(means[0::2] + means[1::2])  # (2N, 4, 16, 16)
    std = torch.cat(stds[0::2] + stds[1::2])
    captions = [s.caption for s in scenes] * 2
    ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    scaling = 1.0 / mean.std().item()
    log(f"encoded {len(scenes)} scenes and their mirror images in {(time.time() - start) / 60:.1f} min; latent scaling factor {scaling:.4f}")
    return mean, std, ids, {"encode_minutes": (time.time() - start) / 60, "scaling_factor": scaling}


def train_unet(cfg: PocketTraining, mean, std, ids, empty_ids, scaling: float, vocab_size: int, log,
               init: tuple | None = None) -> tuple:
    """Train the UNet and the text encoder together on cached latents; return (unet, text_encoder, figures).

    `init` is an optional (unet, text_encoder) pair to continue from instead of fresh weights.
    """
    import torch

    torch.manual_seed(cfg.seed + 3)
    unet, text_encoder = init or (build_unet(cfg.arch), build_text_encoder(cfg.arch, vocab_size))
    unet.train()
    text_encoder.train()
    scheduler = build_scheduler(cfg.arch)
    alphas = scheduler.alphas_cumprod  # (1000,)
    snr = alphas / (1 - alphas)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01)
    total = cfg.unet_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / total))))
    gen = torch.Generator().manual_seed(cfg.seed + 4)
    start, recent = time.time(), []
    for step in range(total):
        # 1. A batch of cached latents, sampled from their posterior and scaled to unit variance.
        idx = torch.randint(0, len(mean), (cfg.unet_batch,), generator=gen)
        latents = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen)) * scaling  # (B, 4, 16, 16)
        batch_ids = ids[idx].clone()
        drop = torch.rand(cfg.unet_batch, generator=gen) < cfg.caption_dropout
        batch_ids[drop] = empty_ids
        # 2. Noise them at random timesteps.
        t = torch.randint(0, len(alphas), (cfg.unet_batch,), generator=gen)
        noise = torch.randn(latents.shape, generator=gen)
        if cfg.offset_noise:
            noise = noise + cfg.offset_noise * torch.randn(noise.shape[:2] + (1, 1), generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        # 3. Predict the noise; Min-SNR weights keep the easy low-noise steps from dominating.
        hidden = text_encoder(batch_ids)[0]  # (B, 77, width)
        pred = unet(noisy, t, hidden).sample
        weight = torch.clamp(snr[t], max=cfg.min_snr_gamma) / snr[t]
        loss = (weight * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        # 4. Exponential moving average of the weights, warmed up so early steps do not linger.
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        recent = (recent + [loss.item()])[-50:]
        if step % 100 == 0 or step == total - 1:
            log(f"unet step {step}/{total} loss {sum(recent) / len(recent):.4f} ({(time.time() - start) / 60:.1f} min)")
        if time.time() - start > cfg.max_minutes * 60:
            log(f"unet stopped by the time limit at step {step}")
            break
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    figures = {"unet_steps": step + 1, "unet_minutes": (time.time() - start) / 60, "unet_loss": sum(recent) / len(recent)}
    return unet.eval(), text_encoder.eval(), figures


def save_pipeline(out: Path, tmp: Path, vae, unet, text_encoder, tokenizer, arch: PocketArchitecture) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=build_scheduler(arch), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(tmp, safe_serialization=True)


def _load_earlier(folder: Path):
    """An earlier pocket run's pipeline, read through the model store (on the CPU, float32)."""
    import torch

    from studio.models import ModelStore
    from studio.settings import Settings

    if not (Path(folder) / "model_index.json").is_file():
        raise ValueError(f"`folder` must be a pocket model folder with model_index.json but is {folder}")
    store = ModelStore(Settings(root=Path(folder), allow_downloads=False))
    return store.load_base(store.resolve(str(folder)), dtype=torch.float32, device="cpu")


def train(cfg: PocketTraining, out: Path, vae_from: Path | None = None, init_from: Path | None = None,
          fresh_tokenizer: bool = False, log=print) -> dict:
    """Train every part of the pocket model and write it as a diffusers folder at `out` (replaced atomically).

    `vae_from` reuses a pocket folder's VAE; `init_from` also continues from its UNet, text encoder and tokenizer
    (or, with `fresh_tokenizer`, from a newly written tokenizer whose ids the text encoder then learns again).
    """
    import torch

    if cfg.unet_steps < 1 or cfg.vae_steps < 1:
        raise ValueError(f"`unet_steps` and `vae_steps` must be positive but are {cfg.unet_steps} and {cfg.vae_steps}")
    torch.set_num_threads(cfg.threads)
    began = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir(out)
    try:
        # An earlier run's folder, loaded through the model store like any model (the VAE, or every part).
        vae_from = vae_from or init_from
        earlier = _load_earlier(vae_from) if vae_from is not None else None
        # 1. Tokenizer: every caption word one token, plus spare and reserved trigger words; a continued run keeps
        #    the one its text encoder learnt, since the ids are what the embeddings mean.
        if init_from is not None and not fresh_tokenizer:
            tokenizer = earlier.tokenizer
            shutil.copytree(init_from / "tokenizer", tmp / "tokenizer")  # its files as they are (vocab, merges)
        else:
            tokenizer = write_tokenizer(tmp)
        figures: dict = {"vocab_size": len(tokenizer)}
        # 2. VAE (or reuse one, when iterating on the diffusion stage).
        if earlier is not None:
            vae = earlier.vae.eval()
        else:
            vae, vae_figures = train_vae(cfg, log)
            figures.update(vae_figures)
        # 3. Cached latents and token ids of the training scenes.
        mean, std, ids, enc_figures = encode_scenes(cfg, vae, tokenizer, log)
        figures.update(enc_figures)
        vae.register_to_config(scaling_factor=enc_figures["scaling_factor"])
        empty_ids = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids[0]
        # 4. UNet + text encoder.
        init = None
        if init_from is not None:
            family = families.of(earlier)  # SD 1.x: pocket's own architecture
            init = (family.denoiser(earlier), family.text_encoders(earlier)[0])
            init[1].resize_token_embeddings(len(tokenizer))  # a fresh tokenizer may have fewer or more ids...
            init[1].config.update(dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                       pad_token_id=tokenizer.pad_token_id))  # ...and its special tokens elsewhere
            figures["continued_from"] = json.loads((init_from / "training.json").read_text())
            figures["fresh_tokenizer"] = fresh_tokenizer
        unet, text_encoder, unet_figures = train_unet(cfg, mean, std, ids, empty_ids, enc_figures["scaling_factor"],
                                                      len(tokenizer), log, init)
        figures.update(unet_figures)
        # 5. Save the pipeline, then the shape checker's classifier next to it.
        save_pipeline(out, tmp, vae, unet, text_encoder, tokenizer, cfg.arch)
        from studio.pocket.checker import ClassifierTraining, train_classifier

        figures.update(train_classifier(tmp / "checker", cfg=ClassifierTraining(seed=cfg.seed, steps=cfg.checker_steps), log=log))
        figures["total_minutes"] = (time.time() - began) / 60
        (tmp / "training.json").write_text(json.dumps({"config": asdict(cfg), "figures": figures}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log(f"done in {figures['total_minutes']:.1f} min: {out}")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/builtin/pocket"))
    parser.add_argument("--seed", type=int, default=PocketTraining.seed)
    parser.add_argument("--threads", type=int, default=PocketTraining.threads)
    parser.add_argument("--vae-steps", type=int, default=PocketTraining.vae_steps)
    parser.add_argument("--unet-steps", type=int, default=PocketTraining.unet_steps)
    parser.add_argument("--scenes", type=int, default=PocketTraining.scenes)
    parser.add_argument("--checker-steps", type=int, default=PocketTraining.checker_steps)
    parser.add_argument("--unet-lr", type=float, default=PocketTraining.unet_lr)
    parser.add_argument("--offset-noise", type=float, default=PocketTraining.offset_noise)
    parser.add_argument("--vae-from", type=Path, default=None, help="reuse the VAE of a pocket folder (for iterating)")
    parser.add_argument("--init-from", type=Path, default=None, help="continue from a pocket folder's weights")
    parser.add_argument("--fresh-tokenizer", action="store_true",
                        help="with --init-from: write a new tokenizer instead of keeping the earlier run's")
    args = parser.parse_args(argv)
    cfg = PocketTraining(seed=args.seed, threads=args.threads, vae_steps=args.vae_steps,
                         vae_full_steps=min(PocketTraining.vae_full_steps, args.vae_steps // 5),
                         unet_steps=args.unet_steps, scenes=args.scenes,
                         checker_steps=args.checker_steps, unet_lr=args.unet_lr, offset_noise=args.offset_noise)
    if args.fresh_tokenizer and args.init_from is None:
        raise SystemExit("--fresh-tokenizer only makes sense with --init-from (a new run always writes one)")
    train(cfg, args.out, vae_from=args.vae_from, init_from=args.init_from, fresh_tokenizer=args.fresh_tokenizer,
          log=lambda msg: print(msg, flush=True))


if __name__ == "__main__":
    main()
