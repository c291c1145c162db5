"""What a training step minimises, by family objective (FamilySpec.objective):

- noise (SD 1.x, 2.x, SDXL): DDPM noise at a uniform timestep, the UNet predicts it (or v), min-SNR weighting;
- flow (FLUX.1): flow matching, noisy = (1 - sigma) * latents + sigma * noise, the transformer predicts
  noise - latents over 2x2-packed latent tokens, FLUX.1-dev with its guidance input.

Both return the squared error as a map over latent pixels (B, C, h, w) and a weight per sample (B,), so the loop
reduces them alike, and a dataset's masks (at latent size) weigh the map the same way for every family.
"""

from __future__ import annotations

from studio.train.config import RunConfig
from studio.train.parts import Conditioning, Parts, time_ids


class NoiseObjective:
    def __init__(self, parts: Parts, config: RunConfig):
        from diffusers import DDPMScheduler

        self.parts, self.config = parts, config
        self.scheduler = DDPMScheduler.from_config(parts.pipe.scheduler.config)  # the base's noise schedule

    def loss_map(self, denoiser, latents, cond: Conditioning, sizes, target_size, generator, autocast):
        """latents (B, 4, h, w) -> squared error (B, 4, h, w), weight (B,)."""
        import torch
        from diffusers.training_utils import compute_snr

        scheduler, config = self.scheduler, self.config
        b, c = latents.shape[:2]
        noise = _noise(latents, generator, config.noise_offset)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator).to(latents.device)
        noisy = scheduler.add_noise(latents, noise, t)
        epsilon = scheduler.config.prediction_type == "epsilon"
        target = noise if epsilon else scheduler.get_velocity(latents, noise, t)
        added = None
        if self.parts.sdxl:  # SDXL's pooled text and size conditioning
            added = {"text_embeds": cond.pooled.to(latents.device),
                     "time_ids": time_ids(sizes, target_size, latents.device)}
        with autocast():
            pred = denoiser(noisy, t, cond.hidden.to(latents.device), added_cond_kwargs=added).sample
        error = (pred.float() - target.float()) ** 2
        weight = torch.ones(b, device=latents.device)
        if config.min_snr_gamma:
            snr = compute_snr(scheduler, t)
            weight = snr.clamp(max=config.min_snr_gamma) / (snr if epsilon else snr + 1)
        return error, weight


class FlowObjective:
    def __init__(self, parts: Parts, config: RunConfig):
        self.parts, self.config = parts, config
        self.shift = config.flow_shift or float(parts.pipe.scheduler.config.get("shift", 3.0))

    def sigmas(self, b: int, generator):
        """Noise levels in (0, 1) for `b` samples, by the run's timestep_sampling (see RunConfig)."""
        import torch

        mode, config = self.config.timestep_sampling, self.config
        if mode == "uniform":
            return torch.rand(b, generator=generator)
        mean, std = (config.logit_mean, config.logit_std) if mode == "logit-normal" else (0.0, 1.0)
        sigma = torch.sigmoid(mean + std * torch.randn(b, generator=generator))
        if mode == "shift":  # more steps near pure noise, where a subject's layout is decided
            sigma = sigma * self.shift / (1 + (self.shift - 1) * sigma)
        return sigma

    def loss_map(self, denoiser, latents, cond: Conditioning, sizes, target_size, generator, autocast):
        """latents (B, 16, h, w), already shifted and scaled -> squared error (B, 16, h, w), weight (B,)."""
        import torch
        from diffusers import FluxPipeline

        b, c, h, w = latents.shape
        device = latents.device
        noise = _noise(latents, generator, self.config.noise_offset)
        sigma = self.sigmas(b, generator).to(device)
        s = sigma.view(b, 1, 1, 1)
        noisy = (1 - s) * latents + s * noise
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)  # (B, h/2 * w/2, 4C)
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, device, latents.dtype)
        hidden = cond.hidden.to(device)
        txt_ids = torch.zeros(hidden.shape[1], 3, device=device, dtype=latents.dtype)
        guidance = (torch.full((b,), self.config.flux_guidance, device=device)
                    if self.parts.distilled_guidance else None)
        with autocast():
            pred = denoiser(hidden_states=packed, timestep=sigma, guidance=guidance, encoder_hidden_states=hidden,
                            pooled_projections=cond.pooled.to(device), txt_ids=txt_ids, img_ids=img_ids).sample
        factor = self.parts.vae_factor
        pred = FluxPipeline._unpack_latents(pred, h * factor, w * factor, factor)  # (B, C, h, w)
        error = (pred.float() - (noise - latents).float()) ** 2
        return error, torch.ones(b, device=device)


def _noise(latents, generator, offset: float):
    import torch

    b, c = latents.shape[:2]
    noise = torch.randn(latents.shape, generator=generator)
    if offset:  # a per-channel shift: lets the model move an image's overall brightness
        noise = noise + offset * torch.randn((b, c, 1, 1), generator=generator)
    return noise.to(latents.device, latents.dtype)


def make_objective(parts: Parts, config: RunConfig):
    return FlowObjective(parts, config) if parts.spec.flow else NoiseObjective(parts, config)


def reduce(error, weight, mask=None):
    """The step's loss: each sample's mean squared error, weighted, averaged over the batch. A mask (B, 1, h, w) of
    loss weights makes each sample's error a weighted mean over its pixels: sum(error * mask) / sum(mask), so the
    loss keeps its scale however much of a picture is masked, pixels of weight 0 add nothing (a picture masked
    entirely adds 0), and an all-ones mask gives the plain mean."""
    if mask is None:
        per_sample = error.mean(dim=[1, 2, 3])
    else:
        mask = mask.to(error.device, error.dtype).expand_as(error)
        per_sample = (error * mask).sum(dim=[1, 2, 3]) / mask.sum(dim=[1, 2, 3]).clamp(min=1e-8)
    return (per_sample * weight).mean()


def mask_weights(mask, unmasked_weight: float):
    """A mask's loss weights with black lifted to `unmasked_weight` (grey in proportion): 0 ignores what is black."""
    return mask if mask is None or not unmasked_weight else unmasked_weight + (1.0 - unmasked_weight) * mask
