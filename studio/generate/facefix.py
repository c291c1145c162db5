"""Face fix, ADetailer's way: find each face, re-draw it at the model's own size (with the subject's LoRA), paste it
back feathered, and measure each face's sim-score before and after, so the user sees whether the fix kept the
likeness."""

from __future__ import annotations

import datetime as dt
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from studio.fields import setting
from studio.generate.parameters import add_fields, format_parameters, parse_parameters, save_png
from studio.generate.pictures import open_picture
from studio.generate.request import MAX_SEED, GenerationRequest, LoraChoice, parse_lora
from studio.generate.run import generate
from studio.generate.samplers import check_sampler
from studio.progress import Cancelled, ProgressFn, StopFn, never_stop, no_progress

DETECTOR = "dlib_hog_face"  # what `ADetailer model` records: face_recognition's dlib HOG face detector
# dlib's box runs from the eyebrows to the chin (ADetailer's YOLO boxes take the whole head); each side grows by
# this share of the box so forehead, hairline and jaw are re-drawn with the face.
FACE_GROWTH = 0.15
# Keys of the one inpaint behind each face: they describe the face's working crop, not the picture, so they are
# left out of the picture's parameters (the ADetailer keys say the same in its own terms).
_INPAINT_KEYS = ("Denoising strength", "Mask blur", "Inpaint area", "Masked area padding")


@dataclass
class FaceFixRequest:
    """ADetailer's settings (same names, same defaults) for the studio's face detector and inpainting; each setting
    declared once (studio.fields): the Clean-up accordion's Face fix, `fix-faces` and /fix_faces are made from them."""

    image: object = setting(label="Picture", parse=open_picture,
                            help="the picture (its PNG parameters give prompt and seed)")
    prompt: str = setting("", label="Face prompt", help="empty: the picture's own; [PROMPT] stands for it")
    negative_prompt: str | None = setting(None, label="Face negative prompt", flag="--negative", unset="",
                                          help="empty: the picture's own")
    model: str = setting("", label="Base or inpainting model", names="base model",
                         help="default: the studio's default model; a dedicated inpainting checkpoint works too")
    # beside any `<lora:...>` tags of the prompt
    loras: list[LoraChoice] = setting(default_factory=list, label="LoRAs", flag="--lora", names="LoRA",
                                      parse=parse_lora, show=lambda lc: f"{lc.name}:{lc.weight:g}",
                                      help="NAME:WEIGHT, a LoRA in models/lora/ (or a file) with its weight")
    embeddings: list[str] = setting(default_factory=list, label="Embeddings", flag="--embedding", names="embedding")
    seed: int = setting(-1, label="Seed", help="-1: the picture's own seed when its parameters hold one, else random")
    steps: int = setting(20, label="Steps", span=(1, 150, 1))
    cfg: float | None = setting(None, label="CFG scale", unset=0, span=(0, 30, 0.5),
                                help="0: the family's (7 for SD, 1 for FLUX.1)")
    sampler: str | None = setting(None, label="Sampler", names="sampler",
                                  help="default: the family's (Euler a for SD, Euler for FLUX.1)")
    strength: float = setting(0.4, label="Denoising strength", span=(0.05, 1, 0.05), help="ADetailer's 0.4")
    confidence: float = setting(0.3, label="Detection confidence", span=(0, 2, 0.05),
                                help="the lowest detection score that counts as a face (a real face scores about 1)")
    dilate: int = setting(4, label="Mask dilate, pixels", span=(0, 64, 1),
                          help="ADetailer's dilate erode: pixels the grown face box is widened by")
    mask_blur: int = setting(4, label="Mask blur", span=(0, 64, 1), help="soft edge of the paste-back, in pixels")
    only_masked: bool = setting(True, label="Only the face's box",
                                help="re-draw the face's box (plus padding) at the working size, not the whole picture")
    padding: int = setting(32, label="Inpaint padding, pixels", span=(0, 256, 4),
                           help="ADetailer's inpaint padding, around the face box")
    size: int | None = setting(None, label="Working size", unset=0,
                               help="only the face's box: the square working side; 0: the model's native size")
    max_faces: int = setting(0, label="Faces", help="0: every face found; N: the N largest (ADetailer's top k)")
    # Not settings: what the picture and the reference the user names give
    reference: np.ndarray | None = None  # (K, 128) the subject's encodings; None: each face against itself before
    reference_name: str = ""  # how the report names the reference ("dataset me (12 faces)")
    parameters: str = ""  # the picture's own parameters text: its prompt, seed and settings carry over
    save: bool = True
    out_dir: Path | None = None  # None: workspace/outputs/<day>/

    def check(self) -> "FaceFixRequest":
        if not isinstance(self.image, Image.Image):
            raise ValueError(f"`image` must be a picture but is {type(self.image).__name__}")
        if not 0 < self.strength <= 1:
            raise ValueError(f"`strength` must be in (0, 1] but is {self.strength}")
        if not 0 <= self.confidence <= 3:
            raise ValueError(f"`confidence` must be between 0 and 3 (a face scores about 1) but is {self.confidence}")
        if not 0 <= self.dilate <= 128:
            raise ValueError(f"`dilate` must be between 0 and 128 but is {self.dilate}")
        if not 0 <= self.max_faces <= 32:
            raise ValueError(f"`max_faces` must be between 0 (all) and 32 but is {self.max_faces}")
        if self.size is not None and (self.size % 8 or not 64 <= self.size <= 2048):
            raise ValueError(f"`size` must be a multiple of 8 between 64 and 2048 but is {self.size}")
        if self.seed != -1 and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"`seed` must be -1 or between 0 and {MAX_SEED} but is {self.seed}")
        if self.reference is not None and np.asarray(self.reference).reshape(-1, 128).shape[0] == 0:
            raise ValueError("`reference` holds no encodings: the reference pictures have no face")
        if self.sampler is not None:
            check_sampler(self.sampler)
        return self


