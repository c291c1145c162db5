"""The Train tab: listed after Dataset, widgets become a checked RunConfig, and /train_plan, /train_start,
/train_status and /train_cancel work through gradio_client."""

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
        # the memory plan of the settings before Start (no run name yet): on this CPU, the run as the CPU does it
        plan = client.predict(**_widget_values(name=""), api_name="/train_plan")
        assert plan.startswith("Memory plan: about ") and "this studio trains on the CPU" in plan, plan
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
    from studio.ui.train_knobs import BASIC, KNOBS
    from studio.ui.train_tab import apply_preset

    ctx = TabContext(studio)
    updates = apply_preset(ctx, SimpleNamespace(choice="pocket (teach builtin:pocket a new shape)", dataset_now="ds",
                                                name_now=""))
    assert "dataset" not in updates  # the user's dataset stays
    values = {k: updates[k]["value"] for k in (*BASIC, *KNOBS)}
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


def test_the_form_shows_only_the_settings_of_the_method_and_family_picked():
    from studio.models import families
    from studio.ui.train_knobs import BASIC, shown

    sd, flux = families.get("sd1"), families.get("flux")
    lora_sd = shown("lora", sd)
    assert lora_sd["rank"] and lora_sd["min_snr_gamma"] and lora_sd["lora_layers"]
    assert not any(lora_sd[k] for k in ("prior_preservation", "init_word", "ema", "timestep_sampling",
                                         "flux_guidance", "base_precision"))
    lora_flux = shown("lora", flux)
    assert lora_flux["timestep_sampling"] and lora_flux["flux_guidance"] and lora_flux["base_precision"]
    assert not lora_flux["min_snr_gamma"]  # min-SNR weighs DDPM noise levels: not flow matching's
    dreambooth = shown("dreambooth", sd)
    assert dreambooth["prior_preservation"] and dreambooth["ema"] and not dreambooth["rank"]
    inversion = shown("textual-inversion", sd)
    assert inversion["init_word"] and not inversion["text_encoder_lr"] and not inversion["continue_from"]
    assert shown("lora", None)["flux_guidance"]  # a base not told yet: its family's settings stay offered
    # the basic settings come first, the length of a run among them
    assert {"epochs", "max_steps", "lr", "rank"} <= set(BASIC)


def test_presets_are_named_for_what_they_are_for_and_old_names_still_work():
    from studio.train.presets import PRESETS, TITLES, preset_choices, preset_name

    assert set(TITLES) == set(PRESETS)
    assert ("Seed 002: FLUX likeness LoRA (FLUX.1-dev, 24 GB GPU)", "seed-002-flux") in preset_choices()
    for given in ("seed-002-flux", "Seed 002: FLUX likeness LoRA (FLUX.1-dev, 24 GB GPU)",
                  "seed-002-flux (kohya person LoRA on FLUX.1-dev)"):
        assert preset_name(given) == "seed-002-flux"
    with pytest.raises(ValueError, match="`preset` must be one of default, seed-002"):
        preset_name("seed-002 (something else")


def _run_folder(settings, name: str, method: str, saved: list[int], epochs: list[dict]):
    """A run's folder as a finished run leaves it: run.json, status.json, its events, the epoch weights kept."""
    import json

    from studio.fileio import write_json
    from tests.train_helpers import tiny_config

    folder = settings.runs_dir / name
    write_json(folder / "run.json", tiny_config(name=name, method=method).to_json())
    write_json(folder / "status.json", {"state": "done", "message": ""})
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"type": "epoch", **e}) + "\n" for e in epochs))
    (folder / "epochs").mkdir()
    for epoch in saved:
        (folder / "epochs" / f"epoch-{epoch:03d}.safetensors").write_bytes(b"")
    return folder


def test_epochs_table_and_export_offer_what_the_run_has(studio):
    """Only validated epochs in the table, no sim-score columns where nothing scored faces, the checker's verdict
    where the base has one; only epochs with saved weights to export, and why when there are none."""
    from studio import train
    from studio.ui.common import TabContext
    from studio.ui.train_tab import status_views

    grid = str(studio.settings.root / "grid.png")
    checked = {"trigger": "zq", "dataset": "zq", "kept": 2, "pictures": 3, "score": 1 / 3, "label": "star"}
    epochs = [{"epoch": 1, "loss": 0.5, "grid": grid, "scores": [], "subjects": [checked], "worst_score": 1 / 3},
              *({"epoch": e, "loss": 0.4} for e in range(2, 30)),  # epochs without validation: no row
              {"epoch": 30, "loss": 0.1, "grid": grid, "scores": [], "subjects": [{**checked, "kept": 3, "score": 0}],
               "worst_score": 0.0}]
    _run_folder(studio.settings, "pocketlike", "lora", [1, 30], epochs)
    views = status_views(TabContext(studio), train.run_status(studio, "pocketlike"))
    assert views["table"]["headers"] == ["epoch", "loss", "drawn as its shape", "best"]
    assert views["table"]["data"] == [[1, 0.5, "2/3", ""], [30, 0.1, "3/3", "best"]]
    assert views["epochs"]["choices"] == ["1", "30"]
    assert views["shapes"]["visible"] and list(views["shapes"]["value"]["drawn as its shape"]) == [2 / 3, 1.0]
    assert not views["scores"]["visible"]  # no likeness chart without faces
    # a finetune keeps no weights per epoch: nothing to pick, and the reason where the list is
    _run_folder(studio.settings, "whole", "finetune", [], epochs[:1])
    views = status_views(TabContext(studio), train.run_status(studio, "whole"))
    assert views["epochs"]["choices"] == [] and "keeps no weights per epoch" in views["epochs"]["info"]
    with pytest.raises(ValueError, match="`epoch` 7 of run pocketlike has no saved weights: the epochs saved are 1, "
                                         "30"):
        train.export_epoch(studio.settings.runs_dir / "pocketlike", 7, studio.settings.models_dir)


def test_a_training_configuration_is_saved_and_loaded_from_the_form(studio):
    from types import SimpleNamespace

    from studio.ui.common import TabContext
    from studio.ui.train_tab import load_configuration, load_configuration_file, save_configuration

    ctx = TabContext(studio)
    values = _widget_values(name="", dataset="", rank=16, lr=3e-4, validation_prompts="a {trigger}\na red {trigger}")
    out = save_configuration(ctx, SimpleNamespace(**values, config_name="my-lora"))
    assert out["saved"]["value"] == "my-lora" and "my-lora" in out["saved"]["choices"]
    saved = studio.settings.workspace_dir / "train_configs" / "my-lora.json"
    assert saved.is_file()
    back = load_configuration(ctx, SimpleNamespace(config_name="my-lora"))
    assert (back["form.rank"], back["form.lr"], back["form.model"]) == (16, 3e-4, "builtin:tiny")
    assert back["form.validation_prompts"] == "a {trigger}\na red {trigger}" and back["form.dataset"] == ""
    assert back["said"].startswith("Loaded configuration **my-lora** into the form")
    # a run.json from a run's folder loads the same way
    assert load_configuration_file(ctx, SimpleNamespace(path=str(saved)))["form.rank"] == 16
    with pytest.raises(ValueError, match="`config_name` 'nope' is no saved configuration \\(saved: my-lora\\)"):
        load_configuration(ctx, SimpleNamespace(config_name="nope"))
    with pytest.raises(ValueError, match="`config_name` must be 1-64 letters"):
        save_configuration(ctx, SimpleNamespace(**values, config_name="../up"))
