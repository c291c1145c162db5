"""FLUX.1 (dev, schnell and their fine-tunes): a 12 B transformer trained by flow matching on 16-channel latents
packed 2x2 into tokens, conditioned on T5-XXL's states and CLIP-L's pooled vector, guided (dev) by a distilled
guidance value it takes as an input; schnell is distilled to a few steps and takes none.

Its single files (BFL's layout, Forge's and ComfyUI's sets) are read in flux1_files.py (BFL's key layout in
flux1_layout.py), its kohya LoRA keys in flux1_lora.py, its tiny and real-width builds in flux1_builds.py."""

from __future__ import annotations

import re
from pathlib import Path

from studio.models.families.base import Conditioning, TrainingTarget
from studio.models.families.flow import FlowFamily, FlowObjective
from studio.models.families.flux1_files import TRANSFORMER_PREFIX, refuse_scaled

# Forge's and diffusers' default distilled guidance for FLUX.1-dev.
DISTILLED_CFG = 3.5
# Keys only FLUX.1 checkpoints have: BFL's layout (Forge, ComfyUI; maybe under model.diffusion_model.) and diffusers'.
_KEYS = ("double_blocks.0.img_attn.norm.key_norm.scale", "transformer_blocks.0.attn.norm_added_k.weight")
# Key fragments only a FLUX.1 LoRA has: kohya's (Forge/ComfyUI) and diffusers' names for its transformer blocks.
_LORA = re.compile(r"(lora_unet_(double|single)_blocks_|transformer\.(single_)?transformer_blocks\.|"
                   r"diffusion_model\.(double|single)_blocks\.)")
# Key fragments of the families after FLUX.1 whose LoRAs share its diffusers names: FLUX.2's fused single-block
# projection, SwiGLU and shared modulations; Qwen-Image's per-block modulations and MLPs.
_NEWER = re.compile(r"(to_qkv_mlp_proj|\.linear_(in|out)\.|stream_modulation|(img|txt)_(mod|mlp)\.)")
# LoRA targets by regex (peft matches suffixes, and a bare "proj_out" would also take the final layer):
# attention: the joint attention's projections in double and single blocks; transformer/all: every linear layer
# of every block, the modulations too, as kohya's networks.lora_flux (and so Forge and ComfyUI) train.
_ATTENTION = (r".*transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|"
              r"to_add_out)")
_ALL = (r".*(transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|"
        r"to_add_out)|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2)|norm1\.linear|norm1_context\.linear)"
        r"|single_transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v)|proj_mlp|proj_out|norm\.linear))")


