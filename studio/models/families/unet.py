"""What the Stable Diffusion UNet families (SD 1.x, SD 2.x, SDXL) share: DDPM noise (or v) prediction on uniform
timesteps with min-SNR weighting, CLIP text encoders read at 77 tokens, classifier-free guidance, A1111's samplers,
LoRA targets named by diffusers' UNet modules, kohya's `lora_unet_`/`lora_te_` keys, A1111 single files.

sd1.py, sd2.py and sdxl.py say what differs between them (widths, encoders, SDXL's size conditioning).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from studio.models.families.base import Conditioning, ModelFamily, TrainingTarget
from studio.models.families.draws import BatchDraws, noise_like
from studio.models.families.samplers import DDPM_SAMPLERS

# LoRA targets by `lora_layers`, as (UNet modules, text encoder modules):
# - attention: the attention projections, as diffusers' training examples;
# - transformer: every linear (and 1x1 conv) layer of the transformer blocks and text MLPs, as kohya's default LoRA;
# - all: also the ResNet blocks and resamplers with their 3x3 convs, as kohya's LoCon (conv_dim). Convs draw shapes
#   and textures that attention alone only rearranges, so a concept the base has never drawn needs them.
_ATTENTION = (["to_q", "to_k", "to_v", "to_out.0"], ["q_proj", "k_proj", "v_proj", "out_proj"])
_TRANSFORMER = (_ATTENTION[0] + ["proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"], _ATTENTION[1] + ["fc1", "fc2"])
_RESNET = ["conv1", "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv", "upsamplers.0.conv"]
_LORA_TARGETS = {"attention": _ATTENTION, "transformer": _TRANSFORMER, "all": (_TRANSFORMER[0] + _RESNET, _TRANSFORMER[1])}

# The cross-attention's key projection of a LoRA (any layout): its input width is the base's text width.
_CROSS_ATTN_K_DOWN = re.compile(r"attn2[._]to_k.*(lora_A|lora_down|lora\.down)")
# What a UNet LoRA has and a transformer family's has not.
_UNET_LORA = re.compile(r"(lora_unet_(down|up|mid|input|output|middle)_|unet\.|(down|up|mid)_blocks[._]|"
                        r"(input|output|middle)_blocks?[._]|lora_te\d?_)")
# Kohya's text-encoder prefixes by pipeline attribute (SDXL's first encoder is lora_te1).
_TEXT_PREFIX = {"text_encoder": "lora_te", "text_encoder_2": "lora_te2"}


# The SD VAE's latents' approximate colours, one (R, G, B) row per channel (SD 1.x and 2.x share the VAE; the
# factors A1111's and ComfyUI's cheap previews use)
SD_VAE_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
              (-0.2120, -0.2616, -0.7177))


class UNetFamily(ModelFamily):
    denoiser_name = "unet"
    guidance = "cfg"
    default_cfg = 7.0
    controlnet = True
    textual_inversion = True
    channels_last = True
    training_options = frozenset({"min_snr_gamma"})  # min-SNR weighs DDPM noise levels
    samplers = DDPM_SAMPLERS
    default_sampler = "Euler a"
    animal_sampler = "DPM++ 2S a"  # seed 003's
    cross_attention_dim = 768  # the UNet's text width: how LoRAs, ControlNets and folders are matched to a family
    pipeline_class = "StableDiffusionPipeline"
    kohya_original_names = False  # kohya writes SDXL's UNet keys by the original (SGM) module names

    # ---- identify -----------------------------------------------------------------------------------------
    def matches_index(self, index: dict, folder: Path | None) -> bool:
        if not re.fullmatch(self.index_classes, index.get("_class_name", "")):
            return False
        width = _unet_width(folder)
        return width == self.cross_attention_dim or self.takes_unknown_widths

    index_classes = r"StableDiffusion(?!XL|3)\w*Pipeline"  # model_index.json's _class_name (SD 3 is no UNet family)
    takes_unknown_widths = False  # SD 1.x takes SD pipelines whose UNet width is unknown or no family's (tiny builtins)

    def matches_component(self, config: dict) -> bool:
        return config.get("cross_attention_dim") == self.cross_attention_dim

    def matches_lora(self, shapes: dict[str, list[int]]) -> bool:
        if not any(_UNET_LORA.search(k) for k in shapes):
            return False
        width = lora_text_width(shapes)
        return width is None or width == self.cross_attention_dim or width not in _KNOWN_WIDTHS

    # ---- load ---------------------------------------------------------------------------------------------
    # The carried variants (studio/models/configs/) by what a file is: "epsilon" / "v" prediction (maybe with zero
    # terminal SNR, "v-zsnr") on 4 input channels, or a 9-channel inpainting model.
    file_variants: dict = {}
    text_prefixes: tuple[str, ...] = ()  # where a full checkpoint keeps its text encoder(s)

    def file_variant(self, checkpoint) -> str:
        from studio.models.families.sd_files import prediction_type

        name = checkpoint.path.name
        conv_in = checkpoint.shapes.get("model.diffusion_model.input_blocks.0.0.weight")
        if conv_in is None or len(conv_in) != 4:
            raise ValueError(f"{name} has {self.label} text-encoder keys but no UNet (model.diffusion_model."
                             f"input_blocks.0.0.weight): not a checkpoint the studio can load as a base")
        channels = conv_in[1]
        if channels == 9:
            return self.file_variants["inpainting"]
        if channels != 4:
            raise ValueError(f"{name} is an {self.label} model with {channels} input channels (InstructPix2Pix, depth "
                             f"or another conditioned model), which the studio does not load")
        kind = prediction_type(checkpoint) or self.guess_prediction(checkpoint)
        if kind not in self.file_variants:
            raise ValueError(f"{name} is an {self.label} {kind} model, which the studio carries no configs for")
        return self.file_variants[kind]

    def guess_prediction(self, checkpoint) -> str:
        """The prediction type of a file whose keys and yaml do not say (the family's usual one)."""
        return "epsilon"

    def load_single_file(self, store, ref, *, dtype, without=()):
        """An A1111 checkpoint read once, in the UNet's dtype and the text encoders' (the higher of the two: those
        of the other are converted on the CPU before anything reaches a GPU); a VAE wanted in another dtype (SDXL's
        float32 beside a half-precision UNet) is read alone, from its own tensors, in that dtype."""
        import diffusers

        from studio.models.configs import load_tokenizers
        from studio.models.families.base import part_dtype
        from studio.models.files import checkpoint_keys, read_tensors

        keys = checkpoint_keys(ref.path)
        for what, prefixes in (("VAE", ("first_stage_model.",)), ("text encoder", self.text_prefixes)):
            if not any(k.startswith(prefixes) for k in keys):
                raise ValueError(f"{ref.path.name} holds no {what} ({prefixes[0]}...): the studio loads {self.label} "
                                 f"checkpoints whole, as A1111 saves them (UNet, VAE and text encoders)")
        folder = store.single_file_config(ref)
        extra = dict(safety_checker=None, requires_safety_checker=False) if self.pipeline_class == \
            "StableDiffusionPipeline" else {}
        wanted = {name: part_dtype(dtype, name) for name in (self.denoiser_name, *self.text_encoder_names, "vae")}
        read_in = max([wanted[n] for n in wanted if n != "vae" and n not in without] or [wanted["vae"]],
                      key=lambda d: d.itemsize)
        parts = {name: None for name in without}
        if "vae" not in without and wanted["vae"] != read_in and ref.path.suffix == ".safetensors":
            parts["vae"] = diffusers.AutoencoderKL.from_single_file(
                read_tensors(ref.path, "first_stage_model.", wanted["vae"]), config=str(folder), subfolder="vae",
                local_files_only=True, dtype=wanted["vae"])
        pipe = getattr(diffusers, self.pipeline_class).from_single_file(
            str(ref.path), config=str(folder), local_files_only=True, dtype=read_in, **extra,
            **load_tokenizers(folder), **parts)
        for name, want in wanted.items():
            module = getattr(pipe, name, None)
            if module is not None and module.dtype != want:
                module.to(want)  # on the CPU, as read
        return pipe

    def denoiser_config(self, store, ref) -> dict:
        from diffusers import UNet2DConditionModel

        if ref.kind == "file":
            return dict(UNet2DConditionModel.load_config(str(store.single_file_config(ref)), subfolder="unet"))
        source = str(ref.path) if ref.path is not None else ref.id
        return dict(UNet2DConditionModel.load_config(source, subfolder="unet",
                                                     local_files_only=not store.settings.allow_downloads))

    # ---- a loaded pipeline -------------------------------------------------------------------------------
    def native_size(self, pipe) -> int:
        return pipe.unet.config.sample_size * pipe.vae_scale_factor

    def is_inpainting(self, pipe) -> bool:
        # The mask and the masked picture's latents beside the noisy latents: 4 + 1 + 4 = 9 input channels.
        return pipe.unet.config.in_channels == 9

    def controlnet_fits(self, pipe, controlnet) -> str | None:
        """None when `controlnet` fits this pipeline's UNet, else why not."""
        ours, theirs = pipe.unet.config.cross_attention_dim, controlnet.config.cross_attention_dim
        if ours != theirs:
            return f"its cross-attention width is {theirs}, the base's is {ours} (made for another family)"
        return None

    # ---- training -----------------------------------------------------------------------------------------
    def check_training(self, config) -> None:
        if config.base_precision in ("fp8", "int8", "nf4"):
            raise ValueError(f"`base_precision` {config.base_precision!r} is for FLUX.1's transformer and the other "
                             f"large transformer families; an {self.label} base trains in auto or bf16")
        if config.blocks_to_swap:
            raise ValueError(f"`blocks_to_swap` moves a flow transformer's blocks (FLUX.1, Z-Image, FLUX.2, "
                             f"Qwen-Image) in and out; an {self.label} UNet trains on the GPU whole: set it to 0")

    def encode_prompts(self, pipe, captions, *, encoders=None, max_sequence_length=0, distilled=False):
        """CLIP's last hidden states at 77 tokens (B, 77, D); SDXL overrides for its two encoders."""
        hidden = []
        for tokenizer, encoder in zip(self.tokenizers(pipe), encoders or self.text_encoders(pipe)):
            ids = _token_ids(tokenizer, captions, encoder)
            hidden.append(encoder(ids)[0])  # (B, 77, D)
        import torch

        return Conditioning(torch.cat(hidden, dim=-1), None)

    def added_conditioning(self, cond: Conditioning, sizes, target_size, device) -> dict | None:
        """Extra inputs the UNet takes beside the text states (SDXL's pooled text and size conditioning)."""
        return None

    def objective(self, parts, config):
        return NoiseObjective(self, parts, config)

    def lora_targets(self, layers: str) -> TrainingTarget:
        unet, text = _LORA_TARGETS[layers]
        return TrainingTarget(unet, text)

    def sampling_kwargs(self, pipe, *, prompt, encoded, cfg, distilled, negative=None):
        return dict(prompt=prompt, guidance_scale=cfg or self.default_cfg)

    # ---- memory plan ----------------------------------------------------------------------------------------
    # A training step's activations at its peak and the inference working set, in float32 elements per latent pixel
    # ((side / 8)^2) per channel of the UNet's first level (block_out_channels[0]): (without gradient checkpointing,
    # with it, inference), and what a training step adds whatever the size (without, with checkpointing), in
    # elements: the line through two sizes measured on the real UNet (bench/realsize_calibrate.py, docs/memory.md).
    activations: tuple[float, float, float] = (0.0, 0.0, 0.0)
    activation_fixed: tuple[float, float] = (0.0, 0.0)

    def activation_elements(self, denoiser_config, *, side, text_tokens, checkpointing) -> float:
        full, checkpointed, _ = self.activations
        return ((checkpointed if checkpointing else full) * self._pixel_channels(denoiser_config, side)
                + self.activation_fixed[1 if checkpointing else 0])

    def inference_elements(self, denoiser_config, *, side, text_tokens) -> float:
        return self.activations[2] * self._pixel_channels(denoiser_config, side)

    @staticmethod
    def _pixel_channels(denoiser_config: dict, side: int) -> float:
        return denoiser_config["block_out_channels"][0] * (side / 8) ** 2

    # ---- exports ------------------------------------------------------------------------------------------
    def lora_to_kohya(self, state: dict, *, alpha: float, denoiser_config) -> dict:
        """SD 1.x keys use the diffusers module names (kohya trains SD 1.x on a diffusers-style UNet); SDXL keys use
        the original SGM names (`input_blocks_4_1_...`), as kohya's SDXL scripts write them."""
        import torch

        from studio.models.families.sd_files import unet_name_to_original

        first_te = "lora_te1" if len(self.text_encoder_names) > 1 else "lora_te"
        out = {}
        for key, tensor in state.items():
            prefix, rest = key.split(".", 1)
            module, kind = rest.rsplit(".lora_", 1)  # "down_blocks...to_q", "A.weight"
            if prefix == "unet":
                name = (unet_name_to_original(module + ".weight", denoiser_config)[:-len(".weight")]
                        if self.kohya_original_names else module)
                kohya = "lora_unet_" + name.replace(".", "_")
            elif prefix in _TEXT_PREFIX:
                head = first_te if prefix == "text_encoder" else _TEXT_PREFIX[prefix]
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

    def kohya_header(self, *, rank, alpha, lora_layers) -> dict[str, str]:
        meta = super().kohya_header(rank=rank, alpha=alpha, lora_layers=lora_layers)
        if lora_layers == "all":  # kohya records LoCon's 3x3 convs as network args
            meta["ss_network_args"] = json.dumps({"conv_dim": str(rank), "conv_alpha": str(alpha)})
        return meta

    # ---- LoRAs and embeddings on a loaded pipeline ---------------------------------------------------------
    def check_lora(self, shapes, pipe, *, lora, model_id) -> None:
        base_width = pipe.unet.config.cross_attention_dim
        widths = {s[1] for k, s in shapes.items() if _CROSS_ATTN_K_DOWN.search(k) and len(s) == 2}
        if widths and widths != {base_width}:
            raise ValueError(f"LoRA {lora} was made for {describe_width(widths.pop())}, but base {model_id!r} is "
                             f"{describe_width(base_width)}")
        second_encoder = any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in shapes)
        if second_encoder and len(self.text_encoders(pipe)) < 2:
            raise ValueError(f"LoRA {lora} trains a second text encoder (an SDXL LoRA), but base {model_id!r} has "
                             f"none")

    def check_embedding(self, shapes, pipe, *, embedding, model_id) -> None:
        width = pipe.text_encoder.config.hidden_size
        vectors = shapes.get("clip_l") or shapes.get("emb_params") or next(iter(shapes.values()))
        if vectors[-1] != width:
            raise ValueError(f"embedding {embedding} has vectors of width {vectors[-1]}, but the text encoder of base "
                             f"{model_id!r} takes {width} (made for another family)")

    def load_embedding(self, pipe, path: Path, tokens: str) -> None:
        pipe.load_textual_inversion(str(path), token=tokens)

    def embedding_layout(self, vectors: list) -> dict:
        """A textual inversion's vectors (one set per text encoder) as A1111's embedding file holds them."""
        return {"emb_params": vectors[0]}

    # ---- generation ---------------------------------------------------------------------------------------
    def guidance_kwargs(self, pipe, *, cfg, negative_prompt, distilled_cfg, max_sequence_length):
        if distilled_cfg is not None:
            raise ValueError(f"`distilled_cfg` is FLUX.1-dev's guidance input; {self.label} models take `cfg` only")
        if max_sequence_length is not None:
            raise ValueError(f"`max_sequence_length` sets FLUX.1's T5 prompt length; {self.label} models read "
                             f"77-token CLIP prompts")
        return dict(guidance_scale=cfg, negative_prompt=negative_prompt or None), [], None


