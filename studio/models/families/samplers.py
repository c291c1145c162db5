"""Sampler tables by their A1111/Forge names, each mapped to the diffusers scheduler (and options) that implements it.
A family names the table it takes (ModelFamily.samplers); studio/generate/samplers.py builds schedulers from them."""

from __future__ import annotations

# DDPM-trained UNets (SD 1.x, SD 2.x, SDXL): name -> (diffusers scheduler class, extra config). "DPM++ 2S a" has no
# exact diffusers twin: the single-step DPM-Solver++ of order 2 is its closest, as diffusers' own scheduler table notes.
DDPM_SAMPLERS: dict[str, tuple[str, dict]] = {
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

# Flow-matching transformers (FLUX.1 and later): Euler over flow-matching sigmas, with Forge's schedule types (Simple
# is Forge's and diffusers' default; it is the part after the space).
FLOW_SAMPLERS: dict[str, tuple[str, dict]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Euler Beta": ("FlowMatchEulerDiscreteScheduler", {"use_beta_sigmas": True}),
    "Euler Karras": ("FlowMatchEulerDiscreteScheduler", {"use_karras_sigmas": True}),
}
