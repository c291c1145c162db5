"""Hardening: bounded decoding, --allow-pickle that works, full and read-only disks, stale temporary files, one run
at a time for real (the second waits in the queue), signals reach the training child, NaN stops keep finite weights, resume takes a new learning
rate, epoch files kept every N / the last K, animated pictures flagged, names stripped."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.single_files import carry_tiny
from tests.train_helpers import astronaut, make_dataset, tiny_config, train_in_process

ROOT = Path(__file__).resolve().parent.parent


def _png_bomb(path: Path, side: int) -> Path:
    """A greyscale PNG of side x side black pixels: a few hundred kB that decode to side**2 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


_LOAD_AND_MEASURE = """
import resource, sys
from studio.data.ingest import Limits, Refused, SourceFile, load_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    loaded = load_image(SourceFile("x", len(data), lambda: data), Limits())
    result = {"size": list(loaded.image.size), "notes": loaded.notes}
except Refused as e:
    result = {"refused": str(e)}
result["peak_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(__import__("json").dumps(result))
"""


def _load_in_fresh_process(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _LOAD_AND_MEASURE, str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_pixel_bomb_is_refused_before_it_is_decoded(tmp_path):
    bomb = _png_bomb(tmp_path / "bomb.png", 10900)  # the 10900 x 10900 PNG
    assert bomb.stat().st_size < 200_000
    result = _load_in_fresh_process(bomb)
    assert result["refused"].startswith("picture is 10900x10900 = 118810000 pixels, more than the 40000000")
    assert result["peak_mb"] < 50  # decoding it would take 113 MB for the greyscale alone, 2.5 GB as it was


def test_big_photos_decode_within_the_memory_bound(tmp_path):
    jpeg, rgba = tmp_path / "big.jpg", tmp_path / "big.png"
    Image.new("RGB", (8200, 5000), (120, 80, 40)).save(jpeg, quality=90)  # 41 MP: past the limit, drafted
    Image.new("RGBA", (6400, 6250), (120, 80, 40, 128)).save(rgba, compress_level=1)  # 40 MP with alpha
    drafted = _load_in_fresh_process(jpeg)
    assert drafted["size"] == [4100, 2500] and "decoded at 4100x2500 (JPEG draft) from 8200x5000" in drafted["notes"]
    assert drafted["peak_mb"] < 100
    with_alpha = _load_in_fresh_process(rgba)
    assert with_alpha["size"] == [6400, 6250] and with_alpha["peak_mb"] < 500


def test_animated_pictures_are_flagged_and_names_stripped(studio, tmp_path):
    from studio.data import PrepareRequest, prepare_dataset

    frames = [astronaut((96, 96)), astronaut((96, 96)).rotate(90)]
    frames[0].save(tmp_path / "moving.png", save_all=True, append_images=frames[1:])
    astronaut((96, 96)).save(tmp_path / "still.png")
    result = prepare_dataset(studio, PrepareRequest((tmp_path / "moving.png", tmp_path / "still.png"), " spaced ",
                                                    "ohwx", crop="center"))  # 96 px: too small for a face crop
    assert result.dataset.name == "spaced" and (studio.settings.datasets_dir / "spaced").is_dir()
    assert json.loads((studio.settings.datasets_dir / "spaced" / "dataset.json").read_text())["name"] == "spaced"
    flags = {im.source: im.flags for im in result.dataset.images}
    assert "animated (2 frames): the first frame is used" in flags["moving.png"]
    assert not any(f.startswith("animated") for f in flags["still.png"])


# ---- --allow-pickle -----------------------------------------------------------------------------------------------

def _to_pickles(folder: Path) -> None:
    """Every .safetensors file under `folder` as the pickle file of the same weights (what older repos ship)."""
    from safetensors.torch import load_file

    names = {"model": "pytorch_model", "diffusion_pytorch_model": "diffusion_pytorch_model"}
    for path in list(folder.rglob("*.safetensors")):
        torch.save(load_file(str(path)), path.with_name(names[path.stem] + ".bin"))
        path.unlink()


def test_allow_pickle_changes_nothing_for_safetensors_and_loads_pickles(settings, tmp_path):
    from studio.context import Studio

    opted = Studio.open(settings.with_(allow_pickle=True))
    with opted.cache.pipeline("builtin:tiny") as pipe:  # a safetensors folder: loaded as without the flag
        assert pipe.unet is not None
    source = opted.store.load_base(opted.store.resolve("builtin:tiny"), dtype=torch.float32, device="cpu")
    pickled = tmp_path / "pickled"
    source.save_pretrained(pickled)
    _to_pickles(pickled)
    assert list(pickled.rglob("*.bin")) and not list(pickled.rglob("*.safetensors"))
    with pytest.raises(ValueError, match="holds no .safetensors weights.*--allow-pickle"):
        with Studio.open(settings).cache.pipeline(str(pickled)):
            pass
    with opted.cache.pipeline(str(pickled)) as pipe:
        torch.testing.assert_close(pipe.unet.conv_in.weight, source.unet.conv_in.weight)


def test_a_pickle_checkpoint_loads_when_opted_in(settings, tmp_path, monkeypatch):
    from studio.context import Studio
    from studio.models import families

    opted = Studio.open(settings.with_(allow_pickle=True))
    source = opted.store.load_base(opted.store.resolve("builtin:tiny"), dtype=torch.float32, device="cpu")
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": families.get("sd1").single_file_state(source)}, ckpt)
    assert opted.store.resolve(str(ckpt)).family is families.get("sd1")  # keys read without a safetensors error
    # The carried SD 1.x configs describe the real widths; this tiny file loads with its builtin's in their place.
    carry_tiny(monkeypatch, tmp_path, "sd15", source)
    pipe = opted.store.load_base(opted.store.resolve(str(ckpt)), dtype=torch.float32, device="cpu")
    torch.testing.assert_close(pipe.unet.conv_in.weight, source.unet.conv_in.weight)


def test_a_clip_folder_of_pickle_weights_needs_the_flag(settings):
    from studio.context import Studio

    store = Studio.open(settings).store
    clip = store.load_clip("builtin:tiny-clip", device="cpu")
    folder = settings.models_dir / "clip" / "pickled-clip"
    clip.model.save_pretrained(folder)
    _to_pickles(folder)
    clip.tokenizer.save_pretrained(folder)
    clip.image_processor.save_pretrained(folder)
    assert (folder / "pytorch_model.bin").is_file()
    with pytest.raises(ValueError, match="pickle weights \\(.bin\\) and pickles need --allow-pickle"):
        store.load_clip("pickled-clip", device="cpu")
    opted = Studio.open(settings.with_(allow_pickle=True)).store.load_clip("pickled-clip", device="cpu")
    torch.testing.assert_close(opted.model.visual_projection.weight, clip.model.visual_projection.weight)


# ---- full and read-only disks ---------------------------------------------------------------------------------------

def test_a_full_disk_is_one_line_and_leaves_nothing_behind(settings, monkeypatch, capsys):
    import errno

    from studio.cli import main

    out = settings.root / "out"
    real_replace = os.replace

    def full_disk_under_out(src, dst):  # the last step of every atomic write, on a disk holding only `out`
        if Path(dst).parent == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_disk_under_out)
    code = main(["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--offline", "generate",
                 "--model", "builtin:tiny", "--prompt", "a dog", "--steps", "2", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "could not write 00000-" in err[0] and f"in {out}: no space left on the disk" in err[0]
    assert list(out.iterdir()) == []  # no 0-byte PNG, no temporary file


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("options, reason", [("size=96k", "no space left on the disk"),
                                             ("ro,size=1m", "the disk is read-only")])
def test_real_full_and_read_only_disks(settings, tmp_path, options, reason, capsys):
    from studio.cli import main

    out = tmp_path / "disk"
    if not _mount_tmpfs(out, options):
        pytest.skip("cannot mount a tmpfs here (needs root); the simulated full disk above still runs")
    try:
        code = main(["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--offline", "generate",
                     "--model", "builtin:tiny", "--prompt", "a dog", "--steps", "2", "--batch", "8",
                     "--width", "128", "--height", "128", "--out", str(out)])  # 8 x ~40 KB > 96 KB
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and reason in err[0], err
        assert not [p for p in out.iterdir() if p.stat().st_size == 0 or p.name.startswith(".")]
    finally:
        subprocess.run(["umount", str(out)])


def test_a_checkpoint_that_cannot_be_written_fails_the_run_in_one_line(studio, monkeypatch):

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])

    def full(obj, path, *args, **kwargs):  # what torch says when the disk fills under it
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0")

    monkeypatch.setattr(torch, "save", full)
    # 32 MB free: room for the tiny run's checkpoints (the checkpoint policy plans some), too little to be a disk
    # that merely failed (under 64 MB the failed write is told as a full disk)
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("U", (), {"free": 32 * 1024**2})())
    with pytest.raises(ValueError, match=r"could not write step-0000001 in .*checkpoints: no space left on the disk"):
        train_in_process(studio, tiny_config(max_steps=2))
    folder = studio.settings.runs_dir / "run" / "checkpoints"
    assert not folder.exists() or [p.name for p in folder.iterdir()] == []


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    from studio.fileio import clean_stale_files, temp_dir

    folder = tmp_path / "workspace" / "outputs"
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = folder / f".00001-7.png.{dead.pid}-tmp-abc123.png"
    leftover.write_bytes(b"half a png")
    building = tmp_path / "workspace" / "datasets" / f".me.{dead.pid}-building-xyz"
    building.mkdir(parents=True)
    (building / "0001.png").write_bytes(b"x")
    mine = temp_dir(tmp_path / "workspace" / "datasets" / "other", "building")  # this process is alive
    kept = folder / "00001-7.png"
    kept.write_bytes(b"a real output")
    removed = clean_stale_files(tmp_path / "workspace")
    assert sorted(removed) == sorted([leftover, building])
    assert mine.is_dir() and kept.is_file()


