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
    # Pixels (width x height) an image may have; a small file that decodes to more is a decompression bomb.
    max_pixels: int = 120_000_000
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
    pixels = im.width * im.height
    if pixels > limits.max_pixels:
        raise Refused(f"decompression bomb: {im.width}x{im.height} = {pixels} pixels, more than {limits.max_pixels}")

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
    notes: list[str] = []
    try:
        rgb = to_rgb(im, notes)
    except Exception as e:  # e.g. malformed EXIF
        raise Refused(f"could not convert to RGB ({type(e).__name__}: {e})") from None
    return LoadedImage(source.name, data, hashlib.sha256(data).hexdigest(), im.format, rgb, notes)


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
        values = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max() > 255 else 255.0
        if mode == "F":
            top = max(float(values.max()), 1.0)
        im = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        notes.append(f"{mode} (high bit depth) scaled to 8 bits")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append("transparency placed on white")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    if mode not in ("RGB", "RGBA", "LA", "P", "L") and not mode.startswith("I") and mode != "F":
        notes.append(f"{mode} -> RGB")
    return im.convert("RGB") if im.mode != "RGB" else im


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