@dataclass
class FixedFace:
    index: int  # 0 is the largest face
    box: tuple[int, int, int, int]  # as detected (left, top, right, bottom)
    mask_box: tuple[int, int, int, int]  # grown and dilated: what was re-drawn (the soft edge reaches a little past)
    detection_score: float
    sim_before: float  # sim-score (lower is more alike) against the reference, or 0.0 against itself
    sim_after: float  # the same place after the fix, against the same
    found_after: bool  # the detector still finds a face there

    @property
    def line(self) -> str:
        found = "" if self.found_after else " (no face detected there any more)"
        return f"face {self.index}: sim-score {self.sim_before:.3f} -> {self.sim_after:.3f}{found}"


@dataclass
class FaceFixResult:
    image: Image.Image  # the picture with every face re-drawn; the input unchanged when no face was found
    faces: list[FixedFace]
    against: str  # what the sim-scores compare with
    parameters: str
    path: Path | None  # None when nothing was saved (no face, or save=False)
    message: str  # one sentence for the user: what was done, or why nothing was
    seconds: float


def fix_faces(studio, request: FaceFixRequest, *, progress: ProgressFn = no_progress,
              should_stop: StopFn = never_stop) -> FaceFixResult:
    """Re-draw every face in `request.image` (largest first), each with an "only masked" inpaint of its grown box;
    the output of one face is the input of the next, as in ADetailer."""
    from studio.faces import detect_faces

    started = time.perf_counter()
    # 1. Check inputs; the picture's own prompt, negative prompt and seed unless the request names its own.
    request.check()
    picture = ImageOps.exif_transpose(request.image).convert("RGB")
    own = parse_parameters(request.parameters) if request.parameters.strip() else {}
    prompt = _face_prompt(request.prompt, own.get("prompt", ""))
    negative = own.get("negative_prompt", "") if request.negative_prompt is None else request.negative_prompt
    seed = request.seed
    if seed == -1:
        seed = int(own["Seed"]) if own.get("Seed", "").isdigit() else random.randint(0, MAX_SEED)
    against = request.reference_name or ("the reference" if request.reference is not None else
                                         "the face before the fix")

    # 2. The faces, largest first.
    progress(0.0, "finding faces")
    faces = [f for f in detect_faces(picture) if f.score >= request.confidence]
    faces = faces[:request.max_faces or None]
    if not faces:
        message = (f"no face found in the {picture.width}x{picture.height} picture (detection score at least "
                   f"{request.confidence:g}); nothing was changed")
        return FaceFixResult(picture, [], against, request.parameters, None, message,
                             time.perf_counter() - started)

    # 3. One inpaint per face, each starting from the last one's result.
    current, made = picture, None
    boxes = [mask_box(f.box, picture.size, request.dilate) for f in faces]
    for i, (face, box) in enumerate(zip(faces, boxes)):
        if should_stop():
            raise Cancelled("face fix cancelled")
        mask = Image.new("L", picture.size, 0)
        mask.paste(255, box)
        size = request.size if request.only_masked else None  # the whole picture is worked on at its own size
        made = generate(studio, GenerationRequest(
            prompt=prompt, model=request.model, negative_prompt=negative, seed=seed, steps=request.steps,
            cfg=request.cfg, sampler=request.sampler, loras=list(request.loras), embeddings=list(request.embeddings),
            init_image=current, mask_image=mask, mask_blur=request.mask_blur, strength=request.strength,
            inpaint_area="only masked" if request.only_masked else "whole", inpaint_padding=request.padding,
            width=size, height=size, save=False,
        ), should_stop=should_stop, progress=lambda f, m, i=i: progress((i + f) / (len(faces) + 1), f"face {i}: {m}"))
        current = made.images[0].image

    # 4. Sim-scores at each face's place, before and after, and whether a face is still found there.
    progress(len(faces) / (len(faces) + 1), "measuring the likeness")
    fixed = _measure(picture, current, faces, boxes, request.reference)

    # 5. Parameters: the picture's own (or the inpaint's, for a picture that had none) with ADetailer's keys.
    base = request.parameters if request.parameters.strip() else _picture_parameters(made.images[0].parameters,
                                                                                     picture.size)
    text = add_fields(base, adetailer_fields(request))
    path = None
    if request.save:
        out_dir = Path(request.out_dir or studio.settings.outputs_dir / dt.date.today().isoformat())
        path = save_png(current, text, out_dir, f"{seed}-facefix")
    progress(1.0, "done")
    message = f"{len(fixed)} face(s) re-drawn; sim-score against {against}: " + "; ".join(f.line for f in fixed)
    return FaceFixResult(current, fixed, against, text, path, message, time.perf_counter() - started)