# ---- training: one run at a time, signals, NaN, learning rate, epoch files ----------------------------------------

def _cli_train(settings, name: str, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "studio", "--root", str(settings.root), "--models-dir", str(settings.models_dir),
            "--workspace", str(settings.workspace_dir), "--offline", "train", "--model", "builtin:tiny", "--dataset",
            "ds", "--out", name, "--resolution", "64", "--validation-every", "0", *extra]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_two_train_commands_at_once_train_one_after_the_other(settings):
    from studio.context import Studio
    from studio.train import jobs

    make_dataset(settings, "ds", [astronaut()], ["sks"])
    first, second = _cli_train(settings, "one", "--steps", "400"), _cli_train(settings, "two", "--steps", "400")
    studio = Studio.open(settings)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # one trains, the other waits its turn in the queue
            states = sorted(r.state for r in jobs.list_runs(studio))
            if states == ["queued", "running"]:
                break
            time.sleep(0.2)
        assert states == ["queued", "running"]
        waiting = next(r for r in jobs.list_runs(studio) if r.state == "queued")
        assert waiting.message.startswith("next in the queue, after run ")
    finally:
        for process in (first, second):
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=120) for process in (first, second)]
    assert codes == [130, 130]  # the training one cancelled at its step, the waiting one taken out of the queue
    assert [r.state for r in jobs.list_runs(studio)] == ["cancelled"]  # the one that never started left no folder


