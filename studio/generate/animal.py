"""Face to animal: animal presets and the transform (face, controls, ControlNet img2img over seeds, paste-back)."""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image, ImageOps

from studio import fileio
from studio.fields import setting
from studio.faces.control import FACE_MODULES, ControlOptions, check_module, control_image, is_blank
from studio.generate.request import CONTROL_MODES, MAX_SEED, ControlUnit, GenerationRequest
from studio.generate.parameters import save_png
from studio.generate.pictures import face_square, fit_size, open_picture, paste_feathered, side_by_side
from studio.generate.run import generate
from studio.generate.samplers import check_sampler
from studio.models import families
from studio.progress import Cancelled, ProgressFn, StopFn, never_stop, no_progress

PREVIEW_SIZE = 512  # the model's size when a preview has none (SD 1.5's native size)
NO_CONTROLNET = "none"  # a control whose image is previewed but not sent to a ControlNet (plain img2img)
SHEET_MIN_HEIGHT = 256  # the side-by-side sheet of a small model's pictures is scaled up to be seen
_NEGATIVE = ("human, person, human face, human skin, hair, glasses, text, watermark, signature, blurry, lowres, "
             "deformed, bad anatomy, extra eyes")


@dataclass(frozen=True)
class AnimalPreset:
    name: str
    prompt: str  # template: {breed} becomes the chosen breed, or nothing
    negative_prompt: str
    breeds: tuple[str, ...] = ()


# Seed 003's prompt ("dog, close up, face portrait") with a breed slot; every preset follows its pattern.
ANIMALS: dict[str, AnimalPreset] = {p.name: p for p in (
    AnimalPreset("dog", "{breed} dog, close up, face portrait", _NEGATIVE, (
        "golden retriever", "labrador retriever", "shiba inu", "pug", "corgi", "siberian husky", "dalmatian",
        "french bulldog", "beagle", "poodle", "border collie", "german shepherd", "chihuahua", "samoyed",
        "dachshund", "pomeranian")),
    AnimalPreset("cat", "{breed} cat, close up, face portrait", _NEGATIVE + ", dog", (
        "tabby", "siamese", "maine coon", "persian", "british shorthair", "ragdoll", "sphynx", "black", "calico")),
    AnimalPreset("fox", "{breed} fox, close up, face portrait", _NEGATIVE + ", dog", ("red", "arctic", "fennec")),
    AnimalPreset("bear", "{breed} bear, close up, face portrait", _NEGATIVE, (
        "brown", "polar", "panda", "black", "grizzly")),
    AnimalPreset("rabbit", "{breed} rabbit, close up, face portrait", _NEGATIVE, (
        "white", "lop-eared", "dutch", "angora")),
    AnimalPreset("lion", "{breed} lion, close up, face portrait", _NEGATIVE, ("male", "white", "young")),
    AnimalPreset("tiger", "{breed} tiger, close up, face portrait", _NEGATIVE, ("bengal", "white", "siberian")),
    AnimalPreset("wolf", "{breed} wolf, close up, face portrait", _NEGATIVE + ", dog", ("grey", "arctic", "timber")),
)}


def animal_prompt(animal: str, breed: str = "") -> tuple[str, str]:
    """The preset (prompt, negative prompt) for `animal`, with `breed` (any text; the preset's list is a menu)."""
    preset = ANIMALS.get(animal)
    if preset is None:
        raise ValueError(f"`animal` {animal!r} is unknown; valid animals are: {', '.join(ANIMALS)}")
    return " ".join(preset.prompt.format(breed=breed.strip()).split()), preset.negative_prompt


@dataclass
class ControlChoice:
    """One control: which preprocessor, which ControlNet gets its image, and how strongly (each setting declared
    once: the Face to animal tab offers them per module, as <module>_<field>)."""

    module: str = "mediapipe_face"  # mediapipe_face | openpose_face | canny
    model: str = setting("", label="ControlNet", names="ControlNet", flag="--controlnet",
                         help="default: the one that fits the base model; none: the control image is only previewed")
    weight: float = setting(1.0, label="Weight", span=(0, 2, 0.05), flag="--control-scale",
                            help="ControlNet weight (conditioning scale)")
    guidance_start: float = setting(0.0, label="Guidance start", span=(0, 1, 0.05))
    guidance_end: float = setting(1.0, label="Guidance end", span=(0, 1, 0.05))


