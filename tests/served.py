"""A studio served on a free loopback port for tests that talk to it (gradio_client, headless Chromium)."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_models(folder: Path, shared: Path) -> Path:
    """A models/ folder of the test's own (files added to it touch no other test), sharing the built builtins."""
    folder.mkdir(parents=True, exist_ok=True)
    (shared / "builtin").mkdir(exist_ok=True)
    (folder / "builtin").symlink_to(shared / "builtin")
    return folder


def studio_settings(root: Path, models_dir: Path, **changes):
    """Offline settings on `root` with builtin:tiny as the default base and the session's shared models."""
    from studio.settings import Settings

    return Settings(**{"root": root, "models_dir": models_dir, "workspace_dir": root / "workspace",
                       "allow_downloads": False, "default_model": "builtin:tiny", "served_dir": root / "served",
                       **changes})


def serve_studio(root: Path, models_dir: Path, **changes):
    """Launch the whole studio without blocking; returns (studio, app, url). Close with app.close()."""
    from studio.context import Studio
    from studio.ui import launch

    studio = Studio.open(studio_settings(root, models_dir, port=free_port(), **changes))
    app = launch(studio, prevent_thread_lock=True)
    return studio, app, f"http://127.0.0.1:{studio.settings.port}/"
