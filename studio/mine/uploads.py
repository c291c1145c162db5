"""Pictures uploaded to mine from (the web studio's "Folder" mode): files and .zips checked as the Dataset tab checks
uploads (refused with a reason, never trusted), kept as a plain folder of pictures in workspace/datasets/, which a
mining job then reads by its name, as any dataset the studio lists."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from studio import fileio
from studio.data.ingest import Limits, Refusal, Refused, collect, load_image
from studio.names import check_name


@dataclass
class KeptUploads:
    name: str  # the folder's name in workspace/datasets/: what the job's `candidates` names
    kept: list[str] = field(default_factory=list)  # file names written, in the order they will be mined
    refused: list[Refusal] = field(default_factory=list)

    def line(self) -> str:
        refused = f"; refused {len(self.refused)}: " + "; ".join(f"{r.name} ({r.reason})" for r in self.refused[:3]) \
            if self.refused else ""
        return f"{len(self.kept)} uploaded pictures kept as dataset folder {self.name!r}{refused}"


def keep_uploads(settings, name: str, files: list[Path]) -> KeptUploads:
    """Check `files` (pictures, folders or .zips) and write the pictures among them, as uploaded, into a new folder
    `name` of workspace/datasets/. A name that is taken, or uploads with no readable picture, is a ValueError."""
    name = check_name(name, "candidates")
    folder = settings.datasets_dir / name
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"`candidates` {name!r} is taken by a dataset: name the job otherwise, or pick that dataset")
    limits = Limits(max_pixels=settings.max_image_pixels)
    sources, refused, _ = collect([Path(f) for f in files], limits)
    out = KeptUploads(name, refused=list(refused))
    for source in sources:
        try:
            loaded = load_image(source, limits)
        except Refused as e:
            out.refused.append(Refusal(source.name, str(e)))
            continue
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source.name).stem).strip("._") or "picture"
        path = fileio.reserve_unique(folder, stem[:60], loaded.suffix)  # numbered in upload order: the mining order
        with fileio.fill_reserved(path) as tmp:
            Path(tmp).write_bytes(loaded.data)
        out.kept.append(path.name)
    if not out.kept:
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in out.refused[:3]) or "no file given"
        raise ValueError(f"`candidates` uploads hold no picture the studio can read ({reasons})")
    return out
