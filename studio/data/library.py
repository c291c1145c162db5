"""Datasets on disk (workspace/datasets/<name>/): list, load, save captions, drop images, export as zip, delete."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.data.captions import CaptionEdit, edit_caption, starts_with_trigger
from studio.data.masks import is_mask, mask_path, mask_png, painted_mask, read_mask
from studio.faces.detect import Face
from studio.fileio import atomic_path, temp_dir, write_bytes, write_json, write_text
from studio.names import check_name
from studio.settings import Settings

FORMAT_VERSION = 1
ORIGINALS = ".originals"  # hidden, so diffusers' imagefolder loader does not take the uploads for training images
UPLOADS = ".uploads.json"  # content hashes and sizes of the files a dataset was prepared from (Delete subject's)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # what a dataset folder's training pictures may be


def dataset_folder(settings: Settings, name: str) -> Path:
    """Where dataset `name` lives (or would): workspace/datasets/<name>/."""
    return settings.datasets_dir / check_name(name)


def find_dataset(settings: Settings, dataset: str, *, argument: str = "dataset") -> Path:
    """The folder of an existing dataset: a name under workspace/datasets/ (prepared by the Dataset tab, or any
    folder of pictures with kohya .txt captions dropped there), else a folder path. `argument` names the input in
    the error."""
    dataset = (dataset or "").strip()
    if not dataset:
        raise ValueError(f"`{argument}` is empty: choose a dataset from the Dataset tab's list")
    candidates = [settings.datasets_dir / check_name(dataset, argument)] if _is_name(dataset) else []
    if settings.server_paths:  # the command line may name any folder; the web studio only its datasets
        candidates.append(Path(dataset).expanduser())
    for candidate in candidates:
        if candidate.is_dir() and not candidate.name.startswith("."):
            return candidate.resolve()
    known = ", ".join(d.name for d in list_datasets(settings)) or "none yet"
    folder = " nor a folder of photos" if settings.server_paths else ""
    raise ValueError(f"`{argument}` {dataset!r} not found: it is not a dataset in {settings.datasets_dir} "
                     f"(datasets: {known}){folder}")


def _is_name(text: str) -> bool:
    try:
        check_name(text)
    except ValueError:
        return False
    return True


def _pictures(folder: Path) -> list[Path]:
    """The training pictures of a folder: not hidden, and not the masks beside them (`<stem>.mask.png`)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith(".") and not is_mask(p))


@dataclass(frozen=True)
class CaptionedImage:
    """A training picture and its caption, as every trainer reads a dataset folder."""

    path: Path
    caption: str
    width: int
    height: int
    mask: Path | None = None  # `<stem>.mask.png` beside it, when there is one (see studio/data/masks.py)


def captioned_images(folder: Path, trigger: str) -> list[CaptionedImage]:
    """The pictures of a dataset folder with their captions (kohya's `<stem>.txt` sidecar, else metadata.csv's `text`
    column, or its `caption` column as many published sets name it, else the trigger word alone) and masks. A caption that lacks the trigger word gets it in front, so it is always
    learnt."""
    from PIL import Image

    table = {}
    metadata = folder / "metadata.csv"
    if metadata.is_file():
        with open(metadata, newline="", encoding="utf-8") as f:
            rows = csv.DictReader(f)
            column = next((c for c in ("text", "caption") if c in (rows.fieldnames or [])), None)
            table = {row["file_name"]: (row.get(column) or "") if column else ""
                     for row in rows if row.get("file_name")}
    items = []
    for path in _pictures(folder):
        sidecar = path.with_suffix(".txt")
        caption = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else table.get(path.name, "").strip()
        if trigger and trigger.lower() not in caption.lower().replace(",", " ").split():
            caption = f"{trigger}, {caption}" if caption else trigger
        with Image.open(path) as im:
            width, height = im.size
        mask = mask_path(path)
        items.append(CaptionedImage(path, caption, width, height, mask if mask.is_file() else None))
    if not items:
        raise ValueError(f"`dataset` folder {folder} has no pictures ({', '.join(IMAGE_SUFFIXES)})")
    return items


def dataset_trigger(settings: Settings, dataset: str) -> str:
    """The trigger word a prepared dataset records in dataset.json ("" for a plain folder or an unknown name)."""
    meta = settings.datasets_dir / (dataset or "") / "dataset.json"
    try:
        return str(json.loads(meta.read_text(encoding="utf-8")).get("trigger", "")) if dataset else ""
    except (OSError, ValueError, AttributeError):
        return ""