def _preset_texts() -> tuple[set, set]:
    """Every preset's prompt (without a breed) and negative prompt."""
    return {animal_prompt(name)[0] for name in ANIMALS}, {preset.negative_prompt for preset in ANIMALS.values()}


@dataclass
class AnimalRequest:
    """A face photo as an animal, each setting declared once (studio.fields): the Face to animal tab, `animal` and
    /animal are made from these declarations (and ControlOptions' and ControlChoice's)."""

    image: object = setting(label="Face photo", parse=open_picture)
    animal: str = setting("dog", label="Animal", choices=tuple(ANIMALS))
    breed: str = setting("", label="Breed", help="e.g. 'golden retriever' (any text; each animal has a list)")
    # "" = the animal's preset template with the breed; a preset's own text stands for it too (__post_init__)
    prompt: str = setting("", label="Prompt", lines=2, help="filled from the animal and breed; edit freely")
    negative_prompt: str | None = setting(None, label="Negative prompt", lines=2, flag="--negative",
                                          help="default: the animal's")
    controls: list[ControlChoice] = field(default_factory=lambda: [ControlChoice()])  # settings of their own
    options: ControlOptions = field(default_factory=ControlOptions)  # settings of their own
    model: str = setting("", label="Base model", names="base model", help="default: the studio's default model")
    task: str = setting("img2img", label="Start from", choices=("img2img", "txt2img"),
                        help="img2img keeps the photo's colours; txt2img follows the controls only")
    strength: float = setting(0.75, label="Denoising strength", span=(0.05, 1, 0.05), help="img2img")
    control_mode: str = setting("ControlNet is more important", label="Control mode", choices=CONTROL_MODES,
                                help="seed 003's choice: ControlNet is more important")
    seed: int = setting(-1, label="Seed", help="-1: random (the seeds used are said)")
    n_seeds: int = setting(1, label="Seeds (seed, seed+1, ...)", span=(1, 8, 1), help="results for seed, seed+1, ...")
    steps: int = setting(20, label="Steps", span=(1, 150, 1))
    sampler: str | None = setting(None, label="Sampler", names="sampler",
                                  help="default: the model's (seed 003's DPM++ 2S a for SD; Euler for FLUX.1)")
    cfg: float | None = setting(None, label="CFG scale", unset=0, span=(0, 30, 0.5),
                                help="0: the family's (7; 1 for FLUX.1)")
    size: int | None = setting(None, label="Size (longer side)", unset=0,
                               help="of the picture the model works on; 0: the model's native size")
    crop_to_face: bool = setting(False, label="Crop to the face first", flag="--crop-face",
                                 help="transform a square around the face instead of the whole photo")
    paste_back: bool = setting(True, label="Paste back into the photo",
                               help="with a face crop: the result goes back into the whole photo")
    face_index: int = setting(0, label="Face", help="which face when there are several; 0: the largest")
    max_input_side: int = setting(2048, label="Largest photo side", advanced=True,
                                  help="larger photos are scaled down to this before anything else")
    save: bool = True
    out_dir: Path | None = None  # where PNGs go; None = workspace/outputs/<day>/

    def __post_init__(self):
        # A prompt or negative prompt left at an animal's preset text (a form an animal's choice filled, or an API
        # call that set only the animal and breed) stands for the chosen animal's own.
        prompts, negatives = _preset_texts()
        if (self.prompt or "").strip() in prompts:
            self.prompt = ""
        if self.negative_prompt in negatives:
            self.negative_prompt = None

    def check(self) -> "AnimalRequest":
        """Raise ValueError naming the first bad argument and its value."""
        if not isinstance(self.image, Image.Image):
            raise ValueError(f"`image` must be a picture but is {type(self.image).__name__}")
        animal_prompt(self.animal, self.breed)
        if not self.controls:
            raise ValueError("`controls` is empty: choose at least one of mediapipe_face, openpose_face, canny")
        for c in self.controls:
            check_module(c.module)
        self.options.check()
        if self.task not in ("img2img", "txt2img"):
            raise ValueError(f"`task` must be img2img or txt2img but is {self.task!r}")
        if not 1 <= self.n_seeds <= 16:
            raise ValueError(f"`n_seeds` must be between 1 and 16 but is {self.n_seeds}")
        if self.seed != -1 and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"`seed` must be -1 (random) or between 0 and {MAX_SEED} but is {self.seed}")
        if self.size is not None and not 64 <= self.size <= 2048:
            raise ValueError(f"`size` must be between 64 and 2048 but is {self.size}")
        if self.face_index < 0:
            raise ValueError(f"`face_index` must be 0 or more but is {self.face_index}")
        if self.max_input_side < 256:
            raise ValueError(f"`max_input_side` must be at least 256 but is {self.max_input_side}")
        if self.sampler is not None:
            check_sampler(self.sampler)
        return self


