"""SD 2.x (2.0, 2.1, 512 and 768 px, epsilon or v prediction): a UNet conditioned on OpenCLIP ViT-H/14 (1024 wide)."""

from __future__ import annotations

from studio.models.families.sd1 import SD1
from studio.models.families.unet import SD_VAE_RGB, UNetFamily


class SD2(UNetFamily):
    name = "sd2"
    label = "SD 2.x"
    latent_rgb_factors = SD_VAE_RGB
    native_resolution = 768
    kohya_version = "sd_v2"
    cross_attention_dim = 1024
    priority = 20
    default_controlnets = {"mediapipe_face": "CrucibleAI/ControlNetMediaPipeFace"}  # its top level is SD 2.1's

    # The 512 px base predicts noise, the 768 px models (2.0-v, 2.1) predict v; the inpainting model is 512, noise.
    file_variants = {"epsilon": "sd2-512", "v": "sd2-768-v", "inpainting": "sd2-inpainting"}
    default_variant = "sd2-768-v"
    activations, activation_fixed = SD1.activations, SD1.activation_fixed  # SD 1.x's levels and widths
    text_prefixes = ("cond_stage_model.model.",)

    def matches_keys(self, keys: set[str]) -> bool:
        return any(k.startswith("cond_stage_model.model.") for k in keys)

    def guess_prediction(self, checkpoint) -> str:
        """SD 2.x files rarely say: v-prediction models' last attention block has layer-norm biases spread wider
        (standard deviation above 0.09) than the 512 px noise-prediction base's, as ComfyUI tells them apart."""
        import torch

        key = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
        if key not in checkpoint.shapes:
            raise ValueError(f"{checkpoint.path.name}: an SD 2.x file whose prediction type nothing tells (no {key}, "
                             f"no v_pred key): put {checkpoint.path.with_suffix('.yaml').name} beside it with "
                             f"model.params.parameterization \"v\" (768 px models) or \"eps\" (512 px base), as A1111")
        bias = checkpoint.tensor(key)
        return "v" if torch.std(bias.float(), unbiased=False) > 0.09 else "epsilon"

    # No single_file_state: SD 2.x's original text encoder has a layer diffusers drops, so the studio's single file
    # could not be complete; its DreamBooth exports are diffusers folders.


FAMILY = SD2()
