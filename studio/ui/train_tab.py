"""Train tab: pick a dataset, a base model and a method, train in a child process, watch loss and validation grids,
cancel or resume, and export the epoch whose likeness scores best; the Sweep accordion (ui/sweep_panel.py) trains a grid
of settings and scores each cell."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gradio as gr

from studio import train
from studio.train import sampling
from studio.fields import written
from studio.train.config import RunConfig
from studio.train.presets import PRESETS, preset_name
from studio.train.schedule import PLAN_WORDS
from studio.ui import job_watch, sweep_panel, train_knobs
from studio.ui.common import TabContext, TabRefresh, bind, dataset_names, model_choices, number
from studio.ui.forms import Form
from studio.ui.serving import served
from studio.ui.train_knobs import DEFAULTS, KNOBS, checked_subjects, config_from_widgets

NO_RUN = "(no run yet)"


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    runs = run_names(studio)
    form = Form(ctx, RunConfig)  # every widget below named by its RunConfig field: /train_start's parameters
    # 1. What to train
    with gr.Row():
        dataset = form.widget("dataset", value=None)
        model = form.widget("model")
        method = form.widget("method", gr.Radio)
        preset = gr.Dropdown(list(PRESETS), value="default", label="Preset")
    with gr.Row():
        name = form.widget("name", placeholder="e.g. tim-lora-v1")
        trigger = form.widget("trigger", placeholder="e.g. ohwx")
        refresh_btn = gr.Button("Refresh lists", size="sm")
    form.widget("validation_prompts")

    # 2. Knobs, with the RunConfig defaults
    with gr.Accordion("Settings", open=False):
        train_knobs.knobs(form)
    form.rest()  # a setting declared since, not yet placed: shown (and taken by /train_start) all the same
    knobs = {k: form.inputs[k] for k in KNOBS}

    # 3. Run controls and what a run shows
    with gr.Row():
        start_btn = gr.Button("Train", variant="primary")
        resume_btn = gr.Button("Resume")
        cancel_btn = gr.Button("Cancel")
        # empty until the page loads: the load's refresh then picks the newest run, and that change shows it
        run_pick = gr.Dropdown(runs, value=None, label="Run", allow_custom_value=True)
    ctx.widgets["train.run"] = run_pick
    status_md = gr.Markdown(NO_RUN)
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", title="Loss", height=260)
        score_plot = gr.LinePlot(x="epoch", y="mean sim-score", title="Likeness (mean sim-score, lower is better)",
                                 height=260)
        subject_plot = gr.LinePlot(x="epoch", y="score", color="subject", height=260, visible=False,
                                   title="Per subject (sim-score, or on pocket the share not drawn as its shape; "
                                         "lower is better)")
    with gr.Row():
        grids = gr.Gallery(label="Validation grids, newest first (one column per prompt)", columns=1, height=460,
                           object_fit="contain", format="png", scale=3, elem_id="train-grids")
        with gr.Column(scale=2):
            epoch_table = gr.Dataframe(headers=["epoch", "loss", "mean sim-score", "sim-score per prompt", "",
                                                "per subject"],
                                       label="Epochs", interactive=False)
            # any value: the run's own list of saved epochs is checked when exporting (the choices follow the run)
            epoch_pick = gr.Dropdown([], label="Epoch to export", allow_custom_value=True)
            export_btn = gr.Button("Export epoch")
            export_md = gr.Markdown()
    sweep = sweep_panel.build(ctx, form, preset)

    # 4. Wiring: the API endpoints take these names (/train_start: RunConfig's fields)
    views = {"status": status_md, "loss": loss_plot, "scores": score_plot, "grids": grids, "table": epoch_table,
             "epochs": epoch_pick, "run_epochs": knobs["epochs"], "run_max_steps": knobs["max_steps"],
             "run_lr": knobs["lr"], "subject_scores": subject_plot}
    timer = job_watch.follow(ctx, RUN_VIEW, run_pick, "run", views, api_name="train_status")
    bind(ctx, start_btn.click, start, form.inputs, {"run": run_pick, "status": status_md},
         api_name="train_start").success(job_watch.timer_on, None, timer, api_name=False, queue=False)
    bind(ctx, resume_btn.click, resume, {"run": run_pick, "epochs": knobs["epochs"], "max_steps": knobs["max_steps"],
                                         "lr": knobs["lr"]},
         {"status": status_md}, api_name="train_resume").success(job_watch.timer_on, None, timer, api_name=False,
                                                                 queue=False)
    bind(ctx, cancel_btn.click, cancel, {"run": run_pick}, {"status": status_md}, api_name="train_cancel")
    bind(ctx, export_btn.click, export, {"run": run_pick, "epoch": epoch_pick}, {"message": export_md},
         api_name="train_export_epoch")
    bind(ctx, preset.change, apply_preset, {"choice": preset, "dataset_now": dataset, "name_now": name},
         {"dataset": dataset, "name": name, "trigger": trigger, "status": status_md, **form.inputs},
         api_name=False, queue=False, checked=False)
    bind(ctx, dataset.change, dataset_chosen, {"chosen": dataset}, {"trigger": trigger,
                                                                   "masked_loss": knobs["masked_loss"]},
         api_name=False, queue=False, checked=False)  # a name still being typed
    lists = {"dataset": dataset, "model": model, "run": run_pick, "sweep": sweep["pick"],
             "continue_from": knobs["continue_from"]}
    bind(ctx, refresh_btn.click, refresh_lists, {"run": run_pick}, lists, api_name=False, queue=False, checked=False)
    return TabRefresh(refresh_lists, lists, inputs={"run": run_pick})


def run_names(studio) -> list[str]:
    return [r.name for r in train.list_runs(studio)]


# ---- callbacks ---------------------------------------------------------------------------------------------------

def start(ctx: TabContext, v):
    status = train.start_run(ctx.studio, checked_subjects(ctx.studio, config_from_widgets(vars(v))))
    return {"run": gr.update(choices=run_names(ctx.studio), value=status.name), "status": status.line()}


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
               for k in ("method", "validation_prompts", *KNOBS)}
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
    """What is on disk now; the run shown stays, or (none shown, or it is gone) the newest run is."""
    studio = ctx.studio
    runs = run_names(studio)
    run = v.run if v.run in runs else (runs[0] if runs else None)
    return {"dataset": gr.update(choices=dataset_names(studio)), "model": gr.update(choices=model_choices(studio)),
            "run": gr.update(choices=runs, value=run), "sweep": gr.update(choices=sweep_panel.sweep_names(studio)),
            "continue_from": gr.update(choices=["", *runs])}  # "" (the first choice): a new LoRA


def status_views(ctx: TabContext, status) -> dict:
    """RunStatus -> the status text, loss and score plots, grids, epoch table and epoch choices."""
    import pandas as pd

    lines = [f"**{status.line()}**"]
    chosen = next((m for m in reversed(status.messages) if m.startswith(PLAN_WORDS)), None)
    if chosen and chosen not in status.messages[-4:]:  # what the validation budget chose stays in sight
        lines.append(f"Validation: {chosen}")
    if status.messages:
        lines.append("\n".join(f"- {m}" for m in status.messages[-4:]))
    if status.checkpoint_step and status.state in ("cancelled", "stopped", "failed"):
        lines.append(f"Resume continues from the checkpoint at step {status.checkpoint_step}.")
    if status.best_epoch is not None:
        how = ("every subject kept: the lowest worst-subject score" if any(
            v.get("worst_score") is not None for v in status.validations) else
            "most faces found, then lowest mean sim-score")
        lines.append(f"Best epoch by likeness ({how}): **{status.best_epoch}**")
    if status.files:
        lines.append("Files: " + ", ".join(f"`{f}`" for f in status.files))
    every = max(1, len(status.losses) // 2000)  # a long run's curve is thinned to what a plot can show
    # numbers, typed: an empty or object column makes the plot's axis categorical (one tick per value)
    loss = pd.DataFrame(status.losses[::every], columns=["step", "loss"]).astype({"step": int, "loss": float})
    scored = [(v["epoch"], v["mean_score"]) for v in status.validations if v.get("mean_score") is not None]
    scores = pd.DataFrame(scored, columns=["epoch", "mean sim-score"]).astype({"epoch": int, "mean sim-score": float})
    grids = []
    for v in status.validations:
        if v.get("grid") and Path(v["grid"]).is_file():  # (a grid removed by hand is left out, not an error)
            score = f", mean sim-score {v['mean_score']:.3f}" if v.get("mean_score") is not None else ""
            star = " (best)" if v["epoch"] == status.best_epoch else ""
            grids.insert(0, (served(ctx.studio.settings, v["grid"]), f"epoch {v['epoch']}{score}{star}"))  # newest first
    base = status.base_validation or {}
    if base.get("grid") and Path(base["grid"]).is_file():  # last: what training started from
        before = (f"run {status.config.continue_from}'s LoRA, before training" if status.config.continue_from
                  else "base model, before training")
        grids.append((served(ctx.studio.settings, base["grid"]), before))
    table = [[v["epoch"], number(v.get("loss"), 4), number(v.get("mean_score"), 4),
              " / ".join("no face" if s is None else f"{s:.3f}" for s in v.get("scores") or []),
              "best" if v["epoch"] == status.best_epoch else "", "\n".join(sampling.subject_lines(v))]
             for v in status.validations]
    per_subject = [(v["epoch"], row["trigger"], row["score"]) for v in status.validations
                   for row in v.get("subjects") or [] if row.get("score") is not None]
    subject_scores = gr.update(visible=False)
    if per_subject:
        frame = pd.DataFrame(per_subject, columns=["epoch", "subject", "score"]).astype({"epoch": int, "score": float})
        subject_scores = gr.update(value=frame, visible=True)
    # the likeness chart only when there is likeness to show (a dataset without faces has none)
    return {"status": "\n\n".join(lines), "loss": loss, "scores": gr.update(value=scores, visible=bool(scored)),
            "grids": grids, "table": table, "epochs": gr.update(choices=[str(v["epoch"]) for v in status.validations]),
            "subject_scores": subject_scores}


RUN_VIEW = job_watch.JobView(
    read=train.run_status, key=lambda s: [s.step, len(s.validations), len(s.messages), s.message],
    views=status_views, empty={"status": NO_RUN},
    # a run picked: Resume starts from its own length and learning rate
    picked=lambda s: {"run_epochs": s.config.epochs, "run_max_steps": s.config.max_steps, "run_lr": s.config.lr})