class NoFaceFound(ValueError):
    """No face where one is needed; `photo` is the picture as looked at, so the UI can show it."""

    def __init__(self, message: str, photo: Image.Image):
        super().__init__(message)
        self.photo = photo


@dataclass
class ControlPreview:
    """What the model will see: the photo, its faces, the region transformed and the control images."""

    photo: Image.Image  # the input, upright, RGB, scaled down if it was huge
    faces: list  # list[Face] in photo coordinates: the chosen one first, then the others largest first
    face: object | None  # the chosen Face
    crop_box: tuple[int, int, int, int] | None  # region of photo transformed; None = the whole photo
    work: Image.Image  # that region at the model's size
    controls: list[tuple[ControlChoice, Image.Image]]  # each control with its image, at the model's size
    notes: list[str]  # what was decided for the user (scaled down, which face...)


@dataclass
class AnimalImage:
    image: Image.Image  # the result; pasted back into the photo when cropping with paste_back
    raw: Image.Image  # what the model made, at the model's size
    seed: int
    parameters: str
    path: Path | None


@dataclass
class AnimalResult:
    preview: ControlPreview
    images: list[AnimalImage]
    sheet: Image.Image  # original | control image(s) | one result per seed
    sheet_path: Path | None
    prompt: str
    negative_prompt: str
    seconds: float
    notes: list[str] = field(default_factory=list)  # the preview's, and what the studio did other than asked
    control_seconds: float = 0.0  # finding the face and drawing the control images
    generation_seconds: list[float] = field(default_factory=list)  # each seed's generation, model loading included


def preview_controls(request: AnimalRequest) -> ControlPreview:
    """Find the face and make the control images, without loading any model. Raises NoFaceFound when a face
    module or the face crop needs a face and there is none."""
    from studio.faces import detect_faces

    request.check()
    notes = []
    # 1. Upright RGB, huge photos scaled down first (detection and preprocessors would only be slow on them).
    photo = ImageOps.exif_transpose(request.image).convert("RGB")
    if max(photo.size) > request.max_input_side:
        before = photo.size
        photo.thumbnail((request.max_input_side, request.max_input_side), Image.Resampling.LANCZOS)
        notes.append(f"photo scaled down from {before[0]}x{before[1]} to {photo.width}x{photo.height}")

    # 2. Faces, largest first; the chosen one.
    modules = [c.module for c in request.controls]
    needs_face = request.crop_to_face or any(m in FACE_MODULES for m in modules)
    faces = detect_faces(photo, encode=False) if needs_face else []
    faces = [f for f in faces if f.is_candidate] or faces  # weak detections (a badge, a pattern) are not faces
    if needs_face and not faces:
        needing = [m for m in modules if m in FACE_MODULES] or ["crop to face"]
        raise NoFaceFound(f"no face found in the photo, and {', '.join(needing)} needs one; use the canny control "
                          f"(edges of the whole picture) without crop to face instead", photo)
    face = None
    if faces:
        if request.face_index >= len(faces):
            raise ValueError(f"`face_index` is {request.face_index} but only {len(faces)} face(s) were found "
                             f"(0 is the largest)")
        face = faces[request.face_index]
        faces = [face] + [f for f in faces if f is not face]
        if len(faces) > 1:
            notes.append(f"{len(faces)} faces found; using face {request.face_index} (0 is the largest)")

    # 3. The region to transform, at the model's size.
    crop_box = face_square(face.box, photo.size) if request.crop_to_face else None
    region = photo.crop(crop_box) if crop_box else photo
    work_size = fit_size(region.size, request.size or PREVIEW_SIZE)
    offset = crop_box[:2] if crop_box else (0, 0)
    region_faces = [f.scaled(1.0, offset) for f in faces]

    # 4. One control image per control, made from the full-resolution region.
    controls = []
    for choice in request.controls:
        image = control_image(choice.module, region, region_faces, work_size, request.options)
        if choice.module == "mediapipe_face" and is_blank(image):
            raise NoFaceFound(f"MediaPipe found no face (min confidence {request.options.min_confidence:g}); lower "
                              f"the confidence, or use openpose_face or canny instead", photo)
        controls.append((choice, image))
    work = region.resize(work_size, Image.Resampling.LANCZOS)
    return ControlPreview(photo, faces, face, crop_box, work, controls, notes)


