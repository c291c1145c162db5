"""Take in uploaded photos (files, folders, zips): refuse what is unsafe or broken, say why, and hand back RGB images."""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

FORMATS = ("JPEG", "PNG", "WEBP")
# Operating-system clutter found in folders and zips: skipped with a note, not refused.
JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "icon\r"}
JUNK_FOLDERS = {"__macosx", ".git", ".thumbnails"}


@dataclass(frozen=True)
class Limits:
    # Pixels (width x height) a picture may be decoded at (Settings.max_image_pixels): about 500 MB of memory at most
    # with the conversions. Read from the header first, so a bomb is refused before any decoding; JPEGs larger than
    # this are decoded at 1/2, 1/4 or 1/8 of their size instead (JPEG's own draft mode, nearly free).
    max_pixels: int = 40_000_000
    # Bytes one file (or one zip entry, uncompressed) may have.
    max_file_bytes: int = 100 * 1024**2
    # A zip entry that inflates more than this many times is treated as a zip bomb.
    max_zip_ratio: int = 200

    def __post_init__(self) -> None:
        if self.max_pixels <= 0:
            raise ValueError(f"`max_pixels` must be positive but is {self.max_pixels}")
        if self.max_file_bytes <= 0:
            raise ValueError(f"`max_file_bytes` must be positive but is {self.max_file_bytes}")


@dataclass(frozen=True)
class SourceFile:
    """One input file, not yet read: `name` is its path as the user sees it (inside a zip: zip name/entry)."""

    name: str
    size: int
    read: Callable[[], bytes] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Refusal:
    name: str
    reason: str


