"""Turn uploaded photos into a training set: ingest, faces, identity, crop, blur, captions, written to disk at once."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from studio.data.captions import CAPTIONER_NAMES, DEFAULT_TEMPLATE, CaptionRequest, caption_images
from studio.data.crop import CROP_MODES, SIZES, CropSettings, blur_faces, frame, inside
from studio.copies import sha256_of
from studio.data.facecache import DetectSettings, cached_entries, dataset_hashes
from studio.data.masks import (DEFAULT_BACKGROUND_WEIGHT, SUBJECT_MASKS, check_subject_mask, framed_mask, is_mask, mask_path,
                               mask_png, original_layers)
from studio.data.ingest import Limits, LoadedImage, Refusal, collect, load_image, near_duplicates
from studio.data.scan import Scanned, auto_workers, scan
from studio.data.library import (IMAGE_SUFFIXES, ORIGINALS, UPLOADS, Dataset, DatasetImage, dataset_folder,
                                 save_dataset)
from studio.fields import setting
from studio.names import check_name
from studio.faces.confirm import confirmed
from studio.data.subject import ask_for_the_subject, find_bystanders, picked_face
from studio.faces.detect import CANDIDATE_SCORE
from studio.faces.identity import DEFAULT_TOLERANCE, check_identity, encode_reference
from studio.fileio import temp_dir, write_bytes, write_json
from studio.progress import Cancelled, ProgressFn, StopFn, never_stop, no_progress


@dataclass(frozen=True)
class PrepareRequest:
    """A dataset to prepare, each setting declared once (studio.fields): the Dataset tab's form, `dataset prepare`
    and /dataset_prepare are made from these declarations."""

    inputs: tuple[Path, ...] = setting(label="Photos or a .zip", flag="--input",
                                       help="files, folders and .zip files")
    name: str = setting(label="Dataset name", help="its folder under workspace/datasets/")
    trigger: str = setting(label="Trigger word", help="the rare word every caption starts with, e.g. ohwx")
    class_word: str = setting("person", label="Class word", help="what the subject is: person, dog, ...")
    size: int = setting(512, label="Resolution", choices=SIZES,
                        help="the training side; default: the default model's native one (SDXL and FLUX.1 1024)")
    crop: str = setting("face", label="Crop", choices=CROP_MODES,
                        help="a square around the face, the centre square, or an aspect-ratio bucket")
    margin: float = setting(1.0, label="Margin around the face (face widths)", span=(0.0, 4.0, 0.25))
    # Protect bystanders: blur other people's faces in the training pictures, and write a mask per picture
    # (<stem>.mask.png) that marks those faces black, so training learns neither them nor the blur.
    blur_bystanders: bool = setting(False, label="Protect bystanders",
                                    help="blur other people's faces, and mask them (and the blur) out of training")
    subject_mask: str = setting("none", label="Subject mask", choices=SUBJECT_MASKS,
                                help="face / person: learn mostly the subject, the rest at the weight below")
    background_weight: float = setting(DEFAULT_BACKGROUND_WEIGHT, label="Weight of the rest", span=(0.0, 1.0, 0.05),
                                       help="the loss weight a subject mask leaves the rest; OneTrainer's default: "
                                            "0.1")
    reference: tuple[Path, ...] = setting((), label="Reference photos of the subject",
                                          help="optional: they tell the subject from bystanders")
    # Or the subject's face picked in one picture, "<source>#<n>" (faces numbered from the left): what the studio
    # asks for when most pictures show several faces and no reference was given (SubjectUnclear)
    subject_face: str = setting("", label="Subject's face",
                                help="<photo>#<n>, faces numbered from the left, instead of reference photos; "
                                     "empty: none picked")
    replace: bool = setting(False, label="Replace a dataset of this name",
                            help="else a taken name is refused (the page asks)")
    tolerance: float = setting(DEFAULT_TOLERANCE, label="Face distance tolerance", span=(0.2, 0.8, 0.01),
                               help="above it a photo is flagged as maybe someone else (seed: 0.40)")
    captioner: str = setting("template", label="Captions from", choices=CAPTIONER_NAMES,
                             help="blip / florence2 need their weights in models/captioners/<name>/")
    template: str = setting(DEFAULT_TEMPLATE, label="Caption template", unset="",
                            help="with {trigger} and {class_word}; empty: the default")
    # Copy each upload, as uploaded, to .originals/ (with blur_bystanders: the upload with their faces blurred,
    # wherever it has bystanders, so no stored picture shows them)
    keep_originals: bool = setting(True, label="Keep the uploads", advanced=True,
                                   help="a copy of each upload in .originals/ (bystanders blurred when protected)")
    limits: Limits | None = None  # None: Limits(max_pixels=the studio's Settings.max_image_pixels)
    detect: DetectSettings = DetectSettings()
    workers: int = setting(-1, label="Face-detection processes", advanced=True,
                           help="-1: one per core, up to 4, for 16+ photos; 0: this process only")

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(Path(p) for p in self.inputs))
        object.__setattr__(self, "reference", tuple(Path(p) for p in self.reference))
        if not self.inputs:
            raise ValueError("`inputs` is empty: give image files, folders or a .zip")
        object.__setattr__(self, "name", check_name(self.name))
        object.__setattr__(self, "subject_face", (self.subject_face or "").strip())
        if self.subject_face and self.reference:
            raise ValueError(f"`subject_face` {self.subject_face!r} and `reference` photos both say who the subject "
                             f"is: give one of them")
        if not -1 <= self.workers <= 32:
            raise ValueError(f"`workers` must be -1 (automatic), 0 (none) or up to 32 but is {self.workers}")
        if not 0.0 < self.tolerance < 2.0:
            raise ValueError(f"`tolerance` must be between 0 and 2 but is {self.tolerance}")
        check_subject_mask(self.subject_mask, self.background_weight)
        # building these checks size, crop and margin, then trigger, class word and captioner (ValueError)
        _ = (self.crop_settings, self.caption_request)

    @property
    def masks(self) -> bool:
        """Whether every training picture gets a mask."""
        return self.blur_bystanders or self.subject_mask != "none"

    @property
    def crop_settings(self) -> CropSettings:
        return CropSettings(self.size, self.crop, self.margin)

    @property
    def caption_request(self) -> CaptionRequest:
        return CaptionRequest(self.trigger.strip(), self.class_word.strip(), self.captioner, self.template)

    def recorded(self) -> dict:
        """The settings written to dataset.json (no input paths: they are machine-specific)."""
        d = asdict(self)
        for key in ("inputs", "reference", "limits", "detect", "workers", "replace"):
            d.pop(key)
        d.update(detect=asdict(self.detect), reference_count=len(self.reference),
                 originals_blurred=self.blur_bystanders and self.keep_originals)
        return d


class NameTaken(ValueError):
    """A dataset of the requested name exists and the request does not say to replace it."""


@dataclass
class PrepareResult:
    dataset: Dataset
    refused: list[Refusal]
    ignored: list[Refusal]
    faces_detected: int  # pictures whose faces were computed in this run
    faces_cached: int  # pictures whose faces came from the cache

    @property
    def flagged(self) -> list[DatasetImage]:
        return [im for im in self.dataset.images if im.flags]

    def summary(self) -> str:
        lines = [f"dataset {self.dataset.name}: {len(self.dataset.images)} kept, {len(self.refused)} refused, "
                 f"{len(self.flagged)} flagged, {len(self.ignored)} ignored ({self.dataset.folder})"]
        lines += [f"refused  {r.name}: {r.reason}" for r in self.refused]
        lines += [f"flagged  {im.file_name} ({im.source}): {'; '.join(im.flags)}" for im in self.flagged]
        lines += [f"blurred  {im.file_name} ({im.source}): {im.blurred} other {'face' if im.blurred == 1 else 'faces'}"
                  " (masked out of training)" for im in self.dataset.images if im.blurred]
        masked = sum(1 for im in self.dataset.images if im.mask)
        if masked:
            lines.append(f"masks    {masked} written (<stem>.mask.png: white is learnt, black is not)")
        lines += [f"ignored  {r.name}: {r.reason}" for r in self.ignored]
        return "\n".join(lines)


def prepare_dataset(studio, request: PrepareRequest, progress: ProgressFn = no_progress,
                    should_stop: StopFn = never_stop) -> PrepareResult:
    """Build workspace/datasets/<name>/ from the request's inputs. An existing dataset of that name is refused
    (NameTaken) unless the request replaces it, and then replaced only once the new one is complete; most pictures
    with several faces and nothing to say who the subject is are a question too (SubjectUnclear). The same inputs
    and settings give the same files."""
    settings = studio.settings
    limits = request.limits or Limits(max_pixels=settings.max_image_pixels)
    final = dataset_folder(settings, request.name)
    _check_free(final, request)
    # 1. Find the files and the subject's reference encodings
    sources, refused, ignored = collect(list(request.inputs), limits)
    if not sources:
        raise ValueError(f"`inputs` hold no files to use ({len(refused)} refused, {len(ignored)} ignored)")
    reference = encode_reference(list(request.reference)) if request.reference else None
    if request.captioner != "template":  # load first: missing weights should fail before minutes of face work
        progress(0.0, f"loading the {request.captioner} captioner")
        with studio.cache.borrow("captioner", request.captioner):
            pass
    by_name = {s.name: s for s in sources}

    # 2. Check and decode every file; faces from the cache or detected now (pictures are not kept in memory)
    workers = auto_workers(len(sources)) if request.workers < 0 else request.workers
    scanned = scan(sources, limits, request.detect, settings.workspace_dir / ".cache" / "faces", workers,
                   progress, should_stop, share=0.6)
    accepted, refused = scanned.accepted, refused + scanned.refused
    if not accepted:
        raise ValueError(f"none of the {len(sources)} files is a usable picture: "
                         + "; ".join(f"{r.name}: {r.reason}" for r in refused[:5]))

    # 3. Who the subject is in each picture (told by the reference or the picked face; asked for when most pictures
    # show several faces), how far each picture is from the rest (and the reference); cropped around the face, a
    # picture without one does not show the subject: it is left out, and said
    if request.subject_face:
        reference = picked_face(accepted, request.subject_face)
    elif reference is None and (request.crop == "face" or request.masks):
        ask_for_the_subject(accepted, by_name, limits)
    rows = check_identity([a.faces for a in accepted], reference, request.tolerance)
    if request.crop == "face":
        faceless = [a for a, r in zip(accepted, rows) if r.subject is None]
        if len(faceless) == len(accepted):
            raise ValueError(f"`crop` is 'face' but no face was found in any of the {len(accepted)} pictures: "
                             "choose crop 'center' or 'keep-aspect' for a subject without a human face (a pet, an "
                             "object, a style); nothing was written")
        if faceless:
            refused += [Refusal(a.source, "no face found: left out (crop 'face' keeps pictures that show the "
                                          "subject's face; prepare with crop 'center' to keep it)") for a in faceless]
            # (a picture without a face takes no part in the others' distances, so their rows stand as they are)
            accepted, rows = map(list, zip(*((a, r) for a, r in zip(accepted, rows) if r.subject is not None)))
    duplicates = near_duplicates([a.phash for a in accepted])

    # 4. Frame, blur and write each picture into a folder beside the final one
    final.parent.mkdir(parents=True, exist_ok=True)
    build = temp_dir(final, "building")
    try:
        images: list[DatasetImage] = []
        for i, (item, row) in enumerate(zip(accepted, rows)):
            _step(should_stop, progress, 0.6 + 0.3 * i / len(accepted), f"cropping {item.source}")
            loaded = load_image(by_name[item.source], limits)
            images.append(_frame_one(i, item, row, loaded, rows, accepted, reference, request, build))
            if i in duplicates:
                images[-1].flags.append(f"near-duplicate of {images[duplicates[i]].file_name} "
                                        f"({accepted[duplicates[i]].source})")

        # 5. Captions, then the dataset files, then one rename puts it in place
        _step(should_stop, progress, 0.9, "captioning")
        captions = _captions(studio, request, build, images, progress, should_stop)
        for im, caption in zip(images, captions):
            im.caption = caption
        dataset = Dataset(request.name, build, request.caption_request.trigger, request.caption_request.class_word,
                          request.recorded(), images, [r.__dict__ for r in refused], [r.__dict__ for r in ignored],
                          reference if reference is not None else np.zeros((0, 128)))
        save_dataset(dataset)
        write_json(build / UPLOADS, _uploads(request))
        old_faces = _replace(build, final, request)
    finally:
        if build.exists():
            shutil.rmtree(build)
    dataset.folder = final
    if old_faces:  # the replaced dataset's face cache goes with it (what the new one shares stays)
        faces = settings.workspace_dir / ".cache" / "faces"
        for path in cached_entries(faces, old_faces - dataset_hashes(final)):
            path.unlink(missing_ok=True)
    progress(1.0, f"dataset {request.name}: {len(images)} pictures")
    return PrepareResult(dataset, refused, ignored, scanned.detected, scanned.cached)


def default_size(studio) -> int:
    """The default model family's native resolution (SD 1.x 512, SD 2.x 768, SDXL 1024); 512 when it is unknown."""
    try:
        family = studio.store.resolve(studio.store.default_model).family
    except ValueError:
        return 512
    return family.native_resolution if family is not None else 512