@dataclass
class AnimalPlan:
    """What a transform will do, decided before the first seed: the request with the model's size and sampler, the
    control images, the ControlNet units that will run, the prompts, and what differs from what was asked."""

    request: AnimalRequest
    preview: ControlPreview
    units: list[ControlUnit]
    prompt: str
    negative_prompt: str
    notes: list[str]
    seconds: float  # finding the face and drawing the control images


def plan_animal(studio, request: AnimalRequest) -> AnimalPlan:
    """Check `request` against the model it names (loading only what its size needs) and make the control images.
    Raises NoFaceFound as preview_controls does, ValueError for what cannot run."""
    from studio.models.builtin import HINTS

    started = time.perf_counter()
    request = replace(request, model=request.model or studio.store.default_model).check()
    ref = studio.store.resolve(request.model)
    family = ref.family
    if request.size is None:
        request = replace(request, size=native_size(studio, request.model))
    if request.sampler is None and family is not None:
        request = replace(request, sampler=family.animal_sampler)
    preview = preview_controls(request)
    notes = list(preview.notes)
    default_prompt, default_negative = animal_prompt(request.animal, request.breed)
    hints = HINTS.get(ref.id.split(":", 1)[1], {}) if ref.kind == "builtin" else {}
    if hints and not request.prompt.strip():
        if request.animal == "dog" and not request.breed and "animal_prompt" in hints:
            default_prompt, default_negative = hints["animal_prompt"], ""
        else:
            notes.append(f"{ref.id} learnt only cartoon dog faces: a {request.breed} {request.animal} comes out as "
                         f"a blur of colour; a real model draws it")
    prompt = request.prompt.strip() or default_prompt
    negative = default_negative if request.negative_prompt is None else request.negative_prompt
    units = []
    for choice, image in preview.controls:
        model = choice.model.strip() or default_controlnet(studio, request.model, choice.module)
        if model == NO_CONTROLNET:
            if not choice.model.strip():  # the user asked for a control; say why none is used
                notes.append(f"no {choice.module} ControlNet fits {_model_words(studio, request.model, family)}: "
                             f"the control image is shown, the picture is plain img2img from the photo")
            continue
        threshold_a, threshold_b = request.options.thresholds(choice.module)
        units.append(ControlUnit(model, image, choice.module, choice.weight, choice.guidance_start,
                                 choice.guidance_end, request.options.processor_res, threshold_a, threshold_b))
    if not units and request.task == "txt2img":
        why = "; ".join(n for n in notes if "ControlNet fits" in n) or "every control's model is 'none'"
        raise ValueError(f"`task` txt2img needs a ControlNet, and none is used ({why}): nothing would follow the "
                         f"face; use img2img or choose a ControlNet that fits the model")
    return AnimalPlan(request, preview, units, prompt, negative, notes, time.perf_counter() - started)