def mask_box(box: tuple[int, int, int, int], size: tuple[int, int], dilate: int) -> tuple[int, int, int, int]:
    """A face box grown by FACE_GROWTH of its side and `dilate` pixels on every side, kept inside the picture."""
    left, top, right, bottom = box
    grow_x = round(FACE_GROWTH * (right - left)) + dilate
    grow_y = round(FACE_GROWTH * (bottom - top)) + dilate
    return max(0, left - grow_x), max(0, top - grow_y), min(size[0], right + grow_x), min(size[1], bottom + grow_y)


def _face_prompt(prompt: str, own: str) -> str:
    prompt = prompt.strip()
    if not prompt:
        prompt = own
    elif "[PROMPT]" in prompt:  # ADetailer's placeholder for the picture's own prompt
        prompt = prompt.replace("[PROMPT]", own)
    prompt = re.sub(r"\s{2,}", " ", prompt).strip(" ,")
    if not prompt:
        raise ValueError("`prompt` is empty and the picture carries no prompt of its own (no PNG parameters): "
                         "describe the face, e.g. 'a photo of sks person, detailed face'")
    return prompt


def _measure(before: Image.Image, after: Image.Image, faces, boxes, reference) -> list:
    from studio.faces import detect_faces, encode_face, face_distance, sim_score

    found = detect_faces(after, encode=False)
    fixed = []
    for i, (face, box) in enumerate(zip(faces, boxes)):
        was, now = encode_face(before, face.box), encode_face(after, face.box)
        if reference is None:
            sim_before, sim_after = 0.0, float(face_distance(now[None], was)[0])
        else:
            sim_before, sim_after = sim_score(was, reference), sim_score(now, reference)
        still = any(_overlap(face.box, f.box) > 0.3 for f in found)
        fixed.append(FixedFace(i, face.box, box, face.score, sim_before, sim_after, still))
    return fixed


