"""FLUX.2 [klein] (Black Forest Labs; 4 B and 9 B): a transformer of double and single blocks trained by flow
matching on a 32-channel VAE's latents, patched 2x2 into 128 channels and normalized by the VAE's BatchNorm
statistics, conditioned on three hidden layers (9, 18, 27) of Qwen3-4B / Qwen3-8B stacked, over the whole padded
prompt. The released klein models are step-distilled (4 steps, no CFG: model_index.json's `is_distilled`); the
klein *base* models take real CFG (`neg + g (pos - neg)`, A1111's scale) and are the ones to train.

FLUX.2 [dev] (32 B, with a 24 B Mistral text encoder) shares the transformer's layout; the studio tells it apart and
says it does not run it (no GPU it targets holds it).

Its single files (BFL's layout, as ComfyUI keeps them) and tiny builtin are in flux2_files.py, its kohya LoRA keys in
flux2_lora.py."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from studio.models.families.base import Conditioning, TrainingTarget
from studio.models.families.flow import FlowFamily, FlowObjective

TEXT_LAYERS = (9, 18, 27)  # Qwen3's hidden states klein reads (diffusers issue #13445: not the script's 10, 20, 30)
# Keys only FLUX.2 has: its modulations are shared by all blocks (BFL's `.lin`, diffusers' `.linear`).
_KEYS = ("double_stream_modulation_img.lin.weight", "double_stream_modulation_img.linear.weight")
# Key fragments only a FLUX.2 LoRA has: single blocks' fused projection and plain `to_out`, the SwiGLU's linear_in,
# the shared modulations.
_LORA = re.compile(r"(attn\.to_qkv_mlp_proj|single_transformer_blocks\.\d+\.attn\.to_out\.lora|ff(_context)?\.linear_"
                   r"(in|out)|stream_modulation)")
_DOUBLE_ATTN = r"transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0)"
_SINGLE = r"single_transformer_blocks\.\d+\.attn\.(to_qkv_mlp_proj|to_out)"
_CONTEXT = (r"transformer_blocks\.\d+\.(attn\.(add_q_proj|add_k_proj|add_v_proj|to_add_out)|"
            r"ff(_context)?\.linear_(in|out))")
# LoRA targets by `lora_layers`: attention is diffusers' training script's (the image stream's attention and the
# single blocks' fused projections); transformer and all add the text stream and the feed-forwards, every linear layer
# of every block. The modulations FLUX.2's blocks share stay out: diffusers' kohya converter drops them.
_TARGETS = {"attention": rf"(.*\.)?({_DOUBLE_ATTN}|{_SINGLE})",
            "transformer": rf"(.*\.)?({_DOUBLE_ATTN}|{_SINGLE}|{_CONTEXT})"}
_TARGETS["all"] = _TARGETS["transformer"]
DISTILLED = {"cfg": 1.0, "steps": 4}  # the klein cards: 4 steps, guidance off
BASE = {"cfg": 4.0, "steps": 50}  # the klein base cards: 50 steps, guidance 4


def refuse_dev() -> None:
    raise ValueError("this is FLUX.2 [dev] (a 32 B transformer with a 24 B Mistral text encoder, 112 GB in bf16): the "
                     "studio runs FLUX.2 [klein] 4B and 9B, which fit 8 to 24 GB GPUs; use "
                     "black-forest-labs/FLUX.2-klein-base-4B (to train) or FLUX.2-klein-4B (to generate)")


def _distilled_name(name: str) -> bool:
    """A klein model's name says base (FLUX.2-klein-base-4B, flux-2-klein-base-9b.safetensors) or not (distilled)."""
    return "base" not in Path(str(name)).name.lower()