@dataclass
class DatasetImage:
    """One training picture and everything known about it."""

    file_name: str  # e.g. 0001.png, beside 0001.txt
    caption: str
    source: str  # the name it was uploaded under
    original: str | None  # path of the kept upload, relative to the dataset folder
    sha256: str  # of the original bytes
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom) in the upright original
    size: tuple[int, int]  # of the training picture
    faces: list[Face] = field(default_factory=list)  # in the upright original's coordinates
    subject: int | None = None  # index into faces; None when no face was found
    blurred: int = 0  # bystanders' faces blurred in the training picture
    to_set: float | None = None  # median face distance to the other pictures' subjects
    to_reference: float | None = None  # sim-score against the reference pictures
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mask: str | None = None  # its mask's file name (0001.mask.png), when it has one

    @property
    def encoding(self) -> np.ndarray | None:
        return None if self.subject is None else self.faces[self.subject].encoding

    def to_json(self) -> dict:
        return {"file_name": self.file_name, "caption": self.caption, "source": self.source, "original": self.original,
                "sha256": self.sha256, "crop_box": list(self.crop_box), "size": list(self.size),
                "faces": [f.to_json() for f in self.faces], "subject": self.subject, "blurred": self.blurred,
                "to_set": self.to_set, "to_reference": self.to_reference, "flags": self.flags, "notes": self.notes,
                "mask": self.mask}

    @classmethod
    def from_json(cls, d: dict) -> "DatasetImage":
        return cls(d["file_name"], d["caption"], d["source"], d.get("original"), d["sha256"], tuple(d["crop_box"]),
                   tuple(d["size"]), [Face.from_json(f) for f in d.get("faces", [])], d.get("subject"),
                   d.get("blurred", 0), d.get("to_set"), d.get("to_reference"), d.get("flags", []), d.get("notes", []),
                   d.get("mask"))


@dataclass
class Dataset:
    name: str
    folder: Path
    trigger: str
    class_word: str
    settings: dict  # how it was prepared (size, crop, margin, tolerance, captioner, ...)
    images: list[DatasetImage]
    refused: list[dict] = field(default_factory=list)  # [{"name", "reason"}]
    ignored: list[dict] = field(default_factory=list)
    reference: np.ndarray = field(default_factory=lambda: np.zeros((0, 128)))  # (K, 128) encodings

    def path(self, image: DatasetImage) -> Path:
        return self.folder / image.file_name

    @property
    def encodings(self) -> np.ndarray:
        """(N, 128) subject encodings of the pictures that have a face: what generated pictures are scored against."""
        rows = [im.encoding for im in self.images if im.encoding is not None]
        return np.stack(rows) if rows else np.zeros((0, 128))

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "name": self.name, "trigger": self.trigger, "class_word": self.class_word,
                "settings": self.settings, "images": [im.to_json() for im in self.images], "refused": self.refused,
                "ignored": self.ignored, "reference_encodings": np.round(self.reference, 8).tolist()}


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    images: int
    trigger: str
    size: int
    flagged: int
    problem: str = ""  # why dataset.json could not be read; one broken dataset must not hide the others
    prepared: bool = True  # False: a plain folder of pictures and captions, not made by the Dataset tab


def read_dataset(folder: Path) -> Dataset:
    """Load the dataset stored in `folder` (anywhere: a workspace dataset or an unpacked export)."""
    meta = folder / "dataset.json"
    if not meta.is_file():
        raise ValueError(f"dataset folder {folder} has no dataset.json")
    d = json.loads(meta.read_text(encoding="utf-8"))
    if d.get("format") != FORMAT_VERSION:
        raise ValueError(f"dataset {folder.name} has format {d.get('format')!r}; this studio reads {FORMAT_VERSION}")
    ref = np.asarray(d.get("reference_encodings") or np.zeros((0, 128)), dtype=np.float64).reshape(-1, 128)
    return Dataset(d["name"], folder, d["trigger"], d["class_word"], d["settings"],
                   [DatasetImage.from_json(im) for im in d["images"]], d.get("refused", []), d.get("ignored", []), ref)


def load_dataset(settings: Settings, name: str) -> Dataset:
    folder = dataset_folder(settings, name)
    if not folder.is_dir():
        known = ", ".join(s.name for s in list_datasets(settings)) or "none yet"
        raise ValueError(f"dataset {name!r} not found in {settings.datasets_dir} (datasets: {known})")
    return read_dataset(folder)


def list_datasets(settings: Settings) -> list[DatasetSummary]:
    """Every dataset under workspace/datasets/, by name: those the Dataset tab prepared (dataset.json) and plain
    folders of pictures (with kohya .txt captions) that were dropped there."""
    out = []
    root = settings.datasets_dir
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if folder.name.startswith("."):  # a dataset being built or replaced
            continue
        meta = folder / "dataset.json"
        if not meta.is_file():
            pictures = _pictures(folder)
            if pictures:
                out.append(DatasetSummary(folder.name, len(pictures), "", 0, 0, prepared=False))
            continue
        try:
            d = json.loads(meta.read_text(encoding="utf-8"))
            out.append(DatasetSummary(d["name"], len(d["images"]), d["trigger"], int(d["settings"].get("size", 0)),
                                      sum(1 for im in d["images"] if im.get("flags"))))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            out.append(DatasetSummary(folder.name, 0, "", 0, 0, f"dataset.json unreadable ({type(e).__name__}: {e})"))
    return out


