"""Hires fix as A1111 has it: the second pass's size, its step schedule, and the parameters it writes."""

from __future__ import annotations

MAX_SCHEDULE = 1000  # a schedule longer than the models' 1000 training timesteps cannot be built


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The second pass's size: the first pass's times `scale`, cut down to multiples of 8 (A1111's `int(w*scale)`,
    which the VAE needs whole in latents)."""
    return int(width * scale) // 8 * 8, int(height * scale) // 8 * 8


def hires_schedule(steps: int, strength: float) -> int:
    """`num_inference_steps` for an img2img pass that runs exactly `steps` denoising steps at `strength`.

    A1111's "Hires steps: 10" are steps run: it builds a schedule of int(steps / strength) steps and runs the last
    `steps`. diffusers runs int(n * strength) of an n-step schedule, so n is the smallest such schedule that runs
    `steps`: 10 steps at strength 0.7 -> n = 15.
    """
    n = int(steps / min(strength, 0.999))
    while int(n * strength) < steps:
        n += 1
    if n > MAX_SCHEDULE:
        raise ValueError(f"`hires_strength` {strength:g} is too low for {steps} hires steps: it would need a "
                         f"{n}-step schedule (at most {MAX_SCHEDULE}); raise the strength or lower the steps")
    return n


def hires_fields(scale: float, steps: int, upscaler: str) -> dict[str, object]:
    """The keys A1111 writes for hires fix (beside `Denoising strength`); `Hires steps` only when set apart."""
    return {"Hires upscale": float(scale), "Hires steps": steps or None, "Hires upscaler": upscaler}