class Flux2(FlowFamily):
    name = "flux2"
    label = "FLUX.2"
    text_encoder_names = ("text_encoder",)  # Qwen3 (klein); Mistral 3 (dev)
    tokenizer_names = ("tokenizer",)
    guidance = "cfg"
    default_cfg = BASE["cfg"]
    default_steps = BASE["steps"]
    kohya_version = "flux_2_klein"  # musubi-tuner's architecture name (flux_2_klein_4b / _9b)
    kohya_keys = {"ss_network_module": "networks.lora_flux_2", "ss_architecture": "flux_2_klein",
                  "modelspec.architecture": "flux-2-klein/lora"}
    transformer_class = "Flux2Transformer2DModel"
    block_lists = ("transformer_blocks", "single_transformer_blocks")
    file_keys = _KEYS
    classes = r"Flux2\w*"
    hub_names = r"flux[.\-_ ]?2"
    lora_width_key = r"(linear1|to_qkv_mlp_proj)\.(lora_A|lora_down)\.weight$"  # 3072 klein 4B, 4096 9B
    ti_reason = "its Qwen3 text encoder has no CLIP token table to extend"
    priority = 50  # before FLUX.1: BFL's FLUX.2 files have double_blocks too
    # Measured from the carried configs (studio/models/configs/flux2-klein-4b, -9b) on the meta device.
    parameter_counts = {"flux2-klein-4b": {"transformer": 3_875_544_576, "text_encoder": 4_022_468_096,
                                           "vae": 84_046_115},
                        "flux2-klein-9b": {"transformer": 9_078_581_248, "text_encoder": 8_190_735_360,
                                           "vae": 84_046_115}}
    variants = ("flux2-klein-4b", "flux2-klein-9b")
    default_variant = "flux2-klein-4b"
    gpu_presets = ("flux2-klein-10gb", "flux2-klein-16gb")  # klein 4B's; 9B's below

    def planned_variant(self, repo_id: str) -> str:
        return "flux2-klein-9b" if "9b" in repo_id.lower() else "flux2-klein-4b"

    def gpu_presets_for(self, denoiser_config: dict) -> tuple[str, ...]:
        """klein 4B's presets (3072 wide) or 9B's (4096)."""
        width = denoiser_config.get("num_attention_heads", 0) * denoiser_config.get("attention_head_dim", 0)
        return ("flux2-klein9b-16gb", "flux2-klein9b-24gb") if width >= 4096 else self.gpu_presets

    # ---- identify -----------------------------------------------------------------------------------------
    def matches_lora(self, shapes: dict[str, list[int]]) -> bool:
        if any(_LORA.search(k) for k in shapes):
            return True
        # kohya's BFL names are FLUX.1's too: FLUX.2's single blocks project to 9x their width (q, k, v and a
        # SwiGLU of 2 x 3), FLUX.1's to 7x.
        for key, shape in shapes.items():
            if re.search(r"single_blocks[._]\d+[._]linear1\.lora_(up|B)\.weight$", key):
                down = shapes.get(key.replace("lora_up", "lora_down").replace("lora_B", "lora_A"))
                if down is not None and shape[0] == 9 * down[1]:
                    return True
        return False

    # ---- load ---------------------------------------------------------------------------------------------
    def file_variant(self, checkpoint) -> str:
        from studio.models.families.flux2_files import file_variant

        return file_variant(checkpoint)

    def load_single_file(self, store, ref, *, dtype, without=()):
        from studio.models.families.flux2_files import load_flux2_file

        return load_flux2_file(store, ref, dtype=dtype, without=without)

    def file_transformer(self, store, ref, *, dtype):
        from studio.models.families.flux2_files import flux2_transformer

        return flux2_transformer(store, ref, dtype=dtype)

    def check_pipeline(self, pipe) -> None:
        """FLUX.2 dev is told apart (its Mistral text encoder and guidance input) and refused, saying why."""
        if type(pipe).__name__ == "Flux2Pipeline" or pipe.transformer is not None and getattr(
                pipe.transformer.config, "guidance_embeds", False):
            refuse_dev()

    # ---- a loaded pipeline -------------------------------------------------------------------------------
    def native_size(self, pipe) -> int:
        return int(pipe.vae.config.sample_size)  # 1024; the tiny builtin's 64

    def is_distilled(self, pipe) -> bool:
        return bool(getattr(pipe.config, "is_distilled", False))

    # ---- training -----------------------------------------------------------------------------------------
    def training_notes(self, parts, config) -> list[str]:
        self.check_pipeline(parts.pipe)
        if not self.is_distilled(parts.pipe):
            return []
        return ["this FLUX.2 klein is the step-distilled one (4 steps, no CFG: model_index.json's is_distilled): "
                "trained plainly, a LoRA undoes the distillation as it learns. musubi-tuner, SimpleTuner and "
                "ai-toolkit train on the klein base weights (FLUX.2-klein-base-4B / -9B) and apply the LoRA to the "
                "distilled model; do that for more than a short run"]

    def encode_prompts(self, pipe, captions, *, encoders=None, max_sequence_length=0, distilled=False):
        """Qwen3's hidden layers 9, 18 and 27 side by side (B, 512, 3 x width), over the whole padded prompt (klein
        attends to the padding too, as BFL trained it)."""
        import torch

        self.check_pipeline(pipe)
        with torch.no_grad():
            hidden, _ = pipe.encode_prompt(prompt=list(captions), device=self.text_encoders(pipe)[0].device,
                                           max_sequence_length=512, text_encoder_out_layers=TEXT_LAYERS)
        return Conditioning(hidden)

    def normalize_latents(self, vae, latents):
        """Patched 2x2 (32 -> 128 channels), normalized by the VAE's BatchNorm statistics, and unpatched again, so
        masks and losses keep the VAE's (B, 32, h, w) shape."""
        import torch
        from diffusers import Flux2KleinPipeline

        patched = Flux2KleinPipeline._patchify_latents(latents)
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(latents.device,
                                                                                            latents.dtype)
        return Flux2KleinPipeline._unpatchify_latents((patched - mean) / std)

    def objective(self, parts, config):
        return Flux2Objective(self, parts, config)

    def preview_latents(self, pipe, latents, size):
        """The pipeline's packed tokens (B, N, 128) of a `size` picture, unpacked and unpatched (B, 32, h, w)."""
        from diffusers import Flux2KleinPipeline as P

        rows, columns = size[1] // (2 * pipe.vae_scale_factor), size[0] // (2 * pipe.vae_scale_factor)  # tokens
        ids = P._prepare_latent_ids(latents.new_zeros(latents.shape[0], 1, rows, columns))
        return P._unpatchify_latents(P._unpack_latents_with_ids(latents, ids, rows, columns))

    def pipeline_latents(self, pipe, latents):
        """The pipeline's packed tokens (B, N, 128) of a square picture, unpacked and unpatched (B, 32, h, w)."""
        from diffusers import Flux2KleinPipeline as P

        side = int(math.isqrt(latents.shape[1]))
        ids = P._prepare_latent_ids(latents.new_zeros(latents.shape[0], 1, side, side))
        return P._unpatchify_latents(P._unpack_latents_with_ids(latents, ids, side, side))

    def lora_targets(self, layers: str) -> TrainingTarget:
        return TrainingTarget(_TARGETS[layers], None)

    def sampling_kwargs(self, pipe, *, prompt, encoded, cfg, distilled, negative=None):
        defaults = DISTILLED if self.is_distilled(pipe) else BASE
        scale = cfg or defaults["cfg"]
        kwargs = dict(guidance_scale=scale)
        if encoded is None:
            return dict(kwargs, prompt=prompt)
        kwargs["prompt_embeds"] = encoded.hidden[None]
        if scale > 1 and not self.is_distilled(pipe):
            kwargs["negative_prompt_embeds"] = negative.hidden[None]
        return kwargs

    # ---- exports ------------------------------------------------------------------------------------------
    def lora_to_kohya(self, state: dict, *, alpha: float, denoiser_config) -> dict:
        from studio.models.families.flux2_lora import flux2_peft_to_kohya

        return flux2_peft_to_kohya(state, alpha=alpha, transformer_config=denoiser_config)

    # ---- generation ---------------------------------------------------------------------------------------
    def generation_defaults(self, store, ref) -> dict:
        if ref.path is not None and (ref.path / "model_index.json").is_file():
            distilled = bool(json.loads((ref.path / "model_index.json").read_text()).get("is_distilled", False))
        else:
            distilled = _distilled_name(ref.path.name if ref.path is not None else ref.id)
        return dict(DISTILLED if distilled else BASE)

    def guidance_kwargs(self, pipe, *, cfg, negative_prompt, distilled_cfg, max_sequence_length):
        """A klein base model guides when `cfg` is above 1 (its negative prompt given as embeddings: the pipeline
        takes none itself); a distilled one takes no CFG, and says so."""
        self.check_pipeline(pipe)
        self.refuse_flux_fields(distilled_cfg, max_sequence_length)
        notes = []
        if self.is_distilled(pipe):
            if cfg > 1 or negative_prompt:
                notes.append("this FLUX.2 klein is step-distilled: it takes no CFG and no negative prompt (both "
                             "left out); its base model does")
            return dict(guidance_scale=1.0), notes, None
        if cfg <= 1:
            if negative_prompt:
                notes.append("the negative prompt was not used: FLUX.2 klein takes one only with a CFG scale above 1")
            return dict(guidance_scale=1.0), notes, None
        kwargs = dict(guidance_scale=cfg)
        if negative_prompt:
            kwargs["negative_prompt_embeds"] = self.encode_prompts(pipe, [negative_prompt]).hidden
        return kwargs, notes, None

    def task_pipeline(self, pipe, task: str, extra: dict):
        """img2img and inpainting both through klein's inpainting pipeline (its plain pipeline's `image` is a
        reference to edit from, not a picture to redraw at a strength); img2img masks the whole picture."""
        from diffusers import Flux2KleinInpaintPipeline

        if task == "txt2img":
            return super().task_pipeline(pipe, task, extra)
        return Flux2KleinInpaintPipeline(**{k: v for k, v in pipe.components.items()
                                            if k in ("scheduler", "vae", "text_encoder", "tokenizer",
                                                     "transformer")}, is_distilled=self.is_distilled(pipe))

    def img2img_kwargs(self, image, strength: float, size: tuple[int, int]) -> dict:
        from PIL import Image

        images = image if isinstance(image, list) else [image]
        masks = [Image.new("L", im.size, 255) for im in images]
        return dict(image=image, mask_image=masks if isinstance(image, list) else masks[0], strength=strength,
                    width=size[0], height=size[1])

    def tiny_builtins(self) -> dict:
        from studio.models.families.flux2_files import build_tiny

        return {"tiny-flux2": build_tiny}