def _step(should_stop: StopFn, progress: ProgressFn, fraction: float, message: str) -> None:
    if should_stop():
        raise Cancelled()
    progress(fraction, message)


def _frame_one(i: int, item: Scanned, row, loaded: LoadedImage, rows, accepted, reference, request: PrepareRequest,
               build: Path) -> DatasetImage:
    """Crop, blur and save picture `i`; returns its record (caption still empty)."""
    subject = item.faces[row.subject] if row.subject is not None else None
    bystanders = find_bystanders(i, item.faces, row.subject, rows, accepted, reference, request.tolerance)
    patterns = []  # weak detections that a second detector does not see as faces (a badge, a clock): kept as they are
    if bystanders and any(not f.is_candidate for f in bystanders):
        seen = confirmed(loaded.image, bystanders)
        patterns = [f for f, ok in zip(bystanders, seen) if not ok]
        bystanders = [f for f, ok in zip(bystanders, seen) if ok]
    image = blur_faces(loaded.image, bystanders) if request.blur_bystanders and bystanders else loaded.image
    framed = frame(image, subject, request.crop_settings)
    file_name = f"{i + 1:04d}.png"
    write_bytes(build / file_name, _png(framed.image))
    mask = None
    if request.masks:  # made in the original's pixels, cut and resized with the picture's own box
        others = [f for k, f in enumerate(item.faces) if k != row.subject and f.score >= CANDIDATE_SCORE]
        layers = original_layers(loaded.image, bystanders if request.blur_bystanders else [], subject,
                                 subject_mask=request.subject_mask, background_weight=request.background_weight,
                                 others=others)
        mask = mask_path(build / file_name).name
        write_bytes(build / mask, mask_png(framed_mask(layers, framed.box, framed.image.size)))
    original = None
    if request.keep_originals:
        data, suffix = (loaded.data, loaded.suffix) if image is loaded.image else _encoded(image, loaded.suffix)
        original = f"{ORIGINALS}/{i + 1:04d}-{_safe(Path(item.source).stem)}{suffix}"
        write_bytes(build / original, data)
    flags = [f for f in row.flags if not (f == "no face" and "no face found: centre crop" in framed.flags)]
    blurred = sum(inside(f, framed.box) for f in bystanders) if request.blur_bystanders else 0
    notes = list(item.notes)
    if bystanders and not request.blur_bystanders:
        notes.append(f"{len(bystanders)} other people's faces not blurred (blur is off)")
    for f in patterns:
        notes.append(f"not blurred: a weak face-like pattern at {list(f.box)} that MediaPipe's face detector does not "
                     f"see as a face (paint a mask if it is one)")
    if request.subject_mask != "none" and subject is None:
        notes.append(f"no face found: its mask learns the whole picture, not only the subject's {request.subject_mask}")
    return DatasetImage(file_name, "", item.source, original, item.sha256, framed.box, framed.image.size,
                        item.faces, row.subject, blurred, row.to_set, row.to_reference,
                        flags + framed.flags + item.flags, notes, mask)