class NoiseObjective:
    """DDPM noise at a uniform timestep; the UNet predicts it (or v, as the scheduler's prediction_type says), with
    min-SNR weighting. latents (B, 4, h, w) -> squared error (B, 4, h, w), weight (B,)."""

    def __init__(self, family: UNetFamily, parts, config):
        from diffusers import DDPMScheduler

        self.family, self.parts, self.config = family, parts, config
        self.scheduler = DDPMScheduler.from_config(parts.pipe.scheduler.config)  # the base's noise schedule

    def loss_map(self, denoiser, latents, cond: Conditioning, sizes, target_size, generator, autocast):
        import torch
        from diffusers.training_utils import compute_snr

        scheduler, config = self.scheduler, self.config
        b = latents.shape[0]
        noise = noise_like(latents, generator, config.noise_offset)
        t = BatchDraws.of(generator, b).randint(scheduler.config.num_train_timesteps, b).to(latents.device)
        noisy = scheduler.add_noise(latents, noise, t)
        epsilon = scheduler.config.prediction_type == "epsilon"
        target = noise if epsilon else scheduler.get_velocity(latents, noise, t)
        added = self.family.added_conditioning(cond, sizes, target_size, latents.device)
        with autocast():
            pred = denoiser(noisy, t, cond.hidden.to(latents.device), added_cond_kwargs=added).sample
        error = (pred.float() - target.float()) ** 2
        weight = torch.ones(b, device=latents.device)
        if config.min_snr_gamma:
            snr = compute_snr(scheduler, t)
            weight = snr.clamp(max=config.min_snr_gamma) / (snr if epsilon else snr + 1)
        return error, weight


def _token_ids(tokenizer, captions: list[str], encoder):
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids.to(encoder.device)  # (B, 77)


def _unet_width(folder: Path | None) -> int | None:
    config = folder / "unet" / "config.json" if folder is not None else None
    if config is None or not config.is_file():
        return None
    return json.loads(config.read_text()).get("cross_attention_dim")


# Cross-attention widths of the real UNet families (SD 1.x, SD 2.x, SDXL).
_KNOWN_WIDTHS = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}


def lora_text_width(shapes: dict[str, list[int]]) -> int | None:
    """The text width a UNet LoRA's cross-attention keys take (None when it has none)."""
    widths = [s[1] for k, s in shapes.items() if _CROSS_ATTN_K_DOWN.search(k) and len(s) == 2]
    return widths[0] if widths else None


def describe_width(width: int | None) -> str:
    if width is None:
        return "a UNet model (SD 1.x, SD 2.x or SDXL)"
    label = _KNOWN_WIDTHS.get(width)
    return f"{label} (cross-attention width {width})" if label else f"cross-attention width {width}"
