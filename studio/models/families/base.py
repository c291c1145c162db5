"""What every model family answers: the protocol the store, the cache, the generator, the training loop, the
evaluator and the UI ask, so none of them needs to know which family a model is.

A family is one instance of a ModelFamily subclass, registered in studio/models/families/__init__.py. Its class
attributes are the facts (sizes, guidance, encoders, what fits it); its methods do what differs (identify a file,
load one, encode prompts for training, the training objective, LoRA targets and key layouts, sampling arguments).
Methods that need torch or diffusers import them when called, so asking a family a fact costs nothing. What a family
tells the memory plan is memory_facts.py's (mixed in); a training step's random draws are draws.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.models.families.memory_facts import MemoryFacts


@dataclass
class Conditioning:
    """What a prompt conditions the denoiser with. hidden (B, T, D): the text states the denoiser attends to
    (SD: CLIP's, SDXL: both CLIPs side by side, FLUX.1: T5's). pooled (B, P): a pooled text vector (SDXL's second
    CLIP, FLUX.1's CLIP-L); None where the family takes none. mask (B, T) bool: which of `hidden`'s tokens are
    text, where prompts keep lengths of their own (Z-Image, Qwen-Image: padding is cut, not attended); None: all."""

    hidden: object
    pooled: object = None
    mask: object = None

    def row(self, i: int) -> "Conditioning":
        """Caption `i`'s conditioning alone, its padding cut: hidden (T_i, D), pooled (P,)."""
        hidden = self.hidden[i] if self.mask is None else self.hidden[i][self.mask[i].bool()]
        return Conditioning(hidden, None if self.pooled is None else self.pooled[i])

    @staticmethod
    def stack(rows: list["Conditioning"]) -> "Conditioning":
        """Rows (as row() cuts them) as one batch; rows of different lengths are padded with zeros at the end and
        masked."""
        import torch

        pooled = torch.stack([r.pooled for r in rows]) if rows[0].pooled is not None else None
        lengths = [r.hidden.shape[0] for r in rows]
        if len(set(lengths)) == 1:
            return Conditioning(torch.stack([r.hidden for r in rows]), pooled)
        longest = max(lengths)
        hidden = torch.stack([torch.nn.functional.pad(r.hidden, (0, 0, 0, longest - r.hidden.shape[0]))
                              for r in rows])
        mask = torch.arange(longest)[None] < torch.tensor(lengths)[:, None]  # (B, T)
        return Conditioning(hidden, pooled, mask.to(hidden.device))


@dataclass(frozen=True)
class TrainingTarget:
    """What a LoRA adapts in a family: peft's target_modules for the denoiser (a list of suffixes or one regex) and
    for the text encoders (None: the family's text encoders take no LoRA)."""

    denoiser: object
    text: object = None


class ModelFamily(MemoryFacts):
    """One model family. Subclasses set the facts below and implement the methods that raise NotImplementedError
    (the memory plan's: memory_facts.MemoryFacts)."""

    # ---- facts --------------------------------------------------------------------------------------------
    name: str = ""  # the id written in run.json, exports' headers and the cache: "sd1", "sdxl", "flux"
    label: str = ""  # what the user reads: "SD 1.x", "FLUX.1"
    native_resolution: int = 512  # the side it was trained at
    size_multiple: int = 8  # pictures' sides are multiples of this (the VAE's factor, x2 where latents are packed)
    denoiser_name: str = "unet"  # the pipeline attribute of the module LoRA, DreamBooth and fine-tune train
    text_encoder_names: tuple[str, ...] = ("text_encoder",)  # the pipeline's text encoder attributes, in order
    tokenizer_names: tuple[str, ...] = ("tokenizer",)
    guidance: str = "cfg"  # "cfg": classifier-free guidance; "distilled": a guidance value the model takes as input
    default_cfg: float = 7.0  # the CFG scale Generate starts with
    default_steps: int = 20
    kohya_version: str = ""  # kohya's `ss_base_model_version` in LoRA headers
    controlnet: bool = False  # whether the studio's ControlNets (diffusers' SD ControlNets) fit it
    textual_inversion: bool = False  # whether the studio's embeddings (CLIP token vectors) fit it
    channels_last: bool = False  # a convolutional denoiser: channels-last memory is faster for it
    prompt_length_option: bool = False  # it reads long T5-style prompts whose token count the user may set
    # The live preview's approximate colours of the family's own VAE's latents, as the denoiser sees them:
    # RGB in [-1, 1] = latent channels @ factors (one (R, G, B) row per channel) + bias. Empty: fitted from the
    # model's own VAE when first needed (studio.generate.preview), as for a VAE that is not the family's (builtins).
    latent_rgb_factors: tuple = ()
    latent_rgb_bias: tuple = (0.0, 0.0, 0.0)
    # The training settings that apply to this family only (RunConfig's settings declared `family_option`): the
    # Train tab shows them when a model of the family is picked
    training_options: frozenset = frozenset()
    # Hub ControlNets by control module (Face to animal), when the user names none; a module left out has none.
    default_controlnets: dict = {}
    # The half precision it generates in on a GPU (studio.placement.generation_dtype): "fp16" (the SD UNets were
    # trained and released so) or "bf16" (the flow transformers: fp16 overflows in them), which falls back to fp16 on
    # a GPU without bf16.
    generation_dtype: str = "fp16"
    # The denoiser's lists of repeated blocks, in the order they run (block swapping keeps the last of them on the
    # CPU, see blocks()); none: the family's denoiser is not swapped.
    block_lists: tuple[str, ...] = ()
    priority: int = 0  # identification order: the more specific family is asked first (higher first)

    def __repr__(self) -> str:
        return f"<family {self.name}>"

    # ---- identify -----------------------------------------------------------------------------------------
    def matches_keys(self, keys: set[str]) -> bool:
        """Whether a single-file checkpoint with these tensor names is of this family."""
        raise NotImplementedError

    def file_variant(self, checkpoint) -> str:
        """Which carried configs (studio/models/configs/<variant>/) a single file of this family loads with, told
        from its tensors' names and shapes (files.Checkpoint) and the files beside it; a ValueError says in one line
        why the studio cannot load it (what the file is, what to use instead)."""
        raise ValueError(f"{checkpoint.path.name}: the studio carries no configs for {self.label} single files")

    def matches_index(self, index: dict, folder: Path | None) -> bool:
        """Whether a diffusers pipeline with this model_index.json (and its files in `folder`) is of this family."""
        raise NotImplementedError

    def matches_component(self, config: dict) -> bool:
        """Whether a single component's config.json (a ControlNet, a denoiser) belongs to this family."""
        return False

    def matches_hub_id(self, repo_id: str) -> bool:
        """Whether a hub id names this family when nothing is downloaded yet (FLUX.1 repos say so in their name)."""
        return False

    def matches_lora(self, shapes: dict[str, list[int]]) -> bool:
        """Whether a LoRA file with these tensor shapes was made for this family."""
        raise NotImplementedError

    # ---- load ---------------------------------------------------------------------------------------------
    def load_single_file(self, store, ref, *, dtype, without: tuple[str, ...] = ()):
        """The txt2img pipeline of a single-file checkpoint of this family, with the configs and tokenizers of its
        variant (ref.variant) and nothing from a hub; the components named in `without` are left out (None), never
        read. `dtype`: one for all parts, or a dict of them (base.part_dtype)."""
        raise NotImplementedError

    def staged_training(self, config) -> bool:
        """Whether training loads the text encoders first, encodes every prompt, lets them go and only then loads
        the denoiser (so a large text encoder and the denoiser never share the device)."""
        return False

    def load_denoiser(self, store, ref, *, device: str, base_precision: str, dtype=None):
        """The denoiser alone (for a staged training load), read in `dtype` (None: the family's choice for
        `base_precision`) and stored as `base_precision` asks, on the CPU (quantized
        there, so it reaches the GPU small: ModelStore.load_denoiser places it); nf4 only is put on `device` as
        bitsandbytes quantizes it while loading."""
        raise ValueError(f"{self.label} loads its denoiser with the rest of the pipeline")

    def denoiser_config(self, store, ref) -> dict:
        """The denoiser's config without its weights."""
        raise NotImplementedError

    def blocks(self, denoiser) -> list:
        """The denoiser's repeated blocks in the order they run (`block_lists`), which block swapping may keep on
        the CPU; [] where the family has none to swap."""
        return [block for name in self.block_lists for block in getattr(denoiser, name)]

    def takes_distilled_guidance(self, store, ref) -> bool:
        """Whether this model takes a distilled guidance value as an input (told without loading weights)."""
        return False

    # ---- a loaded pipeline -------------------------------------------------------------------------------
    def denoiser(self, pipe):
        return getattr(pipe, self.denoiser_name)

    def text_encoders(self, pipe) -> list:
        return [m for m in (getattr(pipe, n, None) for n in self.text_encoder_names) if m is not None]

    def tokenizers(self, pipe) -> list:
        return [t for t in (getattr(pipe, n, None) for n in self.tokenizer_names) if t is not None]

    def drop_text_encoders(self, pipe) -> None:
        """Let the text encoders go (every prompt is encoded)."""
        for name in self.text_encoder_names:
            setattr(pipe, name, None)

    def native_size(self, pipe) -> int:
        """The picture side a loaded pipeline was trained at (64 for the tiny builtins)."""
        raise NotImplementedError

    def has_distilled_guidance(self, pipe) -> bool:
        """Whether the loaded pipeline's denoiser takes a guidance input."""
        return False

    def is_inpainting(self, pipe) -> bool:
        """Whether the pipeline is a dedicated inpainting checkpoint (it cannot draw without a mask)."""
        return False

    def vae_in_half(self) -> bool:
        """Whether the VAE may be kept in fp16/bf16 during training (SDXL's overflows in fp16)."""
        return True

    def encode_latents(self, vae, pixels):
        """The latent distribution of `pixels` (B, 3, H, W) in [-1, 1]: its mean and std, each (B, C, h, w)."""
        dist = vae.encode(pixels).latent_dist
        return dist.mean, dist.std

    def normalize_latents(self, vae, latents):
        """Latents (B, C, h, w) drawn from encode_latents' distribution, as the denoiser sees them: shifted (FLUX.1's
        VAE says by how much) and scaled."""
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * vae.config.scaling_factor

    def latent_rgb(self, pipe) -> tuple[tuple, tuple] | None:
        """(factors, bias) of the declared colours when `pipe`'s VAE is the family's own (its channels, its full
        width), else None: another VAE's colours are fitted."""
        vae = pipe.vae.config
        if not self.latent_rgb_factors or vae.latent_channels != len(self.latent_rgb_factors):
            return None
        return (self.latent_rgb_factors, self.latent_rgb_bias) if max(vae.block_out_channels) >= 512 else None

    def preview_latents(self, pipe, latents, size: tuple[int, int]):
        """A pipeline's working latents while it samples a picture of `size` (width, height), as (B, C, h, w) in its
        VAE's channels, for the live preview."""
        return self.pipeline_latents(pipe, latents)

    def pipeline_latents(self, pipe, latents):
        """A pipeline's working latents (what its scheduler steps) as the training objective sees them,
        (B, C, h, w): the same, unless the family packs them into tokens."""
        return latents

    def task_pipeline(self, pipe, task: str, extra: dict):
        """The pipeline for `task` ("txt2img" with ControlNets, "img2img", "inpaint") over `pipe`'s modules (no copy
        of the weights); `extra`: more modules (ControlNets)."""
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

        auto = {"txt2img": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image,
                "inpaint": AutoPipelineForInpainting}[task]
        return auto.from_pipe(pipe, **extra)

    def img2img_kwargs(self, image, strength: float, size: tuple[int, int]) -> dict:
        """The img2img pipeline's arguments for `image` (already at `size`) redrawn at `strength`."""
        kwargs = dict(image=image, strength=strength)
        if self.img2img_needs_size():
            kwargs.update(width=size[0], height=size[1])
        return kwargs

    # ---- training -----------------------------------------------------------------------------------------
    def check_training(self, config) -> None:
        """Refuse, naming the setting, what this family cannot train."""
        return None

    def sequence_length(self, distilled: bool, asked: int) -> int:
        """Text tokens per caption for families whose prompt length is a setting; 0 for fixed-length encoders."""
        return 0

    def encode_prompts(self, pipe, captions: list[str], *, encoders: list | None = None,
                       max_sequence_length: int = 0, distilled: bool = False) -> Conditioning:
        """Text conditioning for `captions` with the pipeline's text encoders (`encoders`: their multi-GPU
        wrappers, so gradients are shared)."""
        raise NotImplementedError

    def objective(self, parts, config):
        """What a training step minimises: an object with loss_map(denoiser, latents, cond, sizes, target_size,
        generator, autocast) -> (squared error (B, C, h, w), weight (B,)); `generator` is a torch.Generator or a
        BatchDraws (a batch split across processes), every random draw made through BatchDraws.of(generator, B)."""
        raise NotImplementedError

    def lora_targets(self, layers: str) -> TrainingTarget:
        """peft target modules for `lora_layers` ("attention", "transformer", "all")."""
        raise NotImplementedError

    def sampling_kwargs(self, pipe, *, prompt: str, encoded: Conditioning | None, cfg: float,
                        distilled: bool, negative: Conditioning | None = None) -> dict:
        """Arguments for validation sampling with `pipe`: the prompt (or its encoding, made before the text
        encoders went; `negative`: the empty prompt's, for CFG) and guidance (`cfg` 0: the family's default)."""
        raise NotImplementedError

    def training_notes(self, parts, config) -> list[str]:
        """What the run log should tell the user about training this model (a distilled model's limits)."""
        return []

    # ---- exports ------------------------------------------------------------------------------------------
    def lora_to_kohya(self, state: dict, *, alpha: float, denoiser_config) -> dict:
        """A diffusers/peft LoRA state (`<part>.<module>.lora_A.weight`) in kohya's layout (A1111, Forge, ComfyUI)."""
        raise NotImplementedError

    def kohya_header(self, *, rank: int, alpha: float, lora_layers: str) -> dict[str, str]:
        """kohya's ss_* keys a LoRA's header carries for this family."""
        return {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
                "ss_base_model_version": self.kohya_version}

    def single_file_state(self, pipe) -> dict | None:
        """All of a pipeline's weights in the single-file layout A1111/Forge/ComfyUI load; None where the studio
        writes none (the diffusers folder is the export)."""
        return None

    # ---- LoRAs and embeddings on a loaded pipeline ---------------------------------------------------------
    def check_lora(self, shapes: dict[str, list[int]], pipe, *, lora: str, model_id: str) -> None:
        """Raise a ValueError when a LoRA of this family does not fit this pipeline (another variant's widths)."""
        return None

    def lora_weights(self, path: Path, pipe):
        """What diffusers' load_lora_weights gets for the LoRA at `path`: the file, or tensors converted first."""
        return str(path)

    def load_embedding(self, pipe, path: Path, tokens: str) -> None:
        raise ValueError(f"{self.label} takes no textual-inversion embeddings")

    def check_embedding(self, shapes: dict[str, list[int]], pipe, *, embedding: str, model_id: str) -> None:
        raise ValueError(f"embedding {embedding}: base {model_id!r} is {self.label}, which the studio's textual "
                         f"inversions (CLIP token vectors) do not fit; use a LoRA instead")

    # ---- generation ---------------------------------------------------------------------------------------
    samplers: dict = {}  # A1111/Forge sampler name -> (diffusers scheduler class name, extra config)
    default_sampler: str = ""
    animal_sampler: str | None = None  # Face to animal's sampler (seed 003's for the SD families)

    def schedule_type(self, sampler: str) -> str | None:
        """Forge's `Schedule type` field for a sampler, where the family writes one."""
        return None

    def parameters_sampler(self, sampler: str) -> str:
        """The sampler as the PNG parameters' `Sampler:` field names it."""
        return sampler

    def guidance_kwargs(self, pipe, *, cfg: float, negative_prompt: str, distilled_cfg: float | None,
                        max_sequence_length: int | None) -> tuple[dict, list[str], float | None]:
        """The pipeline's guidance arguments for a generation, notes on what the model will not do, and the
        distilled guidance used (None where the model takes none)."""
        raise NotImplementedError

    def img2img_needs_size(self) -> bool:
        """Whether the family's img2img pipeline must be told the output size (else it makes its native size)."""
        return False

    def generation_defaults(self, store, ref) -> dict:
        """What Generate starts with for this model: {"cfg": ..., "steps": ...} (a step-distilled model's own, told
        without loading weights)."""
        return {"cfg": self.default_cfg, "steps": self.default_steps}

    def tiny_builtins(self) -> dict:
        """builtin name -> builder(out: Path) of this family's tiny random-weight models (offline tests)."""
        return {}


def part_dtype(dtype, part: str):
    """The dtype pipeline part `part` loads in: `dtype` itself, or its entry in a dict of them (part -> dtype,
    "default" for the parts not named), as diffusers' from_pretrained takes them."""
    if isinstance(dtype, dict):
        return dtype.get(part, dtype.get("default"))
    return dtype
