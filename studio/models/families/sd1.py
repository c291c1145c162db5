"""SD 1.x (1.4, 1.5 and their fine-tunes, the 9-channel inpainting checkpoints, builtin:tiny and builtin:pocket):
a UNet at 512 px conditioned on CLIP ViT-L/14's last hidden states (768 wide)."""

from __future__ import annotations

from pathlib import Path

from studio.models.families.unet import SD_VAE_RGB, UNetFamily


class SD1(UNetFamily):
    name = "sd1"
    label = "SD 1.x"
    latent_rgb_factors = SD_VAE_RGB
    native_resolution = 512
    kohya_version = "sd_v1"
    cross_attention_dim = 768
    takes_unknown_widths = True  # the tiny builtins and other toy widths are SD 1.x-shaped
    priority = 10
    # seed 003's ControlNets on the hub; CrucibleAI's repository keeps its SD 1.5 model in diffusion_sd15/
    default_controlnets = {
        "mediapipe_face": "CrucibleAI/ControlNetMediaPipeFace/diffusion_sd15",
        "openpose_face": "lllyasviel/control_v11p_sd15_openpose",
        "canny": "lllyasviel/control_v11p_sd15_canny",
    }

    file_variants = {"epsilon": "sd15", "v": "sd15-v", "inpainting": "sd15-inpainting"}
    default_variant = "sd15"
    gpu_presets = ("sd15-8gb", "sd15-12gb")
    # SD 1.5's UNet, float32, LoRA on its attention: a step at 256 px 0.53 GB (checkpointed 0.31), at 512 px 1.62 GB
    # (0.53); inference at 512 px 0.18 GB a picture (see UNetFamily.activations)
    activations = (296.3, 61.1, 33.6)
    activation_fixed = (45.2e6, 62.2e6)
    text_prefixes = ("cond_stage_model.transformer.",)

    def matches_keys(self, keys: set[str]) -> bool:
        return any(k.startswith("cond_stage_model.transformer.") for k in keys)

    def single_file_state(self, pipe) -> dict:
        from studio.models.families.sd_files import sd_single_file_state

        return sd_single_file_state(pipe.unet, pipe.vae, [pipe.text_encoder])

    def tiny_builtins(self) -> dict:
        return {"tiny": build_tiny}


def build_tiny(out: Path) -> None:
    """builtin:tiny: an SD 1.x pipeline at toy widths (UNet 32/64, CLIP 32 wide, a 2-level VAE)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    from studio.models.tiny_parts import (TINY_WORDS, clip_text_config, clip_tokenizer, sd_scheduler_config, tiny_unet,
                                          tiny_vae)
    from studio.models.tokenizer import write_clip_tokenizer

    vocab_size = write_clip_tokenizer(out / "tokenizer", TINY_WORDS)
    torch.manual_seed(0)
    unet = tiny_unet(cross_attention_dim=32)
    torch.manual_seed(0)
    vae = tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(clip_text_config(vocab_size))
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer(out / "tokenizer"),
        scheduler=EulerDiscreteScheduler(**sd_scheduler_config()),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)


FAMILY = SD1()
