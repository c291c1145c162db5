"""SDXL (base 1.0 and its fine-tunes): a UNet at 1024 px conditioned on two CLIPs side by side (CLIP-L's and
OpenCLIP bigG's penultimate states, 2048 wide), bigG's pooled projection and the picture's size and crop."""

from __future__ import annotations

from pathlib import Path

from studio.models.families.base import Conditioning
from studio.models.families.unet import UNetFamily, _token_ids


class SDXL(UNetFamily):
    name = "sdxl"
    label = "SDXL"
    # The SDXL VAE's latents' approximate colours (the factors A1111's and ComfyUI's cheap previews use)
    latent_rgb_factors = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
                          (-0.3165, -0.2492, -0.2188))
    latent_rgb_bias = (0.1084, -0.0175, -0.0011)
    native_resolution = 1024
    kohya_version = "sdxl_base_v1-0"
    cross_attention_dim = 2048
    text_encoder_names = ("text_encoder", "text_encoder_2")
    tokenizer_names = ("tokenizer", "tokenizer_2")
    pipeline_class = "StableDiffusionXLPipeline"
    index_classes = r"StableDiffusionXL\w*Pipeline"
    kohya_original_names = True
    takes_unknown_widths = True  # its pipeline class alone tells (the tiny builtin is 64 wide)
    priority = 30
    default_controlnets = {  # no MediaPipe-face ControlNet is published for SDXL
        "openpose_face": "thibaud/controlnet-openpose-sdxl-1.0",
        "canny": "diffusers/controlnet-canny-sdxl-1.0",
    }

    file_variants = {"epsilon": "sdxl-base", "v": "sdxl-v", "v-zsnr": "sdxl-v-zsnr", "inpainting": "sdxl-inpainting"}
    default_variant = "sdxl-base"
    gpu_presets = ("sdxl-12gb", "sdxl-16gb", "sdxl-24gb")
    # SDXL's UNet, float32, LoRA on its attention: a step at 256 px 1.30 GB (checkpointed 0.62), at 512 px 2.97 GB
    # (0.99); inference at 512 px 0.31 GB a picture (see UNetFamily.activations)
    activations = (455.1, 101.9, 64.0)
    activation_fixed = (200.2e6, 131.8e6)
    text_prefixes = ("conditioner.embedders.1.",)

    def matches_keys(self, keys: set[str]) -> bool:
        """A base (two text encoders), or a refiner (OpenCLIP bigG alone, and the size conditioning), which
        file_variant refuses by name."""
        return any(k.startswith("conditioner.embedders.1.") for k in keys) or _is_refiner(keys)

    def file_variant(self, checkpoint) -> str:
        if _is_refiner(checkpoint.shapes):
            raise ValueError(f"{checkpoint.path.name} is an SDXL refiner, which only finishes an SDXL base's "
                             f"pictures (the studio does not run a refiner pass): use an SDXL base checkpoint")
        return super().file_variant(checkpoint)

    def vae_in_half(self) -> bool:
        return False  # SDXL's VAE overflows in fp16

    def encode_prompts(self, pipe, captions, *, encoders=None, max_sequence_length=0, distilled=False):
        """Both encoders' penultimate states side by side (B, 77, 768 + 1280), and the second's projected pooled
        output (B, 1280)."""
        import torch

        hidden, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers(pipe), encoders or self.text_encoders(pipe)):
            out = encoder(_token_ids(tokenizer, captions, encoder), output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]
        return Conditioning(torch.cat(hidden, dim=-1), pooled)

    def added_conditioning(self, cond: Conditioning, sizes, target_size, device) -> dict:
        """The pooled text and the size conditioning per sample: (original h, w, crop top, left, target h, w)."""
        import torch

        width, height = target_size
        rows = [[oh, ow, top, left, height, width] for oh, ow, top, left in sizes]
        return {"text_embeds": cond.pooled.to(device), "time_ids": torch.tensor(rows, dtype=torch.float32,
                                                                                device=device)}

    def check_embedding(self, shapes, pipe, *, embedding, model_id) -> None:
        if not {"clip_l", "clip_g"} <= set(shapes):
            raise ValueError(f"embedding {embedding} is not an SDXL embedding (needs clip_l and clip_g vectors); "
                             f"base {model_id!r} is SDXL")
        super().check_embedding(shapes, pipe, embedding=embedding, model_id=model_id)

    def load_embedding(self, pipe, path: Path, tokens: str) -> None:
        from safetensors.torch import load_file

        state = load_file(str(path))  # SDXL embeddings hold one vector set per text encoder
        pipe.load_textual_inversion(state["clip_l"], token=tokens, text_encoder=pipe.text_encoder,
                                    tokenizer=pipe.tokenizer)
        pipe.load_textual_inversion(state["clip_g"], token=tokens, text_encoder=pipe.text_encoder_2,
                                    tokenizer=pipe.tokenizer_2)

    def embedding_layout(self, vectors: list) -> dict:
        return {"clip_l": vectors[0], "clip_g": vectors[1]}

    def single_file_state(self, pipe) -> dict:
        from studio.models.families.sd_files import sd_single_file_state

        return sd_single_file_state(pipe.unet, pipe.vae, [pipe.text_encoder, pipe.text_encoder_2])

    def tiny_builtins(self) -> dict:
        return {"tiny-xl": build_tiny}


def build_tiny(out: Path) -> None:
    """builtin:tiny-xl: an SDXL pipeline at toy widths (two 32-wide CLIPs, size conditioning)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from studio.models.tiny_parts import (TINY_WORDS, clip_text_config, clip_tokenizer, sd_scheduler_config, tiny_unet,
                                          tiny_vae)
    from studio.models.tokenizer import write_clip_tokenizer

    vocab_size = write_clip_tokenizer(out / "tokenizer", TINY_WORDS)
    write_clip_tokenizer(out / "tokenizer_2", TINY_WORDS)
    torch.manual_seed(0)
    unet = tiny_unet(
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + 32 pooled text
        cross_attention_dim=64,  # the two text encoders' hidden states side by side
    )
    torch.manual_seed(0)
    vae = tiny_vae()
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(clip_text_config(vocab_size))
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(clip_text_config(vocab_size, projection_dim=32))
    pipe = StableDiffusionXLPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(out / "tokenizer"),
        tokenizer_2=clip_tokenizer(out / "tokenizer_2"),
        scheduler=EulerDiscreteScheduler(**sd_scheduler_config()),
    )
    pipe.save_pretrained(out, safe_serialization=True)


def _is_refiner(keys) -> bool:
    return (not any(k.startswith("conditioner.embedders.1.") for k in keys)
            and "model.diffusion_model.label_emb.0.0.weight" in keys
            and any(k.startswith("conditioner.embedders.0.model.") for k in keys))


FAMILY = SDXL()
