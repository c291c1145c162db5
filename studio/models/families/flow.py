"""What the flow-matching transformer families share (FLUX.1, Z-Image, FLUX.2, Qwen-Image): noise levels drawn by
the run's `timestep_sampling`, noisy latents on the straight line between picture and noise, Forge's Euler samplers
and their fields, a transformer loaded alone for a staged LoRA run (text encoders first), and what none of them
trains (textual inversion, text-encoder LoRAs, min-SNR).

A family subclasses FlowFamily; its objective subclasses FlowObjective and says how its denoiser is called (packing,
ids, guidance) and what it predicts."""

from __future__ import annotations

import math
import re
from pathlib import Path

from studio.models.families.base import Conditioning, ModelFamily
from studio.models.families.draws import BatchDraws, noise_like
from studio.models.families.samplers import FLOW_SAMPLERS


class FlowFamily(ModelFamily):
    """A transformer trained by flow matching on latents packed 2x2 (so sides are multiples of 16)."""

    native_resolution = 1024
    size_multiple = 16  # the VAE's 8, times 2 for the 2x2 packing
    denoiser_name = "transformer"
    # how noise levels are drawn, and the large transformer's frozen base stored small
    training_options = frozenset({"timestep_sampling", "logit_mean", "logit_std", "flow_shift", "base_precision"})
    generation_dtype = "bf16"
    samplers = FLOW_SAMPLERS
    default_sampler = "Euler"
    transformer_class = ""  # diffusers' class of the denoiser, for a staged load
    # How a model of the family is told: tensor names only its single files have (endings), the diffusers classes
    # of its pipelines and components (a regex of the name before "Pipeline" / of the component's class), a hub
    # name (a regex, case-insensitive).
    file_keys: tuple[str, ...] = ()
    classes = ""
    hub_names = ""
    # A LoRA's tensor whose input width is the transformer's (a regex), checked against transformer_width().
    lora_width_key = ""
    # What a LoRA's header says beside ModelFamily.kohya_header's keys (kohya's / musubi-tuner's network module and
    # architecture), so A1111, Forge and ComfyUI take it for the family's.
    kohya_keys: dict = {}

    # ---- identify -----------------------------------------------------------------------------------------
    def matches_keys(self, keys: set[str]) -> bool:
        return any(k.endswith(self.file_keys) for k in keys)

    def matches_index(self, index: dict, folder: Path | None) -> bool:
        return bool(re.fullmatch(self.classes + r"Pipeline", index.get("_class_name", "")))

    def matches_component(self, config: dict) -> bool:
        return bool(re.fullmatch(self.classes, config.get("_class_name", "")))

    def matches_hub_id(self, repo_id: str) -> bool:
        return bool(re.search(self.hub_names, repo_id, re.IGNORECASE))

    # ---- exports ------------------------------------------------------------------------------------------
    def kohya_header(self, *, rank, alpha, lora_layers) -> dict[str, str]:
        return {**super().kohya_header(rank=rank, alpha=alpha, lora_layers=lora_layers), **self.kohya_keys}

    # ---- LoRAs on a loaded pipeline ---------------------------------------------------------------------
    def transformer_width(self, pipe) -> int:
        config = pipe.transformer.config
        return config.num_attention_heads * config.attention_head_dim

    def check_lora(self, shapes, pipe, *, lora, model_id) -> None:
        """A LoRA of another size of the family (klein 9B's on 4B, a tiny model's on a real one) is named as such."""
        if not self.lora_width_key:
            return
        width = self.transformer_width(pipe)
        for key, shape in shapes.items():
            if re.search(self.lora_width_key, key) and shape[1] != width:
                raise ValueError(f"LoRA {lora} was made for a {self.label} transformer {shape[1]} wide, but base "
                                 f"{model_id!r} is {width} wide")

    # ---- load ---------------------------------------------------------------------------------------------
    def staged_training(self, config) -> bool:
        """A LoRA with cacheable captions loads the text encoders first, encodes every caption and validation
        prompt, lets them go, and only then loads the transformer: a large text encoder (T5-XXL, Qwen) and the
        transformer never share the GPU. (DreamBooth keeps them: it exports the whole pipeline.)"""
        return (config.method == "lora" and config.cache and not config.shuffle_captions
                and not config.text_encoder_lr)

    def load_denoiser(self, store, ref, *, device: str, base_precision: str, dtype=None):
        """Only the transformer, for a LoRA to train on, stored as `base_precision` asks (see store.store_frozen):
        read in `dtype` (default bf16, float32 for auto) and quantized on the CPU; nf4 is quantized by bitsandbytes
        as it is put on `device`. A single file's transformer is read alone (file_transformer)."""
        import diffusers
        import torch

        from studio.models import hub
        from studio.models.loaders import nf4_config

        hub.quiet_loaders()
        dtype = dtype or (torch.float32 if base_precision == "auto" else torch.bfloat16)
        if ref.kind == "file":
            if base_precision == "nf4":
                raise ValueError(f"`base_precision` nf4 needs {self.label}'s diffusers folder (or its hub id): from a "
                                 f"single file, train with bf16, fp8 or int8")
            try:
                model = self.file_transformer(store, ref, dtype=dtype)
            except (OSError, EnvironmentError) as e:
                raise store.load_error("transformer of", ref.id, e, local=True) from e
            store.require_weights(model, "its transformer", ref)
        else:
            source = str(ref.path) if ref.path is not None else ref.id
            extra = {"quantization_config": nf4_config(device)} if base_precision == "nf4" else {}
            try:
                model = getattr(diffusers, self.transformer_class).from_pretrained(
                    source, subfolder="transformer", dtype=dtype, use_safetensors=store.use_safetensors(),
                    local_files_only=not store.settings.allow_downloads, **extra)
            except (OSError, EnvironmentError) as e:
                raise store.load_error("transformer of", ref.id, e, local=ref.path is not None) from e
        store.store_frozen(model, base_precision, "cpu")
        return model

    def file_transformer(self, store, ref, *, dtype):
        """The transformer of a single file of the family alone, in `dtype` (nothing else of the file is read)."""
        raise NotImplementedError

    def denoiser_config(self, store, ref) -> dict:
        import diffusers

        if ref.kind == "file":
            return dict(getattr(diffusers, self.transformer_class).load_config(
                str(store.single_file_config(ref)), subfolder="transformer"))
        source = str(ref.path) if ref.path is not None else ref.id
        return dict(getattr(diffusers, self.transformer_class).load_config(
            source, subfolder="transformer", local_files_only=not store.settings.allow_downloads))

    # ---- training -----------------------------------------------------------------------------------------
    def check_training(self, config) -> None:
        if config.method == "textual-inversion":
            raise ValueError(f"`method` textual-inversion does not fit {self.label} ({self.ti_reason}): train a LoRA")
        if config.text_encoder_lr:
            raise ValueError(f"`text_encoder_lr` must be 0 for {self.label}: the studio trains its transformer only "
                             f"({self.frozen_text}, and their embeddings are cached)")
        if config.min_snr_gamma:
            raise ValueError(f"`min_snr_gamma` weighs DDPM noise levels; {self.label} trains by flow matching, where "
                             f"it does not apply: set it to 0")

    # What the refusals say: why embeddings do not fit, which text encoders stay frozen.
    ti_reason = "its Qwen text encoder has no CLIP token table to extend"
    frozen_text = "its text encoder stays frozen"

    # ---- memory plan ----------------------------------------------------------------------------------------
    # Float32 elements per token per unit of width (the transformer's hidden size) that a training step keeps:
    # per block (double-stream, single-stream), per block under gradient checkpointing (its input), and what the
    # layers around the blocks keep (without, with checkpointing; with it, one block is recomputed at a time in the
    # backward pass on top); and the inference working set per picture. Measured on FLUX.1's blocks at their real
    # width, 512 px and 512 text tokens, float32, LoRA on the attention (bench/realsize_calibrate.py flux: 1 + 1
    # blocks 0.67 GB, 2 + 1 0.87, 1 + 2 0.85; checkpointed 1 + 1 0.45, 2 + 2 0.48; inference 0.27); the other flow
    # families' blocks are of the same kind (attention, a 3-4x MLP, modulations) and are planned with these figures.
    block_activations: tuple[float, float] = (11.4, 10.3)
    checkpointed_block: float = 0.9
    activation_io: tuple[float, float] = (16.4, 12.3)
    inference_activation: float = 15.3
    caption_tokens = 128  # text tokens a caption is planned at where prompts keep their own lengths (Qwen text)

    def block_layout(self, config: dict) -> tuple[int, int, int]:
        """(width, double-stream blocks, single-stream blocks) of a transformer config."""
        return (config["num_attention_heads"] * config["attention_head_dim"], config.get("num_layers", 0),
                config.get("num_single_layers", 0))

    def activation_elements(self, denoiser_config, *, side, text_tokens, checkpointing) -> float:
        width, double, single = self.block_layout(denoiser_config)
        per_token = width * ((side / 16) ** 2 + text_tokens)  # latents packed 2x2: (side / 16)^2 image tokens
        k_double, k_single = self.block_activations
        if checkpointing:  # each block's input, and one block recomputed at a time in the backward pass
            recomputed = max(k_double if double else 0, k_single if single else 0)
            return per_token * (self.checkpointed_block * (double + single) + recomputed + self.activation_io[1])
        return per_token * (k_double * double + k_single * single + self.activation_io[0])

    def inference_elements(self, denoiser_config, *, side, text_tokens) -> float:
        width, _, _ = self.block_layout(denoiser_config)
        return self.inference_activation * width * ((side / 16) ** 2 + text_tokens)

    def text_tokens(self, config) -> int:
        return self.caption_tokens

    # ---- generation ---------------------------------------------------------------------------------------
    def schedule_type(self, sampler: str) -> str | None:
        return sampler.split(" ", 1)[1] if " " in sampler else "Simple"

    def parameters_sampler(self, sampler: str) -> str:
        return sampler.split(" ")[0]  # Forge writes the schedule type apart

    def refuse_flux_fields(self, distilled_cfg, max_sequence_length) -> None:
        """FLUX.1's distilled guidance and prompt length are FLUX.1's alone."""
        if distilled_cfg is not None:
            raise ValueError(f"`distilled_cfg` is FLUX.1-dev's guidance input; {self.label} models take `cfg` only")
        if max_sequence_length is not None:
            raise ValueError(f"`max_sequence_length` sets FLUX.1's T5 prompt length; {self.label} reads prompts "
                             f"whole")