class Flux1(FlowFamily):
    name = "flux"
    label = "FLUX.1"
    text_encoder_names = ("text_encoder", "text_encoder_2")  # CLIP-L, T5-XXL
    tokenizer_names = ("tokenizer", "tokenizer_2")
    guidance = "distilled"
    default_cfg = 1.0  # real CFG off
    kohya_version = "flux1"
    kohya_keys = {"ss_network_module": "networks.lora_flux", "modelspec.architecture": "flux-1-dev/lora",
                  "ss_model_type": "flux"}
    prompt_length_option = True
    training_options = FlowFamily.training_options | {"flux_guidance", "max_sequence_length"}
    transformer_class = "FluxTransformer2DModel"
    block_lists = ("transformer_blocks", "single_transformer_blocks")
    file_keys = _KEYS
    classes = r"Flux(?!2)\w*"
    hub_names = r"flux(?![.\-_ ]?2)"
    ti_reason = "its T5 encoder has no CLIP token table to extend"
    frozen_text = "CLIP-L and T5-XXL stay frozen"
    priority = 40
    default_variant = "flux1-dev"
    gpu_presets = ("flux-8gb", "flux-12gb", "flux-16gb", "flux-24gb")

    def preview_latents(self, pipe, latents, size):
        """The pipeline's packed tokens (B, N, 64) of a `size` picture, unpacked (B, 16, h, w)."""
        return type(pipe)._unpack_latents(latents, size[1], size[0], pipe.vae_scale_factor)

    # ---- identify -----------------------------------------------------------------------------------------

    def file_variant(self, checkpoint) -> str:
        """dev (a guidance input) or schnell; the files diffusers cannot read, and FLUX.1's conditioned models, are
        refused by name."""
        from studio.models.files import has_guidance_keys

        name, keys = checkpoint.path.name, checkpoint.shapes
        if any("bitsandbytes__" in k or k.endswith(".quant_map") for k in keys):
            raise ValueError(f"{name} is a bitsandbytes NF4/FP4 file (Forge's flux1-dev-bnb-nf4), whose packed weights "
                             f"diffusers cannot read: use the bf16, fp8 or GGUF file of the same model (the studio "
                             f"quantizes for training itself: base_precision)")
        refuse_scaled(checkpoint)
        if any(k.startswith(("distilled_guidance_layer.", TRANSFORMER_PREFIX + "distilled_guidance_layer."))
               for k in keys):
            raise ValueError(f"{name} is a Chroma model (FLUX.1's blocks with its own guidance layer), which the "
                             f"studio does not load")
        width = next((s[1] for k, s in keys.items() if k.endswith("img_in.weight") and len(s) == 2), 64)
        if width != 64:
            kind = {384: "Fill (inpainting)", 128: "Depth or Canny"}.get(width, f"{width}-channel")
            raise ValueError(f"{name} is a FLUX.1 {kind} model (its input takes {width} channels, an image beside "
                             f"the latents), which the studio does not load: use FLUX.1 dev or schnell")
        return "flux1-dev" if has_guidance_keys(keys) else "flux1-schnell"

    def matches_lora(self, shapes: dict[str, list[int]]) -> bool:
        if not any(_LORA.search(k) for k in shapes) or any(_NEWER.search(k) for k in shapes):
            return False
        # kohya's BFL names are FLUX.2's too: FLUX.1's single blocks project to 7x their width, FLUX.2's to 9x.
        return not any(re.search(r"single_blocks_\d+_linear1\.lora_up\.weight$", k) and
                       shape[0] == 9 * shapes.get(k.replace("lora_up", "lora_down"), [0, 0])[1] for k, shape in
                       shapes.items())

    # ---- load ---------------------------------------------------------------------------------------------
    def load_single_file(self, store, ref, *, dtype, without=()):
        from studio.models.families.flux1_files import load_flux_file

        return load_flux_file(store, ref, dtype=dtype, without=without)

    def load_denoiser(self, store, ref, *, device: str, base_precision: str, dtype=None):
        """Only the transformer (FlowFamily's); a single file's read part by part in the dtype it is used in
        (flux1_files.load_transformer), nf4 quantized as it loads."""
        if ref.kind != "file" or base_precision != "nf4":
            return super().load_denoiser(store, ref, device=device, base_precision=base_precision, dtype=dtype)
        import torch

        from studio.models import hub
        from studio.models.families.flux1_files import load_transformer
        from studio.models.files import read_checkpoint
        from studio.models.loaders import nf4_config

        hub.quiet_loaders()
        try:
            model = load_transformer(read_checkpoint(ref.path), store.single_file_config(ref), dtype=torch.bfloat16,
                                     quantization=nf4_config(device))
        except (OSError, EnvironmentError) as e:
            raise store.load_error("transformer of", ref.id, e, local=True) from e
        store.require_weights(model, "its transformer", ref)
        store.store_frozen(model, base_precision, device)
        return model

    def file_transformer(self, store, ref, *, dtype):
        from studio.models.families.flux1_files import load_transformer
        from studio.models.files import read_checkpoint

        return load_transformer(read_checkpoint(ref.path), store.single_file_config(ref), dtype=dtype)

    def denoiser_config(self, store, ref) -> dict:
        if ref.kind != "file":
            return super().denoiser_config(store, ref)
        from studio.models.families.flux1_files import transformer_config
        from studio.models.files import checkpoint_keys

        return transformer_config(store.single_file_config(ref), checkpoint_keys(ref.path))

    def takes_distilled_guidance(self, store, ref) -> bool:
        """dev-like (a distilled-guidance input), told without loading weights: from a single file's key names, a
        folder's transformer config, or (a hub id not downloaded yet) its name."""
        from studio.models.files import checkpoint_keys, has_guidance_keys

        if ref.kind == "file":
            return has_guidance_keys(checkpoint_keys(ref.path))
        try:
            return bool(self.denoiser_config(store, ref).get("guidance_embeds"))
        except (OSError, ValueError):
            return "schnell" not in ref.id.lower()

    # ---- a loaded pipeline -------------------------------------------------------------------------------
    def native_size(self, pipe) -> int:
        return int(pipe.vae.config.sample_size)  # the transformer has none; FLUX.1's VAE says 1024

    def has_distilled_guidance(self, pipe) -> bool:
        return bool(getattr(pipe.transformer.config, "guidance_embeds", False))

    # ---- memory plan ----------------------------------------------------------------------------------------
    def planned_variant(self, repo_id: str) -> str:
        return "flux1-schnell" if "schnell" in repo_id.lower() else "flux1-dev"

    def text_tokens(self, config) -> int:
        return config.max_sequence_length or 512  # dev's (schnell reads 256: planned at dev's, a little above)

    # ---- training -----------------------------------------------------------------------------------------
    def sequence_length(self, distilled: bool, asked: int) -> int:
        """T5 tokens per caption: `asked`, else 512 for dev and 256 for schnell."""
        return asked or (512 if distilled else 256)

    def encode_prompts(self, pipe, captions, *, encoders=None, max_sequence_length=0, distilled=False):
        """T5's states (B, T, 4096) and CLIP-L's pooled output (B, 768), as FLUX's pipeline encodes them."""
        import torch

        with torch.no_grad():
            hidden, pooled, _ = pipe.encode_prompt(
                prompt=captions, prompt_2=None, device=self.text_encoders(pipe)[0].device,
                max_sequence_length=self.sequence_length(distilled, max_sequence_length))
        return Conditioning(hidden, pooled)

    def objective(self, parts, config):
        return Flux1Objective(self, parts, config)

    def lora_targets(self, layers: str) -> TrainingTarget:
        return TrainingTarget(_ATTENTION if layers == "attention" else _ALL, None)

    def sampling_kwargs(self, pipe, *, prompt, encoded, cfg, distilled, negative=None):
        kwargs = dict(guidance_scale=(cfg or DISTILLED_CFG) if distilled else 0.0)
        if encoded is not None:
            kwargs.update(prompt_embeds=encoded.hidden[None], pooled_prompt_embeds=encoded.pooled[None])
        else:
            kwargs.update(prompt=prompt)
        return kwargs

    # ---- exports ------------------------------------------------------------------------------------------
    def lora_to_kohya(self, state: dict, *, alpha: float, denoiser_config) -> dict:
        from studio.models.families.flux1_lora import flux_peft_to_kohya

        return flux_peft_to_kohya(state, alpha=alpha, transformer_config=denoiser_config)

    # ---- LoRAs on a loaded pipeline ---------------------------------------------------------------------
    def lora_weights(self, path: Path, pipe):
        """A kohya-layout FLUX LoRA as diffusers' layout at this transformer's widths (diffusers' own converter
        assumes FLUX.1's full size); other layouts as the file."""
        from safetensors.torch import load_file

        from studio.models.families.flux1_lora import flux_kohya_to_peft, is_flux_kohya
        from studio.models.files import safetensors_keys

        if path.suffix != ".safetensors" or not is_flux_kohya(safetensors_keys(path)):
            return str(path)
        return flux_kohya_to_peft(load_file(str(path)), transformer_config=pipe.transformer.config)

    # ---- generation ---------------------------------------------------------------------------------------
    def guidance_kwargs(self, pipe, *, cfg, negative_prompt, distilled_cfg, max_sequence_length):
        """dev: its distilled guidance (`distilled_cfg`, 3.5 by default) as an input, and real CFG only when `cfg`
        > 1 (then the negative prompt counts, at twice the time); schnell has no guidance input at all."""
        notes, dev = [], self.has_distilled_guidance(pipe)
        if dev:
            kwargs = dict(guidance_scale=DISTILLED_CFG if distilled_cfg is None else distilled_cfg)
        elif distilled_cfg is not None:
            raise ValueError(f"this FLUX.1 model is schnell-like: it has no guidance input, so `distilled_cfg` "
                             f"{distilled_cfg:g} would do nothing; leave it empty (schnell needs 1 to 4 steps)")
        else:
            kwargs = dict(guidance_scale=0.0)
        kwargs["max_sequence_length"] = self.sequence_length(dev, max_sequence_length or 0)
        if cfg > 1:
            kwargs.update(true_cfg_scale=cfg, negative_prompt=negative_prompt or "")
        elif negative_prompt:
            notes.append("the negative prompt was not used: FLUX.1 takes one only with a CFG scale above 1 (real "
                         "classifier-free guidance, which takes twice the time)")
        return kwargs, notes, kwargs["guidance_scale"] if dev else None

    def img2img_needs_size(self) -> bool:
        return True  # FLUX's img2img makes 1024 px unless told the size

    def tiny_builtins(self) -> dict:
        from studio.models.families.flux1_builds import build_tiny

        return {"tiny-flux": build_tiny, "tiny-flux-schnell": lambda out: build_tiny(out, guidance_embeds=False)}


class Flux1Objective(FlowObjective):
    """The transformer sees the noisy latents packed 2x2 into tokens (B, h/2 * w/2, 4C) with their position ids,
    T5's states, CLIP's pooled vector, the noise level and (dev) the distilled guidance it trains at."""

    def predict(self, denoiser, noisy, sigma, cond: Conditioning, autocast):
        import torch
        from diffusers import FluxPipeline

        b, c, h, w = noisy.shape
        device = noisy.device
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)  # (B, h/2 * w/2, 4C)
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, device, noisy.dtype)
        hidden = cond.hidden.to(device)
        txt_ids = torch.zeros(hidden.shape[1], 3, device=device, dtype=noisy.dtype)
        guidance = (torch.full((b,), self.config.flux_guidance, device=device)
                    if self.parts.distilled_guidance else None)
        with autocast():
            pred = denoiser(hidden_states=packed, timestep=sigma, guidance=guidance, encoder_hidden_states=hidden,
                            pooled_projections=cond.pooled.to(device), txt_ids=txt_ids, img_ids=img_ids).sample
        factor = self.parts.vae_factor
        return FluxPipeline._unpack_latents(pred, h * factor, w * factor, factor)  # (B, C, h, w)


FAMILY = Flux1()
