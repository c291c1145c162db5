"""Train tab: pick a dataset, a base model and a method, train in a child process, watch loss and validation grids,
cancel or resume, and export the epoch whose likeness scores best; the Sweep accordion (ui/sweep_panel.py) trains a grid
of settings and scores each cell."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import gradio as gr

from studio import train
from studio.train import sampling
from studio.fields import declared, written
from studio.train.config import RunConfig
from studio.train.presets import PRESETS, load_config, preset_choices, preset_name, save_config, saved_configs
from studio.train.schedule import PLAN_WORDS
from studio.ui import glossary, job_watch, sweep_panel, train_knobs
from studio.ui.charts import LineChart
from studio.ui.common import (DEFAULT_MODEL, TabContext, TabRefresh, bind, dataset_names, model_choices, number,
                              picked_model)
from studio.ui.job_watch import shown_job
from studio.ui.forms import Form, request_from_values, widget_values
from studio.remote.address import where_jobs_run
from studio.ui.serving import served
from studio.ui.train_knobs import BASIC, DEFAULTS, KNOBS, checked_subjects, config_from_widgets, planned_config

NO_RUN = "(no run yet)"
PLAN_FIRST = "Memory plan: shown when a model, method or setting is chosen"
FORM_SETTINGS = tuple(declared(RunConfig))  # the form has a widget for each (form.rest() places those not laid out)
LOSS = LineChart("step", "loss", title="Loss")
LIKENESS = LineChart("epoch", "mean sim-score", title="Likeness (mean sim-score, lower is better)")
PER_SUBJECT = LineChart("epoch", "sim-score", color="subject", title="Per subject (sim-score, lower is better)")
SHAPES = LineChart("epoch", "drawn as its shape", color="subject",
                   title="Drawn as its shape (share of pictures, by the base's checker; higher is better)")


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    runs = run_names(studio)
    form = Form(ctx, RunConfig)  # every widget below named by its RunConfig field: /train_start's parameters
    # 1. What to train
    with gr.Row():
        dataset = form.widget("dataset", value=None)
        model = form.widget("model")
        method = form.widget("method", gr.Radio)
        preset = gr.Dropdown(preset_choices(), value="default", label="Preset",
                             info="settings made for a purpose; they fill the form, which you can change after")
    with gr.Row():
        name = form.widget("name", placeholder="e.g. tim-lora-v1")
        trigger = form.widget("trigger", placeholder="e.g. ohwx")
        refresh_btn = gr.Button("Refresh lists", size="sm")
    form.widget("validation_prompts")

    # 2. The basic settings, then the advanced ones folded: only those that apply to the method and base picked
    start_ref = picked_model(studio, DEFAULT_MODEL)
    knob_rows = train_knobs.knobs(form, DEFAULTS.method, None if start_ref is None else start_ref.family)
    form.rest()  # a setting declared since, not yet placed: shown (and taken by /train_start) all the same
    knobs = form.inputs
    with gr.Accordion("Save or load a training configuration", open=False):
        with gr.Row():
            with gr.Column():
                config_name = gr.Textbox(label="Save these settings as", placeholder="e.g. my-sdxl-lora",
                                         max_lines=1)
                save_cfg = gr.Button("Save", size="sm")
            with gr.Column():
                saved_pick = gr.Dropdown(saved_configs(studio.settings), value=None, label="Saved configurations",
                                         allow_custom_value=True)
                load_cfg = gr.Button("Load into the form", size="sm")
            upload_cfg = gr.File(file_types=[".json"], type="filepath", height=130,
                                 label="Or load a run.json (a run's folder holds one)")
        config_md = gr.Markdown(elem_id="train-config-said")
    glossary.words("sim-score", "checker", "epoch", "step", "validation", "trigger word", "LoRA", "DreamBooth",
                   "textual inversion", "fine-tune", "collapse guard", "masked training", "EMA", "preset")

    # 3. Run controls and what a run shows
    with gr.Row():
        start_btn = gr.Button("Train", variant="primary")
        resume_btn = gr.Button("Resume")
        cancel_btn = gr.Button("Cancel")
        # empty until the page loads: the load's refresh then picks the newest run, and that change shows it
        run_pick = gr.Dropdown(runs, value=None, label="Run", allow_custom_value=True)
    ctx.widgets["train.run"] = run_pick
    gr.Markdown(where_jobs_run(studio.settings), elem_id="train-where")
    plan_md = gr.Markdown(PLAN_FIRST, elem_id="train-plan")  # the memory plan of the settings, before Start
    status_md = gr.Markdown(NO_RUN)
    with gr.Row():
        loss_plot = LOSS.widget(height=260)
        score_plot = LIKENESS.widget(height=260, visible=False)
        subject_plot = PER_SUBJECT.widget(height=260, visible=False)
        shape_plot = SHAPES.widget(height=260, visible=False)
    with gr.Row():
        grids = gr.Gallery(label="Validation grids, newest first (one column per prompt)", columns=1, height=460,
                           object_fit="contain", format="png", scale=3, elem_id="train-grids")
        with gr.Column(scale=2):
            epoch_table = gr.Dataframe(headers=["epoch", "loss", "best"], label="Validated epochs", interactive=False,
                                       wrap=True)
            # the choices follow the run: its saved epochs (any value reaches export_epoch, which says what is saved)
            epoch_pick = gr.Dropdown([], label="Epoch to export", allow_custom_value=True,
                                     info="only epochs whose weights were saved")
            export_btn = gr.Button("Export epoch")
            export_md = gr.Markdown()
    sweep = sweep_panel.build(ctx, form, preset)

    # 4. Wiring: the API endpoints take these names (/train_start: RunConfig's fields)
    # a run picked (by hand, by the demo, on a reload) shows its settings in the form: what it trained with, and what
    # Resume starts from (its length and learning rate)
    views = {"status": status_md, "loss": loss_plot, "scores": score_plot, "grids": grids, "table": epoch_table,
             "epochs": epoch_pick, "subject_scores": subject_plot, "shapes": shape_plot,
             **{f"form.{k}": w for k, w in form.inputs.items()}}
    timer = job_watch.follow(ctx, RUN_VIEW, run_pick, "run", views, api_name="train_status")
    bind(ctx, start_btn.click, start, form.inputs, {"run": run_pick, "status": status_md},
         api_name="train_start").success(job_watch.timer_on, None, timer, api_name=False, queue=False)
    bind(ctx, resume_btn.click, resume, {"run": run_pick, "epochs": knobs["epochs"], "max_steps": knobs["max_steps"],
                                         "lr": knobs["lr"]},
         {"status": status_md}, api_name="train_resume").success(job_watch.timer_on, None, timer, api_name=False,
                                                                 queue=False)
    planned = [form.inputs[k] for k in dict.fromkeys(("model", "method", *BASIC, *KNOBS)) if k in form.inputs]
    bind(ctx, functools.partial(gr.on, [w.change for w in planned]), show_plan, form.inputs, {"plan": plan_md},
         api_name="train_plan", queue=False, checked=False)  # a name still being typed is planned as it is
    bind(ctx, cancel_btn.click, cancel, {"run": run_pick}, {"status": status_md}, api_name="train_cancel")
    bind(ctx, export_btn.click, export, {"run": run_pick, "epoch": epoch_pick}, {"message": export_md},
         api_name="train_export_epoch")
    bind(ctx, preset.change, apply_preset, {"choice": preset, "dataset_now": dataset, "name_now": name},
         {"dataset": dataset, "name": name, "trigger": trigger, "status": status_md, **form.inputs},
         api_name=False, queue=False, checked=False)
    filled = {**{f"form.{k}": w for k, w in form.inputs.items()}, "said": config_md}
    bind(ctx, save_cfg.click, save_configuration, {**form.inputs, "config_name": config_name},
         {"saved": saved_pick, "said": config_md}, api_name="train_config_save")
    bind(ctx, load_cfg.click, load_configuration, {"config_name": saved_pick}, filled, api_name="train_config_load")
    bind(ctx, upload_cfg.upload, load_configuration_file, {"path": upload_cfg}, filled, api_name=False)
    conditional = {**{k: form.inputs[k] for k in train_knobs.CONDITIONAL},
                   **{f"row{i}": row for i, row in enumerate(knob_rows)}}
    for changed in (method.change, model.change):
        bind(ctx, changed, settings_shown, {"method": method, "model": model}, conditional, api_name=False,
             queue=False, checked=False)
    bind(ctx, dataset.change, dataset_chosen, {"chosen": dataset}, {"trigger": trigger,
                                                                   "masked_loss": knobs["masked_loss"]},
         api_name=False, queue=False, checked=False)  # a name still being typed
    lists = {"dataset": dataset, "model": model, "run": run_pick, "sweep": sweep["pick"],
             "continue_from": knobs["continue_from"]}
    shown = {"run": run_pick, "sweep": sweep["pick"]}
    bind(ctx, refresh_btn.click, refresh_lists, shown, lists, api_name=False, queue=False, checked=False)
    return TabRefresh(refresh_lists, lists, inputs=shown)


def run_names(studio) -> list[str]:
    return [r.name for r in train.list_runs(studio)]


# ---- callbacks ---------------------------------------------------------------------------------------------------

def start(ctx: TabContext, v):
    status = train.start_run(ctx.studio, checked_subjects(ctx.studio, config_from_widgets(vars(v))))
    return {"run": gr.update(choices=run_names(ctx.studio), value=status.name), "status": status.line()}


def show_plan(ctx: TabContext, v):
    """The memory plan of the form's settings on the studio's device: "about 10.8 of your 16 GB"."""
    from studio.train.fit import plan_for

    try:
        config = planned_config(vars(v))
        return {"plan": plan_for(ctx.studio, config)[1].short()}
    except ValueError as e:  # settings not complete yet: said where the plan goes, not as an error
        return {"plan": f"Memory plan: not yet ({e})"}


def resume(ctx: TabContext, v):
    if not v.run:
        raise ValueError("`run` is empty: pick a run to resume")
    epochs = None if v.epochs is None else int(v.epochs)
    max_steps = None if v.max_steps is None else int(v.max_steps)
    lr = None if v.lr is None else float(v.lr)
    return {"status": train.resume_run(ctx.studio, v.run, epochs=epochs, max_steps=max_steps, lr=lr).line()}


def cancel(ctx: TabContext, v):
    if not v.run:
        raise ValueError("`run` is empty: pick a run to cancel")
    return {"status": train.cancel_run(ctx.studio, v.run).line()}


def status(ctx: TabContext, v):
    return RUN_VIEW.show(ctx, v.run, v.last)


def export(ctx: TabContext, v):
    if not v.run or not v.epoch:
        raise ValueError(f"pick a run and an epoch to export (run {v.run!r}, epoch {v.epoch!r})")
    if not str(v.epoch).strip().isdigit():
        raise ValueError(f"`epoch` must be the number of a saved epoch but is {v.epoch!r}")
    settings = ctx.studio.settings
    files = train.export_epoch(train.jobs.run_dir(settings, v.run), int(v.epoch), settings.own_models_dir)
    return {"message": "Exported: " + ", ".join(f"`{f}`" for f in files)}


def apply_preset(ctx: TabContext, v):
    chosen = replace(DEFAULTS, **PRESETS[preset_name(v.choice)])
    updates = {k: gr.update(value=written(RunConfig, k, getattr(chosen, k)))
               for k in ("method", "validation_prompts", *BASIC, *KNOBS)}
    if chosen.model:  # a preset made for one base; the others leave the chosen base alone
        updates["model"] = gr.update(value=chosen.model)
    if preset_name(v.choice) == preset_name("pocket") and not (v.dataset_now or "").strip():
        updates.update(_pocket_demo_fields(ctx, v.name_now))
    return updates


def _pocket_demo_fields(ctx: TabContext, name_now: str | None) -> dict:
    """The pocket preset with no dataset chosen: its star dataset (written now if it is not there yet) under the
    trigger zq, and a free run name, so Train is the next click."""
    from studio.pocket.demo import DEMO_TRIGGER, demo_dataset

    dataset, made = demo_dataset(ctx.studio)
    taken = set(run_names(ctx.studio))
    name = (name_now or "").strip() or next(n for n in [DEMO_TRIGGER, *(f"{DEMO_TRIGGER}-{i}" for i in range(2, 1000))]
                                            if n not in taken)
    said = f"wrote dataset `{dataset}` (8 star drawings) and " if made else ""
    return {"dataset": gr.update(choices=dataset_names(ctx.studio), value=dataset), "trigger": DEMO_TRIGGER,
            "name": name, "status": f"Preset pocket: {said}chose dataset `{dataset}` with trigger `{DEMO_TRIGGER}`. "
                                    f"Press Train."}


def save_configuration(ctx: TabContext, v):
    """The form's settings as they are, kept by name (unchecked: a configuration may leave the dataset empty)."""
    values = {k: x for k, x in vars(v).items() if k != "config_name"}
    config = request_from_values(RunConfig, {**values, "name": values.get("name") or ""})
    path = save_config(ctx.studio.settings, (v.config_name or "").strip(), config)
    return {"saved": gr.update(choices=saved_configs(ctx.studio.settings), value=path.stem),
            "said": f"Saved configuration **{path.stem}** (workspace/train_configs/{path.name}); Load puts it back "
                    f"in the form, `train --config` takes the file."}


