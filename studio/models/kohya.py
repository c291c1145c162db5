"""LoRA weights in kohya's layout (`lora_unet_..._to_q.lora_down.weight` + `.alpha`), which A1111, Forge and
ComfyUI load, from diffusers/peft's layout (`unet.<module>.lora_A.weight`).

SD 1.x keys use the diffusers module names (kohya trains SD 1.x on a diffusers-style UNet); SDXL keys use the
original SGM names (`input_blocks_4_1_...`), as kohya's SDXL scripts write them.
"""

from __future__ import annotations

from studio.models.checkpoint import unet_name_to_original

_TEXT_PREFIX = {"text_encoder": "lora_te", "text_encoder_2": "lora_te2"}


def peft_to_kohya(state: dict, *, alpha: float, unet_config, sdxl: bool) -> dict:
    """Convert a diffusers LoRA state dict (peft names, one alpha for all modules) to kohya's keys."""
    import torch

    out = {}
    for key, tensor in state.items():
        prefix, rest = key.split(".", 1)
        module, kind = rest.rsplit(".lora_", 1)  # "down_blocks...to_q", "A.weight"
        if prefix == "unet":
            name = unet_name_to_original(module + ".weight", unet_config)[:-len(".weight")] if sdxl else module
            kohya = "lora_unet_" + name.replace(".", "_")
        elif prefix in _TEXT_PREFIX:
            head = "lora_te1" if sdxl and prefix == "text_encoder" else _TEXT_PREFIX[prefix]
            if not module.startswith("text_model."):  # transformers 5 dropped the text_model level kohya names have
                module = "text_model." + module
            kohya = f"{head}_" + module.replace(".", "_")
        else:
            raise ValueError(f"LoRA key {key!r} belongs to no known model part")
        direction = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}.get(kind)
        if direction is None:
            raise ValueError(f"LoRA key {key!r} is not a lora_A/lora_B weight")
        out[f"{kohya}.{direction}"] = tensor.contiguous()
        out[f"{kohya}.alpha"] = torch.tensor(float(alpha))
    return out