@dataclass
class LoadedImage:
    """An accepted input: its original bytes (kept as uploaded) and an 8-bit RGB, upright copy to work on."""

    name: str
    data: bytes = field(repr=False)
    sha256: str
    format: str
    image: Image.Image = field(repr=False)
    notes: list[str] = field(default_factory=list)  # conversions done: "EXIF rotation applied", "CMYK -> RGB" ...
    flags: list[str] = field(default_factory=list)  # what the user should look at: "animated (12 frames): ..."

    @property
    def suffix(self) -> str:
        return {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[self.format]


class Refused(Exception):
    """Raised by load_image with the reason a file cannot be used."""


def _is_junk(parts: tuple[str, ...]) -> bool:
    name = parts[-1].lower()
    return name in JUNK_NAMES or name.startswith("._") or name.startswith(".") or any(
        p.lower() in JUNK_FOLDERS for p in parts[:-1])


def collect(inputs: list[Path], limits: Limits = Limits()) -> tuple[list[SourceFile], list[Refusal], list[Refusal]]:
    """Expand files, folders and zips into SourceFiles sorted by name; returns (files, refused, ignored junk)."""
    files: list[SourceFile] = []
    refused: list[Refusal] = []
    ignored: list[Refusal] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for p in sorted(q for q in path.rglob("*") if q.is_file()):
                rel = p.relative_to(path)
                if _is_junk(rel.parts):
                    ignored.append(Refusal(str(rel), "system file, ignored"))
                else:
                    files.append(SourceFile(rel.as_posix(), p.stat().st_size, p.read_bytes))
        elif path.is_file() and path.suffix.lower() == ".zip":
            _collect_zip(path, limits, files, refused, ignored)
        elif path.is_file():
            if _is_junk((path.name,)):
                ignored.append(Refusal(path.name, "system file, ignored"))
            else:
                files.append(SourceFile(path.name, path.stat().st_size, path.read_bytes))
        else:
            raise ValueError(f"`input` {str(path)!r} is not a file, folder or .zip")
    return _unique(sorted(files, key=lambda f: f.name)), refused, ignored


def _unique(files: list[SourceFile]) -> list[SourceFile]:
    """Two uploads with one name (from two folders) get " (2)", " (3)" ... so every name tells one file."""
    seen: dict[str, int] = {}
    out = []
    for f in files:
        seen[f.name] = seen.get(f.name, 0) + 1
        out.append(f if seen[f.name] == 1 else SourceFile(f"{f.name} ({seen[f.name]})", f.size, f.read))
    return out


def _collect_zip(path: Path, limits: Limits, files: list, refused: list, ignored: list) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        refused.append(Refusal(path.name, f"not a readable zip file ({e})"))
        return
    with archive:
        infos = archive.infolist()
    for info in infos:
        if info.is_dir():
            continue
        name = f"{path.name}/{info.filename}"
        entry = PurePosixPath(info.filename.replace("\\", "/"))
        if entry.is_absolute() or ".." in entry.parts or (entry.parts and entry.parts[0].endswith(":")):
            refused.append(Refusal(name, "zip entry points outside its folder (absolute path or '..')"))
        elif (info.external_attr >> 16) & 0o170000 == 0o120000:
            refused.append(Refusal(name, "zip entry is a symbolic link"))
        elif _is_junk(entry.parts):
            ignored.append(Refusal(name, "system file, ignored"))
        elif info.flag_bits & 0x1:
            refused.append(Refusal(name, "zip entry is encrypted"))
        elif info.file_size > limits.max_file_bytes:
            refused.append(Refusal(name, f"file is {info.file_size} bytes, more than the limit of {limits.max_file_bytes}"))
        elif info.file_size > 1024**2 and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
            refused.append(Refusal(name, f"zip bomb: {info.compress_size} bytes inflate to {info.file_size}"))
        else:
            files.append(SourceFile(name, info.file_size, _zip_reader(path, info.filename)))


def _zip_reader(path: Path, entry: str) -> Callable[[], bytes]:
    def read() -> bytes:
        with zipfile.ZipFile(path) as archive:
            return archive.read(entry)

    return read


def load_image(source: SourceFile, limits: Limits = Limits()) -> LoadedImage:
    """Read, check and decode one file; raises Refused with the reason when it cannot be used."""
    # 1. Size, then the header: is it an image of a format we take, and not a bomb?
    if source.size > limits.max_file_bytes:
        raise Refused(f"file is {source.size} bytes, more than the limit of {limits.max_file_bytes}")
    data = source.read()
    try:
        with warnings.catch_warnings():  # our own pixel limit below refuses bombs with a clearer reason
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise Refused(f"not an image (starts with {data[:12]!r})") from None
    except Image.DecompressionBombError as e:
        raise Refused(f"decompression bomb: {e}") from None
    except Exception as e:  # a malformed header can make a Pillow plugin fail in any way; refuse, never stop the batch
        raise Refused(f"unreadable image header ({type(e).__name__}: {e})") from None
    if im.format not in FORMATS:
        raise Refused(f"format {im.format} is not taken; use JPEG, PNG or WebP")
    notes: list[str] = []
    flags: list[str] = []
    if im.format == "JPEG" and im.width * im.height > limits.max_pixels:
        full = im.size
        im.draft("RGB", _draft_size(im.size, limits.max_pixels))
        if im.size != full:
            notes.append(f"decoded at {im.width}x{im.height} (JPEG draft) from {full[0]}x{full[1]}")
    pixels = im.width * im.height
    if pixels > limits.max_pixels:
        raise Refused(f"picture is {im.width}x{im.height} = {pixels} pixels, more than the {limits.max_pixels} the "
                      f"studio decodes (a decompression bomb, or a photo to scale down first; --max-image-mp raises "
                      f"the limit)")
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        flags.append(f"animated ({frames} frames): the first frame is used")

    # 2. Decode fully: truncated and corrupt files fail here (Pillow's default; face_recognition's import turns it off)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise Refused(f"truncated or corrupt image ({e})") from None
    except Exception as e:  # as above: a decoder failing in an unexpected way still only refuses this file
        raise Refused(f"corrupt image ({type(e).__name__}: {e})") from None

    # 3. Upright 8-bit RGB
    try:
        rgb = to_rgb(im, notes)
    except Exception as e:  # e.g. malformed EXIF
        raise Refused(f"could not convert to RGB ({type(e).__name__}: {e})") from None
    return LoadedImage(source.name, data, hashlib.sha256(data).hexdigest(), im.format, rgb, notes, flags)


def _draft_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """The size to ask JPEG's draft mode for: the largest 1/2, 1/4 or 1/8 reduction within `max_pixels`."""
    width, height = size
    for scale in (2, 4, 8):
        if (width // scale) * (height // scale) <= max_pixels:
            return -(-width // scale), -(-height // scale)
    return -(-width // 8), -(-height // 8)


def to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """Apply EXIF orientation and convert any mode (CMYK, palette, 16-bit, alpha) to 8-bit RGB; alpha goes on white."""
    orientation = im.getexif().get(0x0112, 1)
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        notes.append(f"EXIF orientation {orientation} applied")
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and float greyscale: scale to 0-255 (PIL's own convert("L") clips instead of scaling)
        values = np.asarray(im)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        if mode == "F":
            top = max(float(values.max()), 1.0)
        im = Image.fromarray(_scaled_to_8_bits(values, top), "L")
        notes.append(f"{mode} (high bit depth) scaled to 8 bits")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        transparent = ImageOps.invert(rgba.getchannel("A"))
        if transparent.getextrema()[1] > 0:
            notes.append("transparency placed on white")
        # rgb * alpha + white * (1 - alpha), in place: no second full-size RGBA picture at the pixel limit
        rgb = rgba.convert("RGB")
        rgb.paste((255, 255, 255), mask=transparent)
        return rgb
    if mode not in ("RGB", "RGBA", "LA", "P", "L") and not mode.startswith("I") and mode != "F":
        notes.append(f"{mode} -> RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


def _scaled_to_8_bits(values: np.ndarray, top: float, rows: int = 512) -> np.ndarray:
    """values * 255 / top, rounded and clipped to uint8, a band of rows at a time (a 40 MP 16-bit picture would
    need several GB as one float array)."""
    out = np.empty(values.shape, dtype=np.uint8)
    for start in range(0, values.shape[0], rows):
        band = values[start:start + rows].astype(np.float32) * np.float32(255.0 / top) + np.float32(0.5)
        out[start:start + rows] = np.clip(band, 0, 255)
    return out


def perceptual_hash(image: Image.Image) -> int:
    """64-bit pHash: signs of the 8x8 lowest DCT frequencies of a 32x32 greyscale copy; near-identical pictures
    (re-encoded, resized, slightly retouched) differ in only a few bits."""
    from scipy.fft import dctn

    small = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(small, norm="ortho")[:8, :8].ravel()
    bits = low[1:] > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def near_duplicates(hashes: list[int], max_bits: int = 6) -> dict[int, int]:
    """For each picture that nearly repeats an earlier one: {index: index of the earlier one}."""
    found: dict[int, int] = {}
    for i, h in enumerate(hashes):
        for j in range(i):
            if j not in found and hamming(h, hashes[j]) <= max_bits:
                found[i] = j
                break
    return found