def _overlap(a, b) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union else 0.0


def _picture_parameters(inpaint_text: str, size: tuple[int, int]) -> str:
    """The parameters of a picture that had none: the face inpaint's, less what only described its crop."""
    parsed = parse_parameters(inpaint_text)
    prompt, negative = parsed.pop("prompt"), parsed.pop("negative_prompt")
    fields = {k: v for k, v in parsed.items() if k not in _INPAINT_KEYS}
    fields["Size"] = f"{size[0]}x{size[1]}"
    return format_parameters(prompt=prompt, negative_prompt=negative, fields=fields)


def adetailer_fields(request: FaceFixRequest) -> dict[str, object]:
    """ADetailer's infotext keys for this fix, in its order, dropped at its defaults as ADetailer drops them."""
    tags = " ".join(f"<lora:{lc.name}:{lc.weight:g}>" for lc in request.loras)
    prompt = request.prompt.strip() or ("[PROMPT]" if tags else "")
    sized = request.size is not None
    return {
        "ADetailer model": DETECTOR,
        "ADetailer prompt": f"{prompt} {tags}".strip() or None,
        "ADetailer negative prompt": request.negative_prompt or None,
        "ADetailer mask only top k": request.max_faces or None,
        "ADetailer confidence": float(request.confidence),
        "ADetailer dilate erode": request.dilate,
        "ADetailer mask blur": request.mask_blur,
        "ADetailer denoising strength": float(request.strength),
        "ADetailer inpaint only masked": request.only_masked,
        "ADetailer inpaint padding": request.padding if request.only_masked else None,
        "ADetailer use inpaint width height": True if sized else None,
        "ADetailer inpaint width": request.size,
        "ADetailer inpaint height": request.size,
    }


def face_fix_fields(parsed: dict) -> dict:
    """Parsed parameters' ADetailer keys as FaceFixRequest keyword arguments (those it understands): a PNG's face
    fix restored. LoRA tags stay in the prompt, where generation reads them."""
    out: dict = {}
    if "ADetailer prompt" in parsed:
        out["prompt"] = parsed["ADetailer prompt"]
    if "ADetailer negative prompt" in parsed:
        out["negative_prompt"] = parsed["ADetailer negative prompt"]
    numbers = (("ADetailer confidence", "confidence", float), ("ADetailer dilate erode", "dilate", int),
               ("ADetailer mask blur", "mask_blur", int), ("ADetailer denoising strength", "strength", float),
               ("ADetailer inpaint padding", "padding", int), ("ADetailer mask only top k", "max_faces", int))
    for key, name, kind in numbers:
        if key in parsed:
            out[name] = kind(float(parsed[key]))
    if "ADetailer inpaint only masked" in parsed:
        out["only_masked"] = parsed["ADetailer inpaint only masked"].lower() == "true"
    if parsed.get("ADetailer use inpaint width height", "").lower() == "true" and "ADetailer inpaint width" in parsed:
        out["size"] = int(parsed["ADetailer inpaint width"])
    return out