def test_sigterm_to_the_train_command_stops_its_child(settings):
    from studio.context import Studio
    from studio.train import jobs

    make_dataset(settings, "ds", [astronaut()], ["sks"])
    command = _cli_train(settings, "long", "--steps", "2000")
    studio = Studio.open(settings)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        folder = settings.runs_dir / "long"
        if (folder / "run.json").is_file() and jobs.run_status(studio, "long").step >= 2:
            break
        time.sleep(0.2)
    command.send_signal(signal.SIGTERM)
    assert command.wait(timeout=120) == 130
    status = jobs.run_status(studio, "long")
    assert status.state == "cancelled" and status.checkpoint_step and status.step < 2000


def test_weights_gone_nan_are_never_checkpointed(studio, monkeypatch):
    from studio.train import checkpoints, loop

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def exploding(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the loss at this step is still finite; the weights after it are not
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", exploding)
    with pytest.raises(loop.TrainingDiverged, match="step 2 is kept \\(its weights are finite\\)"):
        train_in_process(studio, tiny_config(max_steps=6, checkpoint_every_steps=1))
    last = checkpoints.latest_checkpoint(studio.settings.runs_dir / "run")
    weights, _ = checkpoints.load_checkpoint(last)
    assert last.step == 2 and checkpoints.all_finite(weights)


def test_resume_takes_a_new_learning_rate_and_says_so(studio):
    from safetensors.torch import load_file

    import math

    from studio.train.runlog import read_events

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    common = dict(epochs=0, lr=1e-3, lr_scheduler="cosine")
    train_in_process(studio, tiny_config(name="slow", max_steps=4, **common))
    train_in_process(studio, tiny_config(name="slow", max_steps=8, **common), resume=True)
    train_in_process(studio, tiny_config(name="fast", max_steps=4, **common))
    changed = train_in_process(studio, tiny_config(name="fast", max_steps=8, **{**common, "lr": 5e-3}), resume=True)
    said = [e["text"] for e in read_events(studio.settings.runs_dir / "fast") if e["type"] == "message"]
    assert any(t.startswith("learning rate 0.005 from step 4 on (it was 0.001)") for t in said), said
    steps = [e for e in read_events(studio.settings.runs_dir / "fast") if e["type"] == "step" and e["step"] == 5]
    assert steps[-1]["lr"] == pytest.approx(5e-3 * 0.5 * (1 + math.cos(math.pi * 5 / 8)))  # cosine of the new rate
    a = load_file(str(changed.files[1]))
    b = load_file(str(studio.settings.runs_dir / "slow" / "export" / "slow" / "pytorch_lora_weights.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_the_resume_rule_refuses_settings_a_resume_cannot_change(studio):
    from studio.train import jobs

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    train_in_process(studio, tiny_config(name="kept", max_steps=2))
    with pytest.raises(ValueError, match="only epochs, max_steps, lr can change, not rank"):
        jobs.resume_run(studio, "kept", rank=16)


def test_epoch_files_every_n_and_the_last_k(studio):
    from studio.train import checkpoints

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    config = tiny_config(name="epochs", max_steps=10, save_every_epochs=3, keep_epochs=2)  # one-step epochs
    result = train_in_process(studio, config)
    run = studio.settings.runs_dir / "epochs"
    assert checkpoints.saved_epochs(run) == [9, 10]  # saved at 3, 6, 9 and the last; the newest two kept
    assert checkpoints.latest_checkpoint(run).step == 10 and result.steps == 10
    assert len(list((run / "checkpoints").iterdir())) == 1
    assert np.isfinite(result.last_loss)