def metadata_csv(images: list[DatasetImage]) -> str:
    """diffusers imagefolder captions: file_name,text; with masks also mask_file_name, which the `datasets`
    imagefolder loader reads as a second image column ("mask") instead of taking the masks for pictures."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    masked = any(im.mask for im in images)
    writer.writerow(["file_name", "mask_file_name", "text"] if masked else ["file_name", "text"])
    for im in images:
        writer.writerow([im.file_name, im.mask or "", im.caption] if masked else [im.file_name, im.caption])
    return buffer.getvalue()


def save_dataset(dataset: Dataset) -> None:
    """Write captions (kohya <stem>.txt sidecars), metadata.csv and dataset.json; the pictures are already there."""
    for im in dataset.images:
        write_text(dataset.folder / (Path(im.file_name).stem + ".txt"), im.caption + "\n")
    write_text(dataset.folder / "metadata.csv", metadata_csv(dataset.images))
    write_json(dataset.folder / "dataset.json", dataset.to_json())


def set_captions(settings: Settings, name: str, captions: dict[str, str]) -> Dataset:
    """Replace the captions of the named pictures; each must still start with the trigger word."""
    dataset = load_dataset(settings, name)
    by_name = {im.file_name: im for im in dataset.images}
    for file_name, caption in captions.items():
        if file_name not in by_name:
            raise ValueError(f"dataset {name!r} has no picture {file_name!r}")
        caption = " ".join(str(caption).split())
        if not starts_with_trigger(caption, dataset.trigger):
            raise ValueError(f"caption of {file_name} must start with the trigger word {dataset.trigger!r} "
                             f"but is {caption!r}")
        by_name[file_name].caption = caption
    save_dataset(dataset)
    return dataset


def edit_captions(settings: Settings, name: str, edit: CaptionEdit) -> Dataset:
    """Apply one bulk edit (prefix, suffix, find and replace) to every caption, or to none if any would break."""
    dataset = load_dataset(settings, name)
    edited = [edit_caption(im.caption, dataset.trigger, edit) for im in dataset.images]
    for im, caption in zip(dataset.images, edited):
        im.caption = caption
    save_dataset(dataset)
    return dataset


def drop_images(settings: Settings, name: str, file_names: list[str]) -> Dataset:
    """Remove pictures (and their captions) from a dataset; the kept originals stay in .originals/."""
    dataset = load_dataset(settings, name)
    unknown = set(file_names) - {im.file_name for im in dataset.images}
    if unknown:
        raise ValueError(f"dataset {name!r} has no picture(s) {', '.join(sorted(unknown))}")
    dropped = [im for im in dataset.images if im.file_name in file_names]
    dataset.images = [im for im in dataset.images if im.file_name not in file_names]
    save_dataset(dataset)  # the list first, so a crash never leaves a caption naming a missing picture
    for im in dropped:
        picture = dataset.path(im)
        for path in (picture, dataset.folder / (Path(im.file_name).stem + ".txt"), mask_path(picture)):
            path.unlink(missing_ok=True)
    return dataset


def set_mask(settings: Settings, name: str, file_name: str, ignored) -> Dataset:
    """Paint a picture's mask by hand: `ignored` ("L", 255 = do not learn these pixels) becomes black in
    `<stem>.mask.png`; what was black and is no longer painted is learnt again; grey weights elsewhere stay."""
    dataset = load_dataset(settings, name)
    image = next((im for im in dataset.images if im.file_name == file_name), None)
    if image is None:
        raise ValueError(f"dataset {name!r} has no picture {file_name!r}")
    target = mask_path(dataset.path(image))
    old = read_mask(target, tuple(image.size)) if target.is_file() else None
    write_bytes(target, mask_png(painted_mask(old, ignored, tuple(image.size))))
    image.mask = target.name
    save_dataset(dataset)
    return dataset


def delete_dataset(settings: Settings, name: str) -> None:
    folder = load_dataset(settings, name).folder
    trash = temp_dir(folder, "deleted")
    folder.rename(trash / folder.name)  # one rename: it vanishes from listings at once
    shutil.rmtree(trash)


def export_dataset(settings: Settings, name: str, include_originals: bool = False) -> Path:
    """Zip the dataset to workspace/exports/<name>.zip, masks included; the uploads only when asked (and never
    uploads that show bystanders unblurred: a dataset protected before its uploads were kept blurred refuses)."""
    dataset = load_dataset(settings, name)
    if include_originals and dataset.settings.get("blur_bystanders") and not dataset.settings.get("originals_blurred"):
        raise ValueError(f"`include_originals` is refused for dataset {name!r}: it was prepared with \"Protect "
                         f"bystanders\" by an earlier version, whose {ORIGINALS}/ kept the uploads with bystanders' "
                         f"faces unblurred; export it without them (or prepare it again)")
    target = settings.workspace_dir / "exports" / f"{dataset.name}.zip"
    with atomic_path(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(dataset.folder.rglob("*")):
                rel = path.relative_to(dataset.folder)
                if path.is_file() and rel.name != UPLOADS and (include_originals or rel.parts[0] != ORIGINALS):
                    archive.write(path, f"{dataset.name}/{rel.as_posix()}")
    return target
