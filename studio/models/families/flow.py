"""What the flow-matching families share (FLUX.1 and the transformers after it): noise levels drawn by the run's
`timestep_sampling`, noisy latents on the straight line between picture and noise, and Forge's Euler samplers.

A family's objective subclasses FlowObjective and says how its denoiser is called (packing, ids, guidance) and what
it predicts."""

from __future__ import annotations

from studio.models.families.base import Conditioning, noise_like


class FlowObjective:
    """noisy = (1 - sigma) * latents + sigma * noise; the subclass's `predict` returns the denoiser's output at the
    latents' shape and `target` what it should be. latents (B, C, h, w), already shifted and scaled -> squared error
    (B, C, h, w), weight (B,)."""

    def __init__(self, family, parts, config):
        self.family, self.parts, self.config = family, parts, config
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
        import torch

        b = latents.shape[0]
        noise = noise_like(latents, generator, self.config.noise_offset)
        sigma = self.sigmas(b, generator).to(latents.device)
        s = sigma.view(b, 1, 1, 1)
        noisy = (1 - s) * latents + s * noise
        pred = self.predict(denoiser, noisy, sigma, cond, autocast)
        error = (pred.float() - self.target(noise, latents).float()) ** 2
        return error, torch.ones(b, device=latents.device)

    def predict(self, denoiser, noisy, sigma, cond: Conditioning, autocast):
        raise NotImplementedError

    def target(self, noise, latents):
        return noise - latents  # the velocity from picture to noise
