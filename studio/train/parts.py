"""The base model's parts a run trains with (from the model store, in memory): its denoiser, text encoding (cached
or live), latents' scale and shift, and the validation pipeline. What differs by family comes from its FamilySpec."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.models.families import Family, denoiser, has_distilled_guidance


@dataclass
class Conditioning:
    """What a prompt conditions the denoiser with, per family. hidden (B, T, D): SD's CLIP states (SDXL: both
    encoders side by side), FLUX's T5 states. pooled (B, P): SDXL's second CLIP, FLUX's CLIP-L; None for SD 1.x."""

    hidden: object
    pooled: object = None


@dataclass
class Parts:
    base_id: str
    family: Family
    pipe: object  # the base txt2img pipeline; its modules are the ones trained
    # Prompts encoded before the text encoders were let go (FLUX: T5 never stays for the steps), by prompt.
    encoded: dict = field(default_factory=dict)
    denoiser_config: object = None  # the denoiser's config, known before its weights are (FLUX loads them last)

    @property
    def spec(self):
        return self.family.spec

    @property
    def denoiser(self):
        return denoiser(self.pipe)

    @property
    def unet(self):  # SD families' name for the denoiser
        return self.pipe.unet

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def text_encoders(self) -> list:
        return [m for m in (self.pipe.text_encoder, getattr(self.pipe, "text_encoder_2", None)) if m is not None]

    @property
    def tokenizers(self) -> list:
        return [t for t in (self.pipe.tokenizer, getattr(self.pipe, "tokenizer_2", None)) if t is not None]

    @property
    def sdxl(self) -> bool:
        return self.family == Family.SDXL

    @property
    def vae_scale(self) -> float:
        return self.vae.config.scaling_factor

    @property
    def vae_shift(self) -> float:
        """FLUX's VAE latents are shifted before scaling; SD's are not."""
        return getattr(self.vae.config, "shift_factor", None) or 0.0

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def distilled_guidance(self) -> bool:
        """FLUX.1-dev takes a guidance input; schnell does not."""
        if getattr(self.pipe, "transformer", "absent") is None:  # not loaded yet
            return bool(self.denoiser_config.get("guidance_embeds", False))
        return has_distilled_guidance(self.pipe)

    def sequence_length(self, asked: int) -> int:
        """FLUX's T5 tokens per caption: `asked`, else 512 for dev and 256 for schnell."""
        return asked or (512 if self.distilled_guidance else 256)

    def drop_text_encoders(self) -> None:
        """Let the text encoders go (every caption and validation prompt is encoded): FLUX's T5-XXL alone is 9 GB."""
        import gc

        self.pipe.text_encoder = None
        if hasattr(self.pipe, "text_encoder_2"):
            self.pipe.text_encoder_2 = None
        gc.collect()


def load_parts(store, model_id: str, device: str, *, base_precision: str = "auto", without_denoiser: bool = False
               ) -> Parts:
    """Load the base through the store in float32 (trained weights stay fp32; autocast handles mixed precision).
    `without_denoiser`: FLUX's text encoders and VAE first, the transformer later (load_denoiser), so the two
    never fill the GPU together."""
    import torch

    from studio.models.families import family_of_pipeline

    ref = store.resolve(model_id)
    skip = ("transformer",) if without_denoiser and ref.family == Family.FLUX and ref.kind != "file" else ()
    pipe = store.load_base(ref, dtype=torch.float32, device=device, without=skip)
    parts = Parts(model_id, ref.family or family_of_pipeline(pipe), pipe,
                  denoiser_config=store.load_denoiser_config(ref) if skip else None)
    for module in [*parts.text_encoders, pipe.vae] + ([] if skip else [parts.denoiser]):
        module.requires_grad_(False)
    if not skip and base_precision != "auto":
        store.store_frozen(parts.denoiser, base_precision, device)
    return parts


def load_denoiser(store, parts: Parts, device: str, base_precision: str) -> None:
    """Load FLUX's transformer into `parts` (after its captions were encoded), stored as `base_precision` asks."""
    if getattr(parts.pipe, "transformer", "absent") is not None:
        return
    transformer = store.load_denoiser(store.resolve(parts.base_id), device=device, base_precision=base_precision)
    transformer.requires_grad_(False)
    parts.pipe.transformer = transformer


