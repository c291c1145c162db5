"""Hub ids and the loaders' manners: what an owner/name id looks like, which folder of a repo it names, the hint
given when a download is not allowed, and quiet loading (no progress bars over the studio's own lines)."""

from __future__ import annotations

import os
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
    """Why a hub id could not be loaded, when the cause is not the id: downloads off, or no way to the hub."""
    if not allow_downloads or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return (" (downloads are off and it is not in the local hub cache: run once without --offline, or put its "
                "files in a folder and give that path)")
    host = hub_host()
    if not reachable(host):
        return (f" (the hub, {host}, cannot be reached from this machine and the model is not in the local hub "
                f"cache: check the network or proxy, or put its files in a folder and give that path)")
    return ""


def hub_host() -> str:
    from urllib.parse import urlparse

    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


def reachable(host: str, port: int = 443, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to `host` opens (a proxy in HTTPS_PROXY counts as the way out)."""
    import socket
    from urllib.parse import urlparse

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parsed = urlparse(proxy)
        host, port = parsed.hostname or host, parsed.port or 80
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def quiet_loaders() -> None:
    """Loading bars from diffusers/transformers would interleave with the studio's own progress lines."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
