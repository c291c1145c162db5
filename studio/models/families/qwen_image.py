"""Qwen-Image (Qwen, 20 B): an MMDiT of 60 double-stream blocks trained by flow matching on the Wan 2.1 VAE's
16-channel latents (a video VAE: pictures are one frame), normalized per channel and packed 2x2 into tokens,
conditioned on Qwen2.5-VL-7B's last hidden states over the prompt's own tokens after a fixed system prompt (its
first 34 tokens dropped). CFG is real (`true_cfg_scale`, A1111's scale) and runs only with a negative prompt; the
result is rescaled to the conditional prediction's norm.

Its single files (ComfyUI's: diffusers' module names, maybe under model.diffusion_model.) and tiny builtin are in
qwen_image_files.py; its kohya LoRA keys are diffusers' names with underscores (kohya_lora.underscored)."""

from __future__ import annotations

import re

from studio.models.families.base import Conditioning, TrainingTarget
from studio.models.families.flow import FlowFamily, FlowObjective, dynamic_shift

# Keys only a Qwen-Image transformer has: its text input's RMSNorm and per-block image modulation.
_KEYS = ("txt_norm.weight",)
_BLOCK_KEY = "transformer_blocks.0.img_mod.1.weight"
# Key fragments only a Qwen-Image LoRA has: per-block modulations and MLPs (diffusers', ComfyUI's, kohya's names).
_LORA = re.compile(r"transformer_blocks[._]\d+[._]((img|txt)_(mod|mlp))")
_BLOCKS = r"(.*\.)?transformer_blocks\.\d+\."
_ATTENTION = r"attn\.(to_q|to_k|to_v|to_out\.0)"
_CONTEXT = r"attn\.(add_q_proj|add_k_proj|add_v_proj|to_add_out)|(img|txt)_mlp\.net\.(0\.proj|2)"
# LoRA targets by `lora_layers`: diffusers' training script's four projections (240 layers), + the text stream and
# both MLPs (transformer), + the modulations (all).
_TARGETS = {"attention": _BLOCKS + f"({_ATTENTION})", "transformer": _BLOCKS + f"({_ATTENTION}|{_CONTEXT})",
            "all": _BLOCKS + rf"({_ATTENTION}|{_CONTEXT}|(img|txt)_mod\.1)"}
DEFAULTS = {"cfg": 4.0, "steps": 50}  # the model card's: true_cfg_scale 4, 50 steps


