"""The Train tab: listed after Dataset, widgets become a checked RunConfig, and /train_start, /train_status and
/train_cancel work through gradio_client."""

from __future__ import annotations

import socket
import time

import pytest

from tests.train_helpers import astronaut, make_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _widget_values(**changes) -> dict:
    """/train_start's inputs by name (RunConfig's fields): the few this run sets; the others keep their defaults."""
    values = dict(name="uirun", dataset="ds", model="builtin:tiny", method="lora", trigger="sks",
                  validation_prompts="a photo of {trigger}", resolution=64, max_steps=3, epochs=0, validation_steps=2)
    return {**values, **changes}


def test_tab_is_listed_after_the_tabs_that_make_datasets():
    from studio.ui import TABS

    modules = [module for _, module in TABS]
    assert modules[:3] == ["dataset_tab", "mine_tab", "train_tab"]  # photos or a mined identity, then training


def test_widgets_become_a_checked_config():
    from studio.ui.common import DEFAULT_MODEL
    from studio.ui.train_knobs import config_from_widgets

    values = _widget_values(model=DEFAULT_MODEL, rank=8.0, validation_prompts="one\n\n two ")
    config = config_from_widgets(values)
    assert config.model == "" and config.rank == 8 and isinstance(config.rank, int)
    assert config.validation_prompts == ["one", "two"]
    with pytest.raises(ValueError, match="`batch_size` must be at least 1"):
        config_from_widgets(_widget_values(batch_size=0))
    with pytest.raises(ValueError, match="`rank` must be a whole number but is 2.5"):
        config_from_widgets(_widget_values(rank=2.5))


def test_start_status_cancel_through_the_api(studio):
    import gradio as gr
    from gradio_client import Client

    from studio.ui import train_tab
    from studio.ui.common import TabContext

    make_dataset(studio.settings, "ds", [astronaut()], ["sks"])
    with gr.Blocks() as app:
        train_tab.build(TabContext(studio))
    app.queue()
    app.launch(prevent_thread_lock=True, server_port=_free_port(), show_error=True)
    try:
        client = Client(app.local_url, verbose=False)
        run, line = client.predict(**_widget_values(), api_name="/train_start")
        assert line.startswith("uirun: starting")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            text, *_ = client.predict("uirun", api_name="/train_status")
            if "uirun: done" in text or "failed" in text or "stopped" in text:
                break
            time.sleep(1)
        assert "uirun: done" in text, text
        assert "step 3/3" in text and "uirun.safetensors" in text
        assert client.predict("uirun", api_name="/train_cancel").startswith("uirun: done")  # nothing to cancel
        with pytest.raises(Exception, match="taken by an earlier run"):
            client.predict(**_widget_values(), api_name="/train_start")
    finally:
        app.close()


def test_preset_fills_the_model_prompts_and_knobs(studio):
    from types import SimpleNamespace

    from studio.ui.common import TabContext
    from studio.ui.train_knobs import KNOBS
    from studio.ui.train_tab import apply_preset

    ctx = TabContext(studio)
    updates = apply_preset(ctx, SimpleNamespace(choice="pocket (teach builtin:pocket a new shape)", dataset_now="ds",
                                                name_now=""))
    assert "dataset" not in updates  # the user's dataset stays
    values = {k: updates[k]["value"] for k in KNOBS}
    assert (updates["method"]["value"], updates["model"]["value"]) == ("lora", "builtin:pocket")
    assert updates["validation_prompts"]["value"].splitlines()[0] == "a red {trigger} on a white background"
    assert (values["lora_layers"], values["max_steps"], values["validation_cfg"]) == ("all", 300, 4.0)
    assert "model" not in apply_preset(ctx, SimpleNamespace(choice="default", dataset_now="", name_now=""))
    # no dataset chosen yet: the pocket preset writes its star dataset and fills what Train needs
    demo = apply_preset(ctx, SimpleNamespace(choice="pocket", dataset_now="", name_now=""))
    assert (demo["dataset"]["value"], demo["trigger"], demo["name"]) == ("zq", "zq", "zq")
    captions = sorted((studio.settings.datasets_dir / "zq").glob("*.txt"))
    assert len(captions) == 8 and captions[0].read_text().startswith("a ") and " zq " in captions[0].read_text()
    assert "wrote dataset `zq`" in demo["status"]
    again = apply_preset(ctx, SimpleNamespace(choice="pocket", dataset_now="", name_now="mine"))
    assert again["name"] == "mine" and "wrote" not in again["status"]  # kept, not written twice


def test_the_lists_follow_the_disk_and_offer_runs_to_add_a_subject_to(tmp_path):
    from types import SimpleNamespace

    from studio.context import Studio
    from studio.fileio import write_json
    from studio.settings import Settings
    from studio.ui.common import TabContext
    from studio.ui.train_tab import refresh_lists
    from tests.train_helpers import tiny_config

    ctx = TabContext(Studio.open(Settings(root=tmp_path, allow_downloads=False)))
    assert refresh_lists(ctx, SimpleNamespace(run=None))["continue_from"]["choices"] == [""]
    for name in ("older", "newer"):
        write_json(ctx.studio.settings.runs_dir / name / "run.json", tiny_config(name=name).to_json())
    out = refresh_lists(ctx, SimpleNamespace(run=None))
    assert sorted(out["continue_from"]["choices"]) == ["", "newer", "older"] and out["continue_from"]["choices"][0] == ""
    assert out["run"]["value"] in ("newer", "older") and sorted(out["run"]["choices"]) == ["newer", "older"]
