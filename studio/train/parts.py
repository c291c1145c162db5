"""The base model's parts a run trains with (from the model store, in memory): its denoiser, text encoding (cached
or live), latents' scale and shift, and the validation pipeline. What differs by family, the family object says."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.models import families
from studio.models.families import Conditioning, ModelFamily

__all__ = ["Conditioning", "PartDtypes", "Parts", "encode_text", "keep_frozen_in", "load_denoiser", "load_parts",
           "part_dtypes", "remember_prompts", "validation_pipeline"]


@dataclass
class Parts:
    base_id: str
    family: ModelFamily
    pipe: object  # the base txt2img pipeline; its modules are the ones trained
    # Prompts encoded before the text encoders were let go (a staged load: FLUX's T5 never stays for the steps)
    encoded: dict = field(default_factory=dict)
    denoiser_config: object = None  # the denoiser's config, known before its weights are (a staged load loads them last)

    @property
    def denoiser(self):
        return self.family.denoiser(self.pipe)

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def text_encoders(self) -> list:
        return self.family.text_encoders(self.pipe)

    @property
    def tokenizers(self) -> list:
        return self.family.tokenizers(self.pipe)

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def distilled_guidance(self) -> bool:
        """Whether the denoiser takes a guidance input (FLUX.1-dev; schnell does not)."""
        if self.family.denoiser(self.pipe) is None:  # a staged load: not loaded yet
            return bool(self.denoiser_config.get("guidance_embeds", False))
        return self.family.has_distilled_guidance(self.pipe)

    def sequence_length(self, asked: int) -> int:
        """Text tokens per caption where the family's prompt length is a setting (FLUX.1's T5), else 0."""
        return self.family.sequence_length(self.distilled_guidance, asked)

    def drop_text_encoders(self) -> None:
        """Let the text encoders go (every caption and validation prompt is encoded): FLUX's T5-XXL alone is 9 GB,
        given back to the GPU before the denoiser loads."""
        import gc

        import torch

        self.family.drop_text_encoders(self.pipe)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


@dataclass(frozen=True)
class PartDtypes:
    """The dtype each part of the base is read in: the one it keeps while the run trains (keep_frozen_in then
    changes nothing), so a frozen part is never materialized in float32 to be cast after."""

    denoiser: object
    text: object
    vae: object

    def by_part(self, family: ModelFamily | None) -> dict:
        """As the loaders take them (models.families.base.part_dtype): part name -> dtype, "default" the
        denoiser's."""
        if family is None:  # a hub id whose name did not tell: its index does, as it loads
            return {"default": self.denoiser}
        return {"default": self.denoiser, family.denoiser_name: self.denoiser, "vae": self.vae,
                **{name: self.text for name in family.text_encoder_names}}


def part_dtypes(config, family: ModelFamily | None, device: str, *, staged: bool = False) -> PartDtypes:
    """What each part is read in for a run of `config` (None: float32 throughout). Frozen parts: in the mixed
    precision's half dtype (bf16 for every part with base_precision bf16; a denoiser stored in fp8, int8 or nf4 is
    read in bf16 and quantized from there); trained ones (a whole-model method's denoiser, textual inversion's text
    encoders) in float32; SDXL's VAE in float32 (it overflows in fp16). A staged load's text encoders, which only
    encode the captions and leave, encode in bf16 on a GPU that has it (T5-XXL: 9.5 GB instead of 19), else as the
    mixed precision says."""
    import torch

    fp32 = torch.float32
    if config is None:
        return PartDtypes(fp32, fp32, fp32)
    half = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.mixed_precision)
    everything_bf16 = config.base_precision == "bf16"
    stored = torch.bfloat16 if config.base_precision != "auto" else None
    frozen_denoiser = config.method in ("lora", "textual-inversion")
    trains_text = config.method == "textual-inversion" or config.text_encoder_lr > 0
    denoiser = stored or (half if frozen_denoiser else None) or fp32
    if everything_bf16:
        text = torch.bfloat16
    elif staged and device.startswith("cuda") and torch.cuda.is_bf16_supported():
        text = torch.bfloat16
    elif not trains_text or config.method == "lora":
        text = half or fp32
    else:
        text = fp32
    in_half = family is None or family.vae_in_half()
    vae = ((torch.bfloat16 if everything_bf16 else half) or fp32) if in_half else fp32
    return PartDtypes(denoiser, text, vae)


