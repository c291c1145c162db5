"""SD 2.x (2.0, 2.1, 512 and 768 px, epsilon or v prediction): a UNet conditioned on OpenCLIP ViT-H/14 (1024 wide)."""

from __future__ import annotations

from studio.models.families.unet import UNetFamily


class SD2(UNetFamily):
    name = "sd2"
    label = "SD 2.x"
    native_resolution = 768
    kohya_version = "sd_v2"
    cross_attention_dim = 1024
    priority = 20
    default_controlnets = {"mediapipe_face": "CrucibleAI/ControlNetMediaPipeFace"}  # its top level is SD 2.1's

    def matches_keys(self, keys: set[str]) -> bool:
        return any(k.startswith("cond_stage_model.model.") for k in keys)

    # No single_file_state: SD 2.x's original text encoder has a layer diffusers drops, so the studio's single file
    # could not be complete; its DreamBooth exports are diffusers folders.


FAMILY = SD2()
