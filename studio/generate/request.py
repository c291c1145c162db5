"""What a generation asks for and what it gives back: typed, checked at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from studio.fields import setting
from studio.generate.hires import hires_schedule
from studio.generate.inpaint import INPAINT_AREAS
from studio.generate.pictures import open_picture
from studio.generate.samplers import check_sampler
from studio.models.refs import LoraChoice, parse_lora  # noqa: F401 (the generate package's own names for them)

MAX_SEED = 2**32 - 1


@dataclass
class ControlUnit:
    """One ControlNet applied to a generation, in A1111's terms."""

    model: str  # ControlNet id: builtin:tiny-controlnet, hub id, folder or file
    image: object  # PIL.Image control image (already preprocessed: face mesh, keypoints, edges...)
    module: str = "none"  # which preprocessor made `image`, recorded in the parameters text
    weight: float = 1.0  # conditioning scale
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    # How the preprocessor ran, recorded as A1111 does (its meaning depends on the module: canny's low and high
    # thresholds, mediapipe_face's max faces and min confidence); None when not applicable.
    processor_res: int | None = None
    threshold_a: float | None = None
    threshold_b: float | None = None


def _lora_text(lora: LoraChoice) -> str:
    return f"{lora.name}:{lora.weight:g}"


@dataclass
class GenerationRequest:
    """One generation, as the Generate tab, `generate` and /generate take it: each setting declared once
    (studio.fields), so the form, the flags and the API parameters are made from these declarations."""

    prompt: str = setting(label="Prompt", lines=3, help="<lora:name:weight> tags apply LoRAs too")
    model: str = setting("", label="Base model", names="base model",
                         help="builtin, a model in models/base/, or a hub id (owner/name); default: the studio's")
    negative_prompt: str = setting("", label="Negative prompt", lines=2, flag="--negative")
    seed: int = setting(-1, label="Seed", help="-1: random (the seed used is said)")
    steps: int = setting(20, label="Steps", span=(1, 150, 1))
    cfg: float | None = setting(None, label="CFG scale", span=(0, 30, 0.5), unset=0,
                                help="0: the family's (7 for SD, 1 for FLUX.1); FLUX.1 above 1: real CFG with the "
                                     "negative prompt, at twice the time")
    width: int | None = setting(None, label="Width", unset=0, help="0: the model's native size")
    height: int | None = setting(None, label="Height", unset=0, help="multiples of 8; 0: the model's native size")
    batch_size: int = setting(1, label="Batch size", span=(1, 8, 1), flag="--batch",
                              help="pictures per prompt (seeds seed, seed+1, ...)")
    sampler: str | None = setting(None, label="Sampler", names="sampler",
                                  help="A1111/Forge name; default: the family's (Euler a; Euler for FLUX.1)")
    # FLUX.1-dev's distilled guidance (Forge's "Distilled CFG Scale"); None: 3.5. Schnell takes none.
    distilled_cfg: float | None = setting(None, label="Distilled CFG Scale", span=(0, 10, 0.1), unset=0,
                                          group="FLUX.1", help="FLUX.1-dev's guidance input, as Forge's; 0: 3.5")
    max_sequence_length: int | None = setting(None, label="T5 prompt tokens", unset=0, group="FLUX.1",
                                              help="FLUX.1: 0 is 512 for dev, 256 for schnell")
    loras: list[LoraChoice] = setting(default_factory=list, label="LoRAs", flag="--lora", names="LoRA",
                                      parse=parse_lora, show=_lora_text,
                                      help="NAME:WEIGHT, a LoRA in models/lora/ (or a file) with its weight")
    # textual-inversion files; their names are prompt tokens
    embeddings: list[str] = setting(default_factory=list, label="Embeddings", flag="--embedding", names="embedding",
                                    help="textual inversions; use their names in the prompt")
    # saved prompt pieces (workspace/styles.csv, A1111's format), added to the prompts in order
    styles: list[str] = setting(default_factory=list, label="Styles", flag="--style", names="style",
                                help="saved prompt pieces, added to the prompt and negative prompt in order")
    init_image: object | None = setting(None, label="Picture", group="img2img", flag="--init-image",
                                        parse=open_picture, help="img2img (or inpainting) from this picture")
    strength: float = setting(0.75, label="Denoising strength", span=(0.05, 1, 0.05), group="img2img",
                              help="img2img and inpainting")
    controls: list[ControlUnit] = field(default_factory=list)  # made by Face to animal (not a setting)
    # A1111: Balanced | My prompt is more important | ControlNet is more important (with `controls`)
    control_mode: str = "Balanced"
    save: bool = True  # write PNGs to workspace/outputs/<day>/
    # Inpainting (with init_image): white in the mask is repainted, and every pixel outside the blurred mask keeps
    # the picture's bytes. The result has the picture's size; width/height are the working size (see plan_inpaint).
    mask_image: object | None = setting(None, label="Mask", group="img2img", flag="--mask", parse=open_picture,
                                        shown_with="init_image",
                                        help="with a picture: inpaint where this mask is white (the picture's size)")
    mask_blur: int = setting(4, label="Mask blur", span=(0, 64, 1), group="inpaint",
                             help="soft edge of the inpainted region, pixels")
    inpaint_area: str = setting("whole", label="Inpaint area", choices=INPAINT_AREAS, group="inpaint",
                                help="the whole picture, or only the mask's box (plus padding) at the model's size")
    inpaint_padding: int = setting(32, label="Only masked padding, pixels", span=(0, 256, 4), group="inpaint",
                                   help="pixels around the mask's box")
    # Hires fix (txt2img), as A1111: a first pass at width x height, the picture upscaled by hires_scale, then an
    # img2img pass over it at hires_strength with the same seeds. 1 is off.
    hires_scale: float = setting(1.0, label="Upscale by (1: off)", span=(1, 4, 0.05), group="hires fix",
                                 help="hires fix: upscale the first pass by this, then draw over it again")
    hires_steps: int = setting(0, label="Hires steps (0: as Steps)", span=(0, 150, 1), group="hires fix",
                               help="denoising steps of the second pass")
    hires_upscaler: str = setting("Lanczos", label="Hires upscaler", names="upscaler", group="hires fix",
                                  help="Lanczos, or a model in models/upscale/")
    hires_strength: float = setting(0.7, label="Hires denoising strength", span=(0.05, 1, 0.05), group="hires fix",
                                    help="A1111's default for the second pass")

    def check(self) -> "GenerationRequest":
        """Raise ValueError naming the first bad argument and its value."""
        if not self.prompt or not self.prompt.strip():
            raise ValueError("`prompt` is empty")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and (v % 8 or not 64 <= v <= 4096):
                raise ValueError(f"`height` and `width` have to be divisible by 8 and between 64 and 4096 but "
                                 f"`{name}` is {v}")
        if not 1 <= self.steps <= 150:
            raise ValueError(f"`steps` must be between 1 and 150 but is {self.steps}")
        if self.cfg is not None and not 0 <= self.cfg <= 30:
            raise ValueError(f"`cfg` must be between 0 and 30 but is {self.cfg}")
        if self.distilled_cfg is not None and not 0 <= self.distilled_cfg <= 30:
            raise ValueError(f"`distilled_cfg` must be between 0 and 30 but is {self.distilled_cfg}")
        if self.max_sequence_length is not None and not 16 <= self.max_sequence_length <= 512:
            raise ValueError(f"`max_sequence_length` must be between 16 and 512 but is {self.max_sequence_length}")
        if not 1 <= self.batch_size <= 16:
            raise ValueError(f"`batch_size` must be between 1 and 16 but is {self.batch_size}")
        if self.seed != -1 and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"`seed` must be -1 (random) or between 0 and {MAX_SEED} but is {self.seed}")
        if self.sampler is not None:
            check_sampler(self.sampler)
        if self.init_image is not None and not 0 < self.strength <= 1:
            raise ValueError(f"`strength` must be in (0, 1] but is {self.strength}")
        if self.init_image is not None and int(self.steps * self.strength) < 1:
            raise ValueError(f"`steps` {self.steps} at `strength` {self.strength:g} runs no denoising step "
                             f"(int({self.steps} x {self.strength:g}) = 0): raise the steps or the strength")
        for lora in self.loras:
            if not -4 <= lora.weight <= 4:
                raise ValueError(f"LoRA weight for {lora.name!r} must be between -4 and 4 but is {lora.weight}")
        for unit in self.controls:
            if not 0 <= unit.weight <= 2:
                raise ValueError(f"ControlNet weight for {unit.model!r} must be between 0 and 2 but is {unit.weight}")
            if not 0 <= unit.guidance_start < unit.guidance_end <= 1:
                raise ValueError(f"ControlNet guidance start/end must satisfy 0 <= start < end <= 1 but are "
                                 f"{unit.guidance_start} and {unit.guidance_end}")
        if self.control_mode not in CONTROL_MODES:
            raise ValueError(f"`control_mode` must be one of {', '.join(CONTROL_MODES)} but is {self.control_mode!r}")
        self._check_inpaint()
        self._check_hires()
        return self

    def _check_inpaint(self) -> None:
        if not 0 <= self.mask_blur <= 64:
            raise ValueError(f"`mask_blur` must be between 0 and 64 but is {self.mask_blur}")
        if self.inpaint_area not in INPAINT_AREAS:
            raise ValueError(f"`inpaint_area` must be one of {', '.join(INPAINT_AREAS)} but is {self.inpaint_area!r}")
        if not 0 <= self.inpaint_padding <= 256:
            raise ValueError(f"`inpaint_padding` must be between 0 and 256 but is {self.inpaint_padding}")
        if self.mask_image is None:
            return
        if self.init_image is None:
            raise ValueError("`mask_image` needs `init_image`: the picture to inpaint")
        if self.mask_image.size != self.init_image.size:
            raise ValueError(f"`mask_image` must have the picture's size {self.init_image.width}x"
                             f"{self.init_image.height} but is {self.mask_image.width}x{self.mask_image.height}")
        if (self.width is None) != (self.height is None):
            raise ValueError(f"to inpaint give both `width` and `height` (the working size) or neither, but they are "
                             f"{self.width} and {self.height}")
        if self.controls:
            raise ValueError("`mask_image` cannot be combined with ControlNet `controls`: inpaint without them")

    def _check_hires(self) -> None:
        from studio.generate.upscale import check_upscaler_name

        if not 1 <= self.hires_scale <= 4:
            raise ValueError(f"`hires_scale` must be between 1 (off) and 4 but is {self.hires_scale}")
        if not 0 <= self.hires_steps <= 150:
            raise ValueError(f"`hires_steps` must be between 0 (as many as `steps`) and 150 but is {self.hires_steps}")
        if not 0 < self.hires_strength <= 1:
            raise ValueError(f"`hires_strength` must be in (0, 1] but is {self.hires_strength}")
        if self.hires_scale == 1:
            return
        self.hires_upscaler = check_upscaler_name(self.hires_upscaler, "hires_upscaler")
        hires_schedule(self.hires_steps or self.steps, self.hires_strength)  # a schedule that can be built
        if self.init_image is not None:
            raise ValueError(f"`hires_scale` {self.hires_scale:g} is for txt2img, but `init_image` is given: upscale "
                             f"the picture instead")
        if self.controls:
            raise ValueError(f"`hires_scale` {self.hires_scale:g} cannot be combined with ControlNet `controls`")


CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")


@dataclass
class GeneratedImage:
    image: object  # PIL.Image
    seed: int
    parameters: str  # A1111 "parameters" text, also stored in the PNG
    path: Path | None  # where it was saved, if saved


@dataclass
class GenerationResult:
    images: list[GeneratedImage]
    request: GenerationRequest  # as run: model resolved, seed, size (hires fix: the first pass's), sampler, guidance
    seconds: float
    notes: list[str] = field(default_factory=list)  # what was decided on the way, or asked for and not done, in words