def load_configuration(ctx: TabContext, v):
    if not v.config_name:
        raise ValueError("`config_name` is empty: pick a saved configuration")
    return _filled(load_config(ctx.studio.settings, v.config_name), f"configuration **{v.config_name}**")


def load_configuration_file(ctx: TabContext, v):
    if not v.path:
        return {}
    return _filled(RunConfig.load(Path(v.path)), f"**{Path(v.path).name}**")


def _filled(config: RunConfig, what: str) -> dict:
    """The form showing `config`, and a line saying where it came from."""
    shown = {f"form.{k}": x for k, x in widget_values(RunConfig, config, FORM_SETTINGS).items()}
    return {**shown, "said": f"Loaded {what} into the form: check the dataset and the run's name, then Train."}


def settings_shown(ctx: TabContext, v):
    """The settings that apply to the method and base model picked shown, the others hidden."""
    ref = picked_model(ctx.studio, v.model)
    family = None if ref is None else ref.family
    return {**{k: gr.update(visible=x) for k, x in train_knobs.shown(v.method, family).items()},
            **{f"row{i}": gr.update(visible=x) for i, x in enumerate(train_knobs.rows_shown(v.method, family))}}


def dataset_chosen(ctx: TabContext, v):
    """The dataset's trigger word, and masked training on when it has masks (off, and saying so, when not)."""
    from studio.data import dataset_trigger
    from studio.data.library import find_dataset
    from studio.data.masks import MASK_SUFFIX

    found = dataset_trigger(ctx.studio.settings, v.chosen)
    out = {"trigger": found} if found else {}
    try:
        masks = len(list(find_dataset(ctx.studio.settings, v.chosen).glob(f"*{MASK_SUFFIX}")))
    except ValueError:  # a name being typed, or a folder not there (yet)
        return out
    info = f"{masks} masks in this dataset" if masks else "this dataset has no masks"
    return {**out, "masked_loss": gr.update(value=bool(masks), info=info)}