def _captions(studio, request: PrepareRequest, build: Path, images: list[DatasetImage], progress, should_stop):
    from PIL import Image

    if request.captioner == "template":
        return caption_images(studio, [None] * len(images), request.caption_request)
    pictures = []
    for im in images:
        with Image.open(build / im.file_name) as p:
            pictures.append(p.convert("RGB"))
    return caption_images(studio, pictures, request.caption_request,
                          lambda f, m: progress(0.9 + 0.1 * f, m), should_stop)


def _png(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)  # level 6 costs ~5x the time for ~10% smaller photos
    return buffer.getvalue()


def _encoded(image, suffix: str) -> tuple[bytes, str]:
    """A blurred upload, kept in its own kind of file: JPEG at quality 95 for a JPEG, else PNG."""
    import io

    buffer = io.BytesIO()
    if suffix.lower() in (".jpg", ".jpeg"):
        image.save(buffer, "JPEG", quality=95)
        return buffer.getvalue(), suffix
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue(), ".png"


def _safe(stem: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40]
    return cleaned or "image"


def _check_free(final: Path, request: PrepareRequest) -> None:
    """NameTaken when dataset `final` exists and the request does not replace it."""
    if request.replace or not (final.exists() or final.is_symlink()):
        return
    pictures = sum(1 for p in final.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not is_mask(p)) \
        if final.is_dir() else 0
    raise NameTaken(f"`name` {request.name!r} is taken by a dataset of {pictures} pictures: choose another name, or "
                    f"replace it (`replace`: the Dataset tab asks first, the command line takes --replace, "
                    f"/dataset_prepare replace_=True)")


def _replace(build: Path, final: Path, request: PrepareRequest) -> set[str]:
    """Put the finished folder in place; an older dataset of that name (only when the request replaces it) goes
    away only after. Returns the content hashes the replaced dataset's faces were cached under."""
    _check_free(final, request)  # made meanwhile by another preparation
    if final.exists():
        hashes = dataset_hashes(final)
        old = temp_dir(final, "old")
        final.rename(old / final.name)
        build.rename(final)
        shutil.rmtree(old)
        return hashes
    build.rename(final)
    return set()


def _uploads(request: PrepareRequest) -> list[dict]:
    """Content hash and size of each file given (uploads, zips, reference photos; not folders), so Delete subject
    finds the web's copies of them."""
    out = []
    for path in (*request.inputs, *request.reference):
        if path.is_file():
            out.append({"sha256": sha256_of(path), "size": path.stat().st_size})
    return out
