"""Hub ids and the loaders' manners: what an owner/name id looks like, which folder of a repo it names, the hint
given when a download is not allowed, and quiet loading (no progress bars over the studio's own lines)."""

from __future__ import annotations

import re

# owner/name, optionally followed by a subfolder of the repo (CrucibleAI/ControlNetMediaPipeFace/diffusion_sd15).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w.-]+)*$")


def is_hub_id(model_id: str) -> bool:
    return HUB_ID.match(model_id or "") is not None


def repo_and_subfolder(model_id: str) -> tuple[str, str | None]:
    """Split owner/name[/sub/folder] into the repo id and the subfolder inside it."""
    parts = model_id.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:]) or None


def offline_hint(allow_downloads: bool) -> str:
    """Why a hub id could not be loaded when downloads are off, and what to do about it."""
    if allow_downloads:
        return ""
    return (" (downloads are off and it is not in the local hub cache: run once without --offline, or put its files "
            "in a folder and give that path)")


def quiet_loaders() -> None:
    """Loading bars from diffusers/transformers would interleave with the studio's own progress lines."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