def dynamic_shift(scheduler_config, tokens: int) -> float:
    """The shift a dynamically shifting flow scheduler (FLUX.1, FLUX.2, Qwen-Image) gives a picture of `tokens`
    packed latent tokens: exp(mu), mu linear in the token count between base and max (diffusers' calculate_shift),
    which is how much inference pushes its steps toward noise at that size."""
    config = dict(scheduler_config)
    low, high = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    mu = base + (top - base) * (tokens - low) / (high - low)
    return math.exp(mu)


class FlowObjective:
    """noisy = (1 - sigma) * latents + sigma * noise; the subclass's `predict` returns the denoiser's output at the
    latents' shape and `target` what it should be. latents (B, C, h, w), already shifted and scaled -> squared error
    (B, C, h, w), weight (B,)."""

    def __init__(self, family, parts, config):
        self.family, self.parts, self.config = family, parts, config
        self.shift = config.flow_shift or float(parts.pipe.scheduler.config.get("shift", 3.0))

    def shift_for(self, latents) -> float:
        """The `shift` mode's shift for a batch of `latents` (B, C, h, w): the run's flow_shift, else the
        scheduler's own (FLUX.1's 3)."""
        return self.shift

    def sigmas(self, b: int, generator, shift: float | None = None):
        """Noise levels in (0, 1) for `b` samples, by the run's timestep_sampling (see RunConfig)."""
        import torch

        mode, config = self.config.timestep_sampling, self.config
        draws = BatchDraws.of(generator, b)
        if mode == "uniform":
            return draws.rand(b)
        mean, std = (config.logit_mean, config.logit_std) if mode == "logit-normal" else (0.0, 1.0)
        sigma = torch.sigmoid(mean + std * draws.randn((b,)))
        if mode == "shift":  # more steps near pure noise, where a subject's layout is decided
            shift = self.shift if shift is None else shift
            sigma = sigma * shift / (1 + (shift - 1) * sigma)
        return sigma

    def loss_map(self, denoiser, latents, cond: Conditioning, sizes, target_size, generator, autocast):
        import torch

        b = latents.shape[0]
        noise = noise_like(latents, generator, self.config.noise_offset)
        sigma = self.sigmas(b, generator, self.shift_for(latents)).to(latents.device)
        s = sigma.view(b, 1, 1, 1)
        noisy = (1 - s) * latents + s * noise
        pred = self.predict(denoiser, noisy, sigma, cond, autocast)
        error = (pred.float() - self.target(noise, latents).float()) ** 2
        return error, torch.ones(b, device=latents.device)

    def predict(self, denoiser, noisy, sigma, cond: Conditioning, autocast):
        raise NotImplementedError

    def target(self, noise, latents):
        return noise - latents  # the velocity from picture to noise
