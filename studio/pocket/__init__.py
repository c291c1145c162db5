"""builtin:pocket, the small SD 1.x model the project trains itself on procedural scenes, so the studio works offline.

The one place that loads its weights is `load_pocket_pipeline`; the model store takes that job over later.
"""

from __future__ import annotations

from pathlib import Path

POCKET_DIR = Path(__file__).resolve().parents[2] / "models" / "builtin" / "pocket"


def load_pocket_pipeline(folder: Path | None = None):
    """Load the pocket model (txt2img) from `folder`, by default models/builtin/pocket, on the CPU in float32."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder or POCKET_DIR)
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"`folder` must be a pocket model folder with model_index.json but is {folder}")
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
