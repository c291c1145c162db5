"""builtin:pocket, the small SD 1.x model the project trains itself on procedural scenes, so the studio works offline.

Its weights load through the model store, like every model's (`load_pocket_pipeline` is a shortcut to it).
"""

from __future__ import annotations

from pathlib import Path

POCKET_DIR = Path(__file__).resolve().parents[2] / "models" / "builtin" / "pocket"


def load_pocket_pipeline(folder: Path | None = None):
    """Load the pocket model (txt2img) from `folder`, by default models/builtin/pocket, on the CPU in float32."""
    import torch

    from studio.models import ModelStore
    from studio.settings import Settings

    folder = Path(folder or POCKET_DIR)
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"`folder` must be a pocket model folder with model_index.json but is {folder}")
    store = ModelStore(Settings(root=folder, allow_downloads=False))
    return store.load_base(store.resolve(str(folder)), dtype=torch.float32, device="cpu")