def load_parts(store, model_id: str, device: str, config=None, *, staged: bool = False,
               text_on_cpu: bool = False) -> Parts:
    """Load the base through the store for a run of `config` (None: everything float32, frozen), each part read in
    the dtype it keeps (part_dtypes). The frozen denoiser is stored as `base_precision` says on the CPU, then
    everything is put on `device`, but for the blocks `blocks_to_swap` keeps on the CPU.
    `staged`: the text encoders and VAE first, the denoiser later (load_denoiser), so the two never fill the device
    together (ModelFamily.staged_training); `text_on_cpu`: the text encoders stay on the CPU and encode there (the
    memory plan's word where they do not fit the GPU: studio.train.fit.text_on_cpu)."""
    import torch

    from studio.models.loaders import last_blocks, place

    ref = store.resolve(model_id)
    skip = (ref.family.denoiser_name,) if staged else ()
    base_precision = config.base_precision if config is not None else "auto"
    if base_precision == "nf4" and not staged:
        raise ValueError("`base_precision` nf4 quantizes the transformer as it loads alone, after the captions are "
                         "encoded: it needs cached captions (`cache` on, `shuffle_captions` off, no text encoder "
                         "training) and a LoRA; use fp8 or int8 here")
    dtypes = part_dtypes(config, ref.family, device, staged=staged)
    pipe = store.load_base(ref, dtype=dtypes.by_part(ref.family), device="cpu", without=skip)
    family = families.of(pipe)
    if not family.vae_in_half():
        pipe.vae.to(torch.float32)
    parts = Parts(model_id, family, pipe, denoiser_config=family.denoiser_config(store, ref) if skip else None)
    for module in [*parts.text_encoders, pipe.vae] + ([] if skip else [parts.denoiser]):
        module.requires_grad_(False)
    if not skip and base_precision != "auto":
        store.store_frozen(parts.denoiser, base_precision, "cpu")  # quantized before it reaches the GPU
    kept = set(family.text_encoder_names) if text_on_cpu else set()
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module) and name != family.denoiser_name and name not in kept:
            module.to(device)
    if not skip:
        swapped = last_blocks(family, parts.denoiser, config.blocks_to_swap if config is not None else 0)
        place(parts.denoiser, device, stay=swapped)
    return parts


def load_denoiser(store, parts: Parts, device: str, config) -> None:
    """Load the denoiser into `parts` (a staged load, after its captions were encoded) in the dtype it keeps
    (part_dtypes), stored as `base_precision` asks; its last `blocks_to_swap` blocks stay on the CPU."""
    if parts.family.denoiser(parts.pipe) is not None:
        return
    ref = store.resolve(parts.base_id)
    denoiser = store.load_denoiser(ref, device=device, base_precision=config.base_precision,
                                   dtype=part_dtypes(config, parts.family, device).denoiser,
                                   blocks_on_cpu=config.blocks_to_swap)
    denoiser.requires_grad_(False)
    setattr(parts.pipe, parts.family.denoiser_name, denoiser)


def keep_frozen_in(parts: Parts, dtype, *, lora: bool, trains_text: bool, trains_denoiser: bool) -> None:
    """With mixed precision, weights that do not train are kept in `dtype` (half the memory, as diffusers' scripts
    do); trained weights, LoRA layers included, stay float32 so small updates are not lost to rounding. A denoiser
    already stored small (fp8, int8, nf4) is left as it is."""
    import torch
    from diffusers.training_utils import cast_training_params

    if parts.family.vae_in_half():
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
    if all(c in parts.encoded for c in captions):
        return Conditioning.stack([parts.encoded[c] for c in captions])
    if not parts.text_encoders:
        raise ValueError(f"caption {captions[0]!r} was not encoded before the text encoders were unloaded")
    return parts.family.encode_prompts(parts.pipe, captions, encoders=encoders,
                                       max_sequence_length=max_sequence_length,
                                       distilled=parts.distilled_guidance)


def remember_prompts(parts: Parts, prompts: list[str], max_sequence_length: int = 0) -> None:
    """Encode `prompts` now (validation prompts, before the text encoders go) and keep them in Parts.encoded; the
    empty prompt too, which classifier-free guidance takes as its negative."""
    import torch

    for prompt in dict.fromkeys([*prompts, ""]):
        if prompt not in parts.encoded:
            with torch.no_grad():
                row = encode_text(parts, [prompt], max_sequence_length=max_sequence_length).row(0)
            # float32, as the text cache keeps them: the encoder that made them (bf16 on a GPU) is gone
            parts.encoded[prompt] = Conditioning(row.hidden.detach().float(), None if row.pooled is None
                                                 else row.pooled.detach().float())


def validation_pipeline(parts: Parts):
    """A txt2img pipeline over the modules being trained (no copy): what validation generates with."""
    components = parts.pipe.components
    extra = {"requires_safety_checker": False} if "safety_checker" in components else {}
    pipe = type(parts.pipe)(**components, **extra)
    pipe.set_progress_bar_config(disable=True)
    # the prompts are drawn in one batch but decoded one picture at a time: decoding them together would hold every
    # picture's VAE activations at once (three SDXL pictures at 1024 px: ~11 GB in float32); the memory plan counts one
    slicing = getattr(pipe.vae, "enable_slicing", None)
    if slicing is not None:
        slicing()
    return families.mark(pipe, parts.family)
