"""Face results per source picture, cached on disk by content hash so a re-run never detects the same photo twice."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from studio.data.library import IMAGE_SUFFIXES, ORIGINALS
from studio.faces.detect import Face, detect_faces
from studio.fileio import write_json

# Bump when detection changes in a way that makes cached results stale.
CACHE_VERSION = 1


@dataclass(frozen=True)
class DetectSettings:
    # Times dlib doubles the picture before looking; 1 finds faces down to ~40 px of the shrunk copy.
    upsample: int = 1
    # Longer side of the copy faces are looked for in (originals can be 6000 px; faces stay findable at 1024).
    max_side: int = 1024

    @property
    def key(self) -> str:
        return f"u{self.upsample}-s{self.max_side}-v{CACHE_VERSION}"


class FaceCache:
    """workspace/.cache/faces/<sha256[:2]>/<sha256>-<settings key>.json, one file per picture."""

    def __init__(self, folder: Path, settings: DetectSettings = DetectSettings()):
        self.folder = Path(folder)
        self.settings = settings
        self.hits = 0
        self.misses = 0

    def _path(self, sha256: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}-{self.settings.key}.json"

    def has(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def faces(self, sha256: str, image) -> list[Face]:
        """The faces of `image` (whose source bytes hash to `sha256`), from the cache or detected now."""
        path = self._path(sha256)
        if path.is_file():
            self.hits += 1
            return [Face.from_json(f) for f in json.loads(path.read_text(encoding="utf-8"))["faces"]]
        self.misses += 1
        faces = detect_faces(image, upsample=self.settings.upsample, max_side=self.settings.max_side)
        write_json(path, {"size": list(image.size), "faces": [f.to_json() for f in faces]})
        return faces


def cached_entries(folder: Path, hashes) -> list[Path]:
    """The cache files of the pictures whose content hashes are `hashes` (under every detection setting)."""
    folder = Path(folder)
    return [path for sha in sorted(hashes) for path in sorted((folder / sha[:2]).glob(f"{sha}-*.json"))]


def dataset_hashes(dataset_folder: Path) -> set[str]:
    """The content hashes a dataset's faces are cached under: its uploads' (dataset.json), its training pictures'
    and its kept originals' (the identity check caches those)."""
    def sha256(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    folder = Path(dataset_folder)
    try:
        meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    images = meta.get("images", []) if isinstance(meta, dict) else []
    out = {im["sha256"] for im in images if isinstance(im, dict) and isinstance(im.get("sha256"), str)}
    if folder.is_dir() and not folder.is_symlink():
        for parent, dirs, files in os.walk(folder, followlinks=False):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            out |= {sha256(Path(parent) / n) for n in files if n.lower().endswith(IMAGE_SUFFIXES)
                    and not (Path(parent) / n).is_symlink()}
    originals = folder / ORIGINALS
    if originals.is_dir() and not originals.is_symlink():
        out |= {sha256(p) for p in originals.iterdir() if p.is_file() and not p.is_symlink()}
    return out