class Flux2Objective(FlowObjective):
    """The transformer sees the normalized latents patched 2x2 and packed into tokens (B, h/2 * w/2, 4C) with 4-axis
    position ids (t, h, w, l), the stacked Qwen3 states with theirs, and sigma as its time; it predicts the velocity.
    With `timestep_sampling` shift and no `flow_shift`, the shift is the one inference uses at this size (BFL's
    empirical fit at 50 steps), as musubi-tuner's flux2_shift."""

    def shift_for(self, latents) -> float:
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

        if self.config.flow_shift:
            return self.config.flow_shift
        tokens = (latents.shape[-2] // 2) * (latents.shape[-1] // 2)
        return math.exp(compute_empirical_mu(tokens, 50))

    def predict(self, denoiser, noisy, sigma, cond: Conditioning, autocast):
        from diffusers import Flux2KleinPipeline as P

        patched = P._patchify_latents(noisy)  # (B, 4C, h/2, w/2)
        b, _, h, w = patched.shape
        img_ids = P._prepare_latent_ids(patched).to(noisy.device)
        hidden = cond.hidden.to(noisy.device)
        txt_ids = P._prepare_text_ids(hidden).to(noisy.device)
        with autocast():
            pred = denoiser(hidden_states=P._pack_latents(patched), encoder_hidden_states=hidden, timestep=sigma,
                            img_ids=img_ids, txt_ids=txt_ids, guidance=None, return_dict=False)[0]
        pred = P._unpack_latents_with_ids(pred.float(), img_ids, h, w)
        return P._unpatchify_latents(pred)  # (B, C, h, w)


FAMILY = Flux2()