def face_to_animal(studio, request: AnimalRequest, *, progress: ProgressFn = no_progress,
                   should_stop: StopFn = never_stop) -> AnimalResult:
    """Transform the face in `request.image` into the animal over `n_seeds` seeds; save PNGs with parameters."""
    started = time.perf_counter()
    # 1. Check inputs, look at the photo, decide the ControlNets.
    plan = plan_animal(studio, request)
    request, preview, units, prompt, negative, notes = (plan.request, plan.preview, plan.units, plan.prompt,
                                                        plan.negative_prompt, plan.notes)
    seed = request.seed if request.seed != -1 else random.randint(0, MAX_SEED)
    seeds = [(seed + i) % (MAX_SEED + 1) for i in range(request.n_seeds)]

    # 2. One generation per seed, so a seed gives the same animal whatever the batch.
    images, generation_seconds = [], []
    out_dir = Path(request.out_dir or studio.settings.outputs_dir / dt.date.today().isoformat())
    for i, s in enumerate(seeds):
        if should_stop():
            raise Cancelled("face to animal cancelled")
        generation = GenerationRequest(
            prompt=prompt, model=request.model, negative_prompt=negative, seed=s, steps=request.steps,
            cfg=request.cfg, width=preview.work.width, height=preview.work.height, sampler=request.sampler,
            init_image=preview.work if request.task == "img2img" else None, strength=request.strength,
            controls=units, control_mode=request.control_mode, save=False,
        )
        result = generate(studio, generation, should_stop=should_stop,
                          progress=lambda f, m, i=i, s=s: progress((i + f) / len(seeds), f"seed {s}: {m}"))
        notes += [n for n in result.notes if n not in notes]
        generation_seconds.append(result.seconds)
        made = result.images[0]
        # 3. Back into the photo when a face crop was transformed, then saved with its parameters.
        image = made.image
        if preview.crop_box and request.paste_back:
            image = paste_feathered(preview.photo, made.image, preview.crop_box)
        path = save_png(image, made.parameters, out_dir, s) if request.save else None
        images.append(AnimalImage(image, made.image, s, made.parameters, path))

    # 4. Original | controls | results, side by side.
    original = preview.photo if preview.crop_box and request.paste_back else preview.work
    sheet = side_by_side([original] + [im for _, im in preview.controls] + [a.image for a in images],
                         height=max(preview.work.height, SHEET_MIN_HEIGHT))
    sheet_path = None
    if request.save:
        sheet_path = fileio.reserve_unique(out_dir, f"{seeds[0]}-{request.animal}-sheet", ".png")
        with fileio.fill_reserved(sheet_path) as tmp:
            sheet.save(tmp, format="PNG")
    progress(1.0, "done")
    return AnimalResult(preview, images, sheet, sheet_path, prompt, negative, time.perf_counter() - started, notes,
                        plan.seconds, generation_seconds)


def native_size(studio, model_id: str) -> int:
    """The picture side a base model was trained at (512 for SD 1.5, 1024 for SDXL and FLUX.1, 64 for the
    builtins)."""
    with studio.cache.pipeline(model_id) as pipe:
        return families.of(pipe).native_size(pipe)


def default_controlnet(studio, model_id: str, module: str) -> str:
    """The ControlNet a `module` control uses when none is named: the tiny one for builtin:tiny; the family's hub
    model for the module where one is published (ModelFamily.default_controlnets: seed 003's for SD 1.x); else
    NO_CONTROLNET (plain img2img, said in the result's notes), as for the other builtins and FLUX.1."""
    ref = studio.store.resolve(model_id)
    module = check_module(module)
    if ref.id == "builtin:tiny":
        return "builtin:tiny-controlnet"
    if ref.kind == "builtin" or ref.family is None:
        return NO_CONTROLNET
    return ref.family.default_controlnets.get(module, NO_CONTROLNET)


def _model_words(studio, model_id: str, family) -> str:
    ref = studio.store.resolve(model_id)
    if ref.kind == "builtin":
        return f"{ref.id} (the builtin ControlNet is made for builtin:tiny)"
    return f"{ref.id} ({family.label if family else 'its family'})"
