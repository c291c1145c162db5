"""Face results per source picture, cached on disk by content hash so a re-run never detects the same photo twice."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
