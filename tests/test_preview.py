"""Generate's live preview: every few steps, the latents' approximate colours (the family's declared map for its own
VAE, else one fitted from the model's VAE), the batch side by side, packed latents (FLUX.1, FLUX.2, Qwen-Image) unpacked at any size."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def test_the_fitted_colours_read_a_flat_picture_back(session_studio):
    """pocket's own VAE (no declared map fits it): a flat colour encoded, then previewed, comes back as that colour
    (approximately: its strongest channel is the colour's, green the least clearly, and white is light)."""
    import torch

    from studio.generate.preview import preview_picture
    from studio.models import families

    with session_studio.cache.pipeline("builtin:pocket") as pipe:
        family = families.of(pipe)
        assert family.latent_rgb(pipe) is None  # a small VAE of its own: fitted, not the SD VAE's factors
        for colour, strongest in (((220, 40, 30), 0), ((40, 190, 50), 1), ((30, 60, 200), 2), ((240, 240, 240), None)):
            pixels = torch.tensor(colour, dtype=torch.float32)[None, :, None, None].expand(1, 3, 64, 64) / 127.5 - 1
            with torch.no_grad():
                latents = family.normalize_latents(pipe.vae, family.encode_latents(pipe.vae, pixels)[0])
            shown = np.asarray(preview_picture(family, pipe, latents, (64, 64)), dtype=float)
            assert shown.shape == (64, 64, 3)
            mean = shown[16:48, 16:48].mean(axis=(0, 1))
            if strongest is None:
                assert mean.min() > 170, (colour, mean)
            else:
                others = [mean[i] for i in range(3) if i != strongest]
                assert mean[strongest] > max(others) + (20 if strongest == 1 else 60), (colour, mean)  # green: weaker


def test_a_full_size_sd_vae_takes_the_family_s_declared_colours():
    from studio.models import families
    from studio.models.families.unet import SD_VAE_RGB

    def pipe(widths, channels=4):
        return SimpleNamespace(vae=SimpleNamespace(config=SimpleNamespace(block_out_channels=widths,
                                                                          latent_channels=channels)))

    sd1, sdxl, flux = families.get("sd1"), families.get("sdxl"), families.get("flux")
    assert sd1.latent_rgb(pipe((128, 256, 512, 512))) == (SD_VAE_RGB, (0.0, 0.0, 0.0))
    assert sdxl.latent_rgb(pipe((128, 256, 512, 512)))[1] == (0.1084, -0.0175, -0.0011)
    assert sd1.latent_rgb(pipe((32, 64, 64))) is None  # a builtin's small VAE
    assert flux.latent_rgb(pipe((128, 256, 512, 512), 16)) is None  # none declared: fitted


def test_generate_sends_a_preview_every_few_steps(session_studio):
    from studio.generate import GenerationRequest, generate
    from studio.generate.preview import PREVIEW_EVERY

    # a picture of each family, not square: the packed tokens of FLUX.1, FLUX.2 and Qwen-Image unpacked by its size
    for model, size in (("builtin:tiny", (64, 64)), ("builtin:tiny-xl", (64, 96)), ("builtin:tiny-flux", (64, 96)),
                        ("builtin:tiny-flux2", (64, 96)), ("builtin:tiny-qwenimage", (64, 96)),
                        ("builtin:tiny-zimage", (64, 96))):
        seen = []
        generate(session_studio, GenerationRequest(prompt="a red circle", model=model, steps=4, seed=1, save=False,
                                                   batch_size=2, width=size[0], height=size[1]), preview=seen.append)
        assert len(seen) == 4 // PREVIEW_EVERY, model
        assert all(p.size == (2 * size[0], size[1]) for p in seen), [p.size for p in seen]  # the batch side by side
