"""Single files at their real sizes, offline (bench/offline.py, one part per test): SD 1.5 in A1111's layout, SDXL in
bf16, FLUX.1 at real widths with a few blocks in Forge's layout generate with `--offline` and an empty hub cache, and
without it with the hub unreachable; a LoRA trains on each in the training child; its kohya file loads in stock
diffusers on the diffusers-folder form and changes the picture. Minutes to an hour each and up to ~16 GB of memory:
marked `weights` and `slow`, skipped by default (`pytest -m weights tests/test_real_files.py -k sd15`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.weights
@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize("part", ["sd15", "sdxl", "flux"])
def test_a_real_size_single_file_generates_and_trains_offline(tmp_path, part):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "offline.py"), "--part", part, "--root",
                           str(tmp_path), "--steps", "1", "--size", "256" if part != "sd15" else "512"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    phases = {line["phase"]: line for line in lines if "phase" in line}
    assert {"generate", "online", "train", "stock"} <= set(phases)
    assert all(p["exit"] == 0 and p["hub_cache_files"] == 0 for p in phases.values())
    assert list((tmp_path / part / "pictures").glob("*.png"))
    stock = next(line for line in lines if "stock_diffusers" in line)
    assert stock["max_pixel_change"] > 0  # the kohya LoRA, loaded by stock diffusers, changed the picture