def refresh_lists(ctx: TabContext, v):
    """What is on disk now; the run and the sweep shown stay, or (none shown, or it is gone) the newest are."""
    studio = ctx.studio
    runs, sweeps = run_names(studio), sweep_panel.sweep_names(studio)
    return {"dataset": gr.update(choices=dataset_names(studio)), "model": gr.update(choices=model_choices(studio)),
            "run": shown_job(runs, v.run), "sweep": shown_job(sweeps, getattr(v, "sweep", None)),
            "continue_from": gr.update(choices=["", *runs])}  # "" (the first choice): a new LoRA


def status_views(ctx: TabContext, status) -> dict:
    """RunStatus -> the status text, the charts (loss; likeness where the dataset has faces; per subject; what the
    base's checker sees), grids, the table of validated epochs and the epochs one can export."""
    lines = [f"**{status.line()}**"]
    lines += [f"**Note:** {w}" for w in status.warnings]  # what the run does otherwise than asked stays in sight
    chosen = next((m for m in reversed(status.messages) if m.startswith(PLAN_WORDS)), None)
    if chosen and chosen not in status.messages[-4:]:  # what the validation budget chose stays in sight
        lines.append(f"Validation: {chosen}")
    if status.messages:
        lines.append("\n".join(f"- {m}" for m in status.messages[-4:]))
    if status.checkpoint_step and status.state in ("cancelled", "stopped", "failed"):
        lines.append(f"Resume continues from the checkpoint at step {status.checkpoint_step}.")
    validated = [v for v in status.validations if v.get("grid") or v.get("scores") or v.get("subjects")]
    if status.best_epoch is not None:
        judged = any(v.get("worst_score") is not None for v in validated)
        how = ("every subject kept: the lowest worst-subject score" if judged and status.config.extra_subjects else
               "the most pictures the base's checker sees drawn as the subject's shape" if judged else
               "most faces found, then lowest mean sim-score")
        lines.append(f"Best epoch ({how}): **{status.best_epoch}**")
    if status.files:
        lines.append("Files: " + ", ".join(f"`{f}`" for f in status.files))
    every = max(1, len(status.losses) // 2000)  # a long run's curve is thinned to what a plot can show
    grids = []
    for v in validated:
        if v.get("grid") and Path(v["grid"]).is_file():  # (a grid removed by hand is left out, not an error)
            score = f", mean sim-score {v['mean_score']:.3f}" if v.get("mean_score") is not None else ""
            star = " (best)" if v["epoch"] == status.best_epoch else ""
            grids.insert(0, (served(ctx.studio.settings, v["grid"]), f"epoch {v['epoch']}{score}{star}"))  # newest first
    base = status.base_validation or {}
    if base.get("grid") and Path(base["grid"]).is_file():  # last: what training started from
        before = (f"run {status.config.continue_from}'s LoRA, before training" if status.config.continue_from
                  else "base model, before training")
        grids.append((served(ctx.studio.settings, base["grid"]), before))
    subjects = [(v["epoch"], row) for v in validated for row in v.get("subjects") or []]
    per_subject = [(e, row["score"], row["trigger"]) for e, row in subjects
                   if row.get("score") is not None and row.get("faces_found") is not None]
    shapes = [(e, row["kept"] / row["pictures"], row["trigger"]) for e, row in subjects
              if row.get("kept") is not None and row.get("pictures")]
    scored = [(v["epoch"], v["mean_score"]) for v in validated if v.get("mean_score") is not None]
    return {"status": "\n\n".join(lines), "loss": LOSS.value(status.losses[::every]),
            "scores": LIKENESS.value(scored, visible=bool(scored)),  # only when there is likeness to show
            "subject_scores": PER_SUBJECT.value(per_subject, visible=bool(per_subject)),
            "shapes": SHAPES.value(shapes, visible=bool(shapes)), "grids": grids,
            "table": epoch_table(status, validated), "epochs": epoch_choices(status)}


def epoch_table(status, validated: list[dict]) -> dict:
    """A row per validated epoch, with the columns of what scored it (sim-scores where the dataset has faces, the
    base's checker's verdict, each subject's line with several)."""
    faced = any(v.get("scores") for v in validated)
    checked = any(row.get("kept") is not None for v in validated for row in v.get("subjects") or [])
    several = bool(status.config.extra_subjects)
    headers = ["epoch", "loss", *(["mean sim-score", "sim-score per prompt"] if faced else []),
               *(["drawn as its shape"] if checked else []), *(["per subject"] if several else []), "best"]
    rows = []
    for v in validated:
        row = [v["epoch"], number(v.get("loss"), 4)]
        if faced:
            row += [number(v.get("mean_score"), 4),
                    " / ".join("no face" if s is None else f"{s:.3f}" for s in v.get("scores") or [])]
        if checked:
            row.append(", ".join(f"{r['kept']}/{r['pictures']}" for r in v.get("subjects") or []
                                 if r.get("kept") is not None))
        if several:
            row.append("\n".join(sampling.subject_lines(v)))
        rows.append(row + ["best" if v["epoch"] == status.best_epoch else ""])
    return {"headers": headers, "data": rows}


def epoch_choices(status):
    """The epochs whose weights are kept (only those can be exported), or why there are none."""
    from studio.train.export import saved_epochs_note

    if status.saved_epochs:
        return gr.update(choices=[str(e) for e in status.saved_epochs], info=f"{len(status.saved_epochs)} saved")
    try:
        why = saved_epochs_note(status.run_dir)
    except (OSError, ValueError):  # a run folder half-written or removed meanwhile
        why = "no epoch is saved"
    return gr.update(choices=[], value=None, info=why)


RUN_VIEW = job_watch.JobView(
    read=train.run_status, key=lambda s: [s.step, len(s.validations), len(s.messages), s.message],
    views=status_views, empty={"status": NO_RUN},
    picked=lambda s: {f"form.{k}": x for k, x in widget_values(RunConfig, s.config, FORM_SETTINGS).items()})