class QwenImage(FlowFamily):
    name = "qwenimage"
    label = "Qwen-Image"
    native_resolution = 1024  # the training side (a multiple of 64); Generate draws its card's 1328 (native_size)
    text_encoder_names = ("text_encoder",)  # Qwen2.5-VL-7B (its language model reads the prompt)
    tokenizer_names = ("tokenizer",)
    guidance = "cfg"
    default_cfg = DEFAULTS["cfg"]
    default_steps = DEFAULTS["steps"]
    kohya_version = "qwen_image"  # musubi-tuner's architecture name
    kohya_keys = {"ss_network_module": "networks.lora_qwen_image", "ss_architecture": "qwen_image",
                  "modelspec.architecture": "qwen-image/lora"}
    transformer_class = "QwenImageTransformer2DModel"
    block_lists = ("transformer_blocks",)
    file_keys = _KEYS
    classes = r"QwenImage(?!21)\w*"  # Qwen-Image 2.1 is another architecture
    hub_names = r"qwen[-_ ]?image"
    lora_width_key = r"attn[._]to_q\.(lora_A|lora_down)\.weight$"  # 3072
    ti_reason = "its Qwen2.5-VL text encoder has no CLIP token table to extend"
    priority = 55  # before FLUX.1: diffusers-layout Qwen-Image files have its norm_added_k too
    parameter_counts = {"qwen-image": {"transformer": 20_430_401_088, "text_encoder": 8_292_166_656,
                                       "vae": 126_892_531}}
    variants = ("qwen-image",)
    default_variant = "qwen-image"
    gpu_presets = ("qwenimage-24gb", "qwenimage-48gb")

    def block_layout(self, config: dict) -> tuple[int, int, int]:
        """60 double-stream blocks (text and picture each with their own weights, attending together)."""
        return config["num_attention_heads"] * config["attention_head_dim"], config["num_layers"], 0

    # ---- identify -----------------------------------------------------------------------------------------
    def matches_keys(self, keys: set[str]) -> bool:
        return super().matches_keys(keys) and any(k.endswith(_BLOCK_KEY) for k in keys)

    def matches_lora(self, shapes: dict[str, list[int]]) -> bool:
        if any(_LORA.search(k) for k in shapes):
            return True
        # An attention-only LoRA has FLUX.1's diffusers names; Qwen-Image's 60 blocks go past FLUX.1's 19.
        return any(int(m.group(1)) >= 19 for k in shapes if (m := re.search(r"(?<!single_)transformer_blocks[._](\d+)",
                                                                            k)))

    # ---- load ---------------------------------------------------------------------------------------------
    def file_variant(self, checkpoint) -> str:
        return "qwen-image"

    def load_single_file(self, store, ref, *, dtype, without=()):
        from studio.models.families.qwen_image_files import load_qwen_image_file

        return load_qwen_image_file(store, ref, dtype=dtype, without=without)

    def file_transformer(self, store, ref, *, dtype):
        from studio.models.families.qwen_image_files import qwen_image_transformer

        return qwen_image_transformer(store, ref, dtype=dtype)

    # ---- a loaded pipeline -------------------------------------------------------------------------------
    def native_size(self, pipe) -> int:
        # Neither its VAE nor its transformer records a size; a VAE narrower than Wan's (base width 96) is the tiny
        # builtin's, drawn at 64 px.
        return 1328 if pipe.vae.config.base_dim >= 96 else 64  # its card's square size

    def img2img_needs_size(self) -> bool:
        return True

    # ---- training -----------------------------------------------------------------------------------------
    def encode_latents(self, vae, pixels):
        """The VAE is a video VAE: a picture is a clip of one frame, (B, 3, 1, H, W) -> (B, 16, 1, h, w)."""
        dist = vae.encode(pixels[:, :, None]).latent_dist
        return dist.mean[:, :, 0], dist.std[:, :, 0]

    def normalize_latents(self, vae, latents):
        """Per channel, by the VAE's latents_mean and latents_std."""
        import torch

        mean = torch.tensor(vae.config.latents_mean, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        std = torch.tensor(vae.config.latents_std, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        return (latents - mean) / std

    def encode_prompts(self, pipe, captions, *, encoders=None, max_sequence_length=0, distilled=False):
        """Qwen2.5-VL's last hidden states over each prompt's own tokens after the system prompt, padded to the
        batch's longest and masked."""
        import torch

        with torch.no_grad():
            hidden, mask = pipe.encode_prompt(prompt=list(captions), device=self.text_encoders(pipe)[0].device,
                                              max_sequence_length=512)
        return Conditioning(hidden, mask=None if mask is None else mask.bool())

    def objective(self, parts, config):
        return QwenImageObjective(self, parts, config)

    def preview_latents(self, pipe, latents, size):
        """The pipeline's packed tokens (B, N, 64) of a `size` picture, unpacked (B, 16, h, w)."""
        factor = 2 * pipe.vae_scale_factor  # pixels per token side
        return _unpack(latents, 2 * (size[1] // factor), 2 * (size[0] // factor))

    def pipeline_latents(self, pipe, latents):
        """The pipeline's packed tokens (B, N, 64) of a square picture, unpacked (B, 16, h, w)."""
        side = int(round(latents.shape[1] ** 0.5))
        return _unpack(latents, 2 * side, 2 * side)

    def lora_targets(self, layers: str) -> TrainingTarget:
        return TrainingTarget(_TARGETS[layers], None)

    def sampling_kwargs(self, pipe, *, prompt, encoded, cfg, distilled, negative=None):
        scale = cfg or DEFAULTS["cfg"]
        kwargs = dict(true_cfg_scale=scale)
        if encoded is None:
            return dict(kwargs, prompt=prompt, negative_prompt="" if scale > 1 else None)
        kwargs["prompt_embeds"] = encoded.hidden[None]
        if scale > 1:
            kwargs["negative_prompt_embeds"] = negative.hidden[None]
        return kwargs

    # ---- exports ------------------------------------------------------------------------------------------
    def lora_to_kohya(self, state: dict, *, alpha: float, denoiser_config) -> dict:
        from studio.models.families.kohya_lora import peft_to_kohya, underscored

        return peft_to_kohya(state, alpha=alpha, kohya_name=underscored, widths=lambda name: [], family=self.label)

    # ---- generation ---------------------------------------------------------------------------------------
    def guidance_kwargs(self, pipe, *, cfg, negative_prompt, distilled_cfg, max_sequence_length):
        """CFG above 1 guides with the negative prompt (empty when none is given: Qwen-Image guides only with one),
        at twice the time."""
        self.refuse_flux_fields(distilled_cfg, max_sequence_length)
        if cfg > 1:
            return dict(true_cfg_scale=cfg, negative_prompt=negative_prompt or ""), [], None
        notes = ["the negative prompt was not used: Qwen-Image takes one only with a CFG scale above 1"] \
            if negative_prompt else []
        return dict(true_cfg_scale=1.0), notes, None

    def tiny_builtins(self) -> dict:
        from studio.models.families.qwen_image_files import build_tiny

        return {"tiny-qwenimage": build_tiny}


def _unpack(packed, h: int, w: int):
    """(B, h/2 * w/2, 4C) tokens back to latents (B, C, h, w): the inverse of QwenImagePipeline._pack_latents."""
    b, _, channels = packed.shape
    out = packed.view(b, h // 2, w // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(b, channels // 4, h, w)


class QwenImageObjective(FlowObjective):
    """The transformer sees the latents packed 2x2 into tokens (B, h/2 * w/2, 4C) with their frame's shape, the
    prompt's states and mask, and sigma as its time; it predicts the velocity. With `timestep_sampling` shift and
    no `flow_shift`, the shift is the one inference uses at this size, as musubi-tuner's qwen_shift."""

    def shift_for(self, latents) -> float:
        if self.config.flow_shift:
            return self.config.flow_shift
        tokens = (latents.shape[-2] // 2) * (latents.shape[-1] // 2)
        return dynamic_shift(self.parts.pipe.scheduler.config, tokens)

    def predict(self, denoiser, noisy, sigma, cond: Conditioning, autocast):
        from diffusers import QwenImagePipeline

        b, c, h, w = noisy.shape
        packed = QwenImagePipeline._pack_latents(noisy, b, c, h, w)
        mask = None if cond.mask is None else cond.mask.to(noisy.device)
        with autocast():
            pred = denoiser(hidden_states=packed, encoder_hidden_states=cond.hidden.to(noisy.device),
                            encoder_hidden_states_mask=mask, timestep=sigma,
                            img_shapes=[[(1, h // 2, w // 2)]] * b, return_dict=False)[0]
        return _unpack(pred.float(), h, w)


FAMILY = QwenImage()
