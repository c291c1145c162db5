"""What a run cannot have where it runs is said where the user looks: nf4 without bitsandbytes or a GPU refused before
the run is queued; 8-bit AdamW's fallback to AdamW a warning the Train tab keeps in sight and the command line says
when the run is queued and again at the end."""

from __future__ import annotations

import importlib.util

import pytest

from tests.train_helpers import astronaut, make_dataset, tiny_config


def test_nf4_is_refused_before_the_run_is_queued(studio, monkeypatch):
    from studio import claims
    from studio.train import jobs

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    nf4 = tiny_config(model="builtin:tiny-flux", base_precision="nf4")
    with pytest.raises(ValueError, match="`base_precision` nf4 needs a CUDA GPU \\(bitsandbytes\\), but the device "
                                         "is 'cpu'"):
        jobs.start_run(studio, nf4)
    monkeypatch.setattr(claims, "gpu_count", lambda: 1)  # a machine with a GPU, but no bitsandbytes
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else
                        real(name, *a))
    with pytest.raises(ValueError, match="nf4 needs bitsandbytes, which is not installed here: pip install "
                                         "bitsandbytes"):
        jobs.start_run(studio, tiny_config(model="builtin:tiny-flux", base_precision="nf4", device="cuda"))
    assert jobs.list_runs(studio) == []


def test_8bit_adams_fallback_is_kept_in_sight(settings, capsys):
    from studio.cli import main
    from studio.context import Studio
    from studio.train import jobs
    from studio.ui.common import TabContext
    from studio.ui.train_tab import status_views

    make_dataset(settings, "ds", [astronaut()], ["sks"])
    code = main(["--root", str(settings.root), "--models-dir", str(settings.models_dir), "--offline", "--device",
                 "cpu", "train", "--model", "builtin:tiny", "--dataset", "ds", "--out", "eight", "--steps", "2",
                 "--resolution", "64", "--validation-every", "0", "--optimizer", "adamw8bit"])
    captured = capsys.readouterr()
    assert code == 0, captured.out
    warning = "8-bit AdamW needs a CUDA GPU (the device is cpu): this run uses AdamW, whose state takes 4x the memory"
    if importlib.util.find_spec("bitsandbytes") is None:
        warning = warning.replace("needs a CUDA GPU", "needs bitsandbytes, which is not installed here (pip install "
                                                      "bitsandbytes; requirements.txt installs it on Linux x86-64) "
                                                      "and a CUDA GPU")
    assert captured.out.count(warning) == 1  # said when queued; the run's own word is not printed twice
    assert f"note: {warning}" in captured.err  # and again at the end
    studio = Studio.open(settings)
    status = jobs.run_status(studio, "eight")
    assert status.warnings == [next(m for m in status.messages if m.startswith("8-bit AdamW"))]
    for later in range(10):  # many messages later, the warning is still in the status
        status.messages.append(f"message {later}")
    assert f"**Note:** {status.warnings[0]}" in status_views(TabContext(studio), status)["status"]