def keep_frozen_in(parts: Parts, dtype, *, lora: bool, trains_text: bool, trains_denoiser: bool) -> None:
    """With mixed precision, weights that do not train are kept in `dtype` (half the memory, as diffusers' scripts
    do); trained weights, LoRA layers included, stay float32 so small updates are not lost to rounding. A denoiser
    already stored small (fp8, int8, nf4) is left as it is."""
    import torch
    from diffusers.training_utils import cast_training_params

    if not parts.sdxl:  # SDXL's VAE overflows in fp16; SD 1.x's and FLUX's do not
        parts.vae.to(dtype)
    for encoder in parts.text_encoders:
        if not trains_text or lora:
            encoder.to(dtype)
            cast_training_params(encoder, torch.float32)
    if (lora or not trains_denoiser) and not _quantized(parts.denoiser):
        parts.denoiser.to(dtype)
        cast_training_params(parts.denoiser, torch.float32)


def _quantized(module) -> bool:
    """Whether the store stored `module` small (ModelLoading.store_frozen records how)."""
    return getattr(module, "studio_precision", "auto") in ("fp8", "int8", "nf4")


def encode_text(parts: Parts, captions: list[str], encoders: list | None = None,
                max_sequence_length: int = 0) -> Conditioning:
    """Text conditioning for `captions`. `encoders` replaces the text encoders (their multi-GPU wrappers, so
    gradients are shared). Prompts encoded earlier (Parts.encoded) come from there."""
    import torch

    if all(c in parts.encoded for c in captions):
        rows = [parts.encoded[c] for c in captions]
        pooled = torch.stack([r.pooled for r in rows]) if rows[0].pooled is not None else None
        return Conditioning(torch.stack([r.hidden for r in rows]), pooled)
    if not parts.text_encoders:
        raise ValueError(f"caption {captions[0]!r} was not encoded before the text encoders were unloaded")
    if parts.spec.flow:  # FLUX: T5 states and CLIP-L's pooled output, as its pipeline encodes them
        with torch.no_grad():
            hidden, pooled, _ = parts.pipe.encode_prompt(
                prompt=captions, prompt_2=None, device=parts.text_encoders[0].device,
                max_sequence_length=parts.sequence_length(max_sequence_length))
        return Conditioning(hidden, pooled)
    device = parts.text_encoders[0].device
    hidden, pooled = [], None
    for tokenizer, encoder in zip(parts.tokenizers, encoders or parts.text_encoders):
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)  # (B, 77)
        if parts.sdxl:
            out = encoder(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])  # SDXL conditions on the penultimate layer
            pooled = out[0]  # the second encoder's projected pooled output (B, P)
        else:
            hidden.append(encoder(ids)[0])  # (B, 77, D)
    return Conditioning(torch.cat(hidden, dim=-1), pooled)


def remember_prompts(parts: Parts, prompts: list[str], max_sequence_length: int = 0) -> None:
    """Encode `prompts` now (validation prompts, before the text encoders go) and keep them in Parts.encoded."""
    for prompt in dict.fromkeys(prompts):
        if prompt not in parts.encoded:
            cond = encode_text(parts, [prompt], max_sequence_length=max_sequence_length)
            parts.encoded[prompt] = Conditioning(cond.hidden[0].detach(), None if cond.pooled is None
                                                 else cond.pooled[0].detach())


def time_ids(size_info: list[tuple[int, int, int, int]], target: tuple[int, int], device):
    """SDXL's size conditioning per sample: (original h, w, crop top, left, target h, w) -> (B, 6)."""
    import torch

    width, height = target
    rows = [[oh, ow, top, left, height, width] for oh, ow, top, left in size_info]
    return torch.tensor(rows, dtype=torch.float32, device=device)


def validation_pipeline(parts: Parts):
    """A txt2img pipeline over the modules being trained (no copy): what validation generates with."""
    components = parts.pipe.components
    extra = {"requires_safety_checker": False} if "safety_checker" in components else {}
    pipe = type(parts.pipe)(**components, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe
