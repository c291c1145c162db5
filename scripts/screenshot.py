"""Takes README's screenshot: serves the studio on a scratch workspace, generates once in headless Chromium.

    .venv/bin/python scripts/screenshot.py [--prompt "a red circle on a white background"] [--cfg 4] [--seed 0]
        [--batch 4] [--out docs/images/studio.png]
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="a red circle on a white background")
    parser.add_argument("--cfg", type=float, default=4.0, help="builtin:pocket draws best at CFG 4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "studio.png")
    args = parser.parse_args()

    from playwright.sync_api import expect, sync_playwright

    from studio.context import Studio
    from studio.settings import Settings
    from studio.ui import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workspace = Path(tempfile.mkdtemp(prefix="studio-shot-"))
    studio = Studio.open(Settings(root=ROOT, workspace_dir=workspace, port=port, allow_downloads=False))
    app = launch(studio, prevent_thread_lock=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            page = browser.new_page(viewport={"width": 1440, "height": 980})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Generate").click()
            page.get_by_label("Prompt", exact=True).fill(args.prompt)
            page.get_by_label("Seed", exact=True).fill(str(args.seed))
            for label, value in (("CFG scale", args.cfg), ("Batch size", args.batch)):
                box = page.get_by_label(f"number input for {label}")
                box.fill(f"{value:g}")
                box.press("Enter")
            page.get_by_role("button", name="Generate", exact=True).click()
            expect(page.get_by_role("img", name=re.compile(r"^seed \d+$")).first).to_be_visible(timeout=300_000)
            page.wait_for_timeout(1000)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        app.close()
        shutil.rmtree(workspace, ignore_errors=True)
    print(args.out)


if __name__ == "__main__":
    main()
