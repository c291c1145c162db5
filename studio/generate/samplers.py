"""Samplers by their A1111 names, each mapped to the diffusers scheduler (and options) that implements it."""

from __future__ import annotations

# name -> (diffusers scheduler class, extra config). "DPM++ 2S a" has no exact diffusers twin: the single-step
# DPM-Solver++ of order 2 is its closest, as diffusers' own scheduler table notes.
SAMPLERS: dict[str, tuple[str, dict]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {"solver_order": 2, "lower_order_final": True}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}
DEFAULT_SAMPLER = "Euler a"


def check_sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise ValueError(f"`sampler` {name!r} is unknown; valid samplers are: {', '.join(SAMPLERS)}")
    return name


def make_scheduler(name: str, base_config, seed: int | None = None):
    """A fresh scheduler for sampler `name` with the base model's noise schedule (betas, timestep spacing...).

    `seed`: SDE samplers draw their Brownian noise from a generator of their own, which diffusers seeds at random
    unless told; A1111 seeds it from the image's seed, so a seed gives the same picture every time.
    """
    import inspect

    import diffusers

    class_name, extra = SAMPLERS[check_sampler(name)]
    cls = getattr(diffusers, class_name)
    config = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    if seed is not None and "noise_sampler_seed" in inspect.signature(cls.__init__).parameters:
        extra = {**extra, "noise_sampler_seed": seed}
    return cls.from_config({**config, **extra})
