"""Samplers by their A1111/Forge names, each mapped to the diffusers scheduler (and options) that implements it: the
UNet families' (SD 1.x, SD 2.x, SDXL) and the flow-matching ones FLUX.1 takes."""

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
# FLUX.1: Euler over flow-matching sigmas, with Forge's schedule types (Simple is Forge's and diffusers' default).
FLOW_SAMPLERS: dict[str, tuple[str, dict]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Euler Beta": ("FlowMatchEulerDiscreteScheduler", {"use_beta_sigmas": True}),
    "Euler Karras": ("FlowMatchEulerDiscreteScheduler", {"use_karras_sigmas": True}),
}
DEFAULT_FLOW_SAMPLER = "Euler"


def samplers_for(flow: bool) -> dict[str, tuple[str, dict]]:
    return FLOW_SAMPLERS if flow else SAMPLERS


def default_sampler(flow: bool) -> str:
    return DEFAULT_FLOW_SAMPLER if flow else DEFAULT_SAMPLER


def check_sampler(name: str, flow: bool | None = None) -> str:
    """`name` if it is a sampler (of the flow-matching or the UNet families, or of either when `flow` is None)."""
    known = {**SAMPLERS, **FLOW_SAMPLERS} if flow is None else samplers_for(flow)
    if name not in known:
        family = "" if flow is None else " for FLUX.1" if flow else " for SD 1.x, SD 2.x and SDXL"
        raise ValueError(f"`sampler` {name!r} is unknown{family}; valid samplers are: {', '.join(known)}")
    return name


def schedule_type(name: str, flow: bool) -> str | None:
    """A1111/Forge's `Schedule type` of a sampler (FLUX.1's are always written: Simple, Beta, Karras)."""
    if not flow:
        return None
    return name.split(" ", 1)[1] if " " in name else "Simple"


def make_scheduler(name: str, base_config, seed: int | None = None, flow: bool = False):
    """A fresh scheduler for sampler `name` with the base model's noise schedule (betas, timestep spacing...).

    `seed`: SDE samplers draw their Brownian noise from a generator of their own, which diffusers seeds at random
    unless told; A1111 seeds it from the image's seed, so a seed gives the same picture every time.
    """
    import inspect

    import diffusers

    class_name, extra = samplers_for(flow)[check_sampler(name, flow)]
    cls = getattr(diffusers, class_name)
    config = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    if seed is not None and "noise_sampler_seed" in inspect.signature(cls.__init__).parameters:
        extra = {**extra, "noise_sampler_seed": seed}
    return cls.from_config({**config, **extra})
