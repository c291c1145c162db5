"""The Train tab's Sweep accordion: a grid of knobs over the tab's settings (seed 001's lr x steps), trained cell by
cell in a child process (studio.train.sweep_jobs), shown as one table, one picture grid (a row per cell, the base
model first), the charts of score against each knob and the cells' loss curves; the best cell is exported from here."""

from __future__ import annotations

import gradio as gr

from studio.fields import declared
from studio.train import sweep_jobs
from studio.train.sweep import SET_BY_SWEEP, SweepRequest, grid_text, preset_grid
from studio.ui import job_watch
from studio.ui.charts import LineChart
from studio.ui.common import TabContext, bind, number
from studio.ui.forms import Form, request_from_values
from studio.ui.serving import served

NO_SWEEP = "(no sweep yet)"
DEFAULT_GRID = "lr=1e-4,1e-3\nsteps=100,200"
LOSS = LineChart("step", "loss", color="cell", title="Loss per cell")
TABLE_HEADERS = ["cell", "settings", "state", "mean CLIP", "CLIP per prompt", "likeness", "no face",
                 "drawn as its shape", "loss", "time s", "reason", ""]


def build(ctx: TabContext, run_form: Form, preset) -> dict:
    """The accordion under the Train tab's run controls; `run_form` is the tab's RunConfig form (the settings every
    cell shares: /sweep_start takes them all but the run's name, beside the sweep's own), `preset` its preset dropdown
    (a sweep preset fills the grid)."""
    names = sweep_names(ctx.studio)
    form = Form(ctx, SweepRequest)
    with gr.Accordion("Sweep", open=False):
        with gr.Row():
            form.widget("name", placeholder="e.g. tim-lr-steps")
            # small, so a first sweep ends in minutes: two learning rates, scored at 100 and 200 steps of one run each
            grid = form.widget("grid", value=DEFAULT_GRID)
            form.put("preset", preset)
        with gr.Row():
            start_btn = gr.Button("Start sweep", variant="primary")
            resume_btn = gr.Button("Resume sweep")
            cancel_btn = gr.Button("Cancel sweep")
            pick = gr.Dropdown(names, value=names[0] if names else None, label="Sweep", allow_custom_value=True)
        status_md = gr.Markdown(NO_SWEEP)
        table = gr.Dataframe(headers=TABLE_HEADERS, label="Cells (the base model first; best marked)",
                             interactive=False)
        with gr.Row():
            pictures = gr.Gallery(label="Grid (a row per cell) and charts", columns=2, height=420,
                                  object_fit="contain", format="png", scale=3)
            loss_plot = LOSS.widget(height=300, scale=2)
        with gr.Row():
            # any value: the sweep's own cells are checked when exporting (the choices follow the sweep)
            cell_pick = gr.Dropdown([], label="Cell to export", info="empty: the best cell", allow_custom_value=True)
            export_btn = gr.Button("Export cell")
            export_md = gr.Markdown()

    views = {"status": status_md, "table": table, "pictures": pictures, "loss": loss_plot, "cells": cell_pick}
    timer = job_watch.follow(ctx, SWEEP_VIEW, pick, "sweep", views, api_name="sweep_status", period_s=2.0)
    shared = {k: w for k, w in run_form.inputs.items() if k not in SET_BY_SWEEP}
    bind(ctx, start_btn.click, start, {**form.inputs, **shared},
         {"sweep": pick, "status": status_md}, api_name="sweep_start").success(
        job_watch.timer_on, None, timer, api_name=False, queue=False)
    bind(ctx, resume_btn.click, resume, {"sweep": pick}, {"status": status_md}, api_name="sweep_resume").success(
        job_watch.timer_on, None, timer, api_name=False, queue=False)
    bind(ctx, cancel_btn.click, cancel, {"sweep": pick}, {"status": status_md}, api_name="sweep_cancel")
    bind(ctx, export_btn.click, export, {"sweep": pick, "cell": cell_pick}, {"message": export_md},
         api_name="sweep_export")
    bind(ctx, preset.change, preset_chosen, {"choice": preset}, {"grid": grid}, api_name=False, queue=False)
    return {"pick": pick}


def sweep_names(studio) -> list[str]:
    return [s.name for s in sweep_jobs.list_sweeps(studio)]


# ---- callbacks ---------------------------------------------------------------------------------------------------

def start(ctx: TabContext, v):
    """/sweep_start: the sweep's settings (name, grid, preset) and the run settings every cell shares, by name."""
    from studio.ui.train_knobs import checked_subjects, config_from_widgets

    values = vars(v)
    own = {k: values[k] for k in declared(SweepRequest)}
    name = (own["name"] or "").strip()
    base = checked_subjects(ctx.studio, config_from_widgets({**{k: x for k, x in values.items() if k not in own},
                                                             "name": name or "sweep"}))
    status = sweep_jobs.start_sweep(ctx.studio, request_from_values(SweepRequest, own, base=base))
    return {"sweep": gr.update(choices=sweep_names(ctx.studio), value=status.name), "status": status.line()}


def resume(ctx: TabContext, v):
    if not v.sweep:
        raise ValueError("`sweep` is empty: pick a sweep to resume")
    return {"status": sweep_jobs.resume_sweep(ctx.studio, v.sweep).line()}


def cancel(ctx: TabContext, v):
    if not v.sweep:
        raise ValueError("`sweep` is empty: pick a sweep to cancel")
    return {"status": sweep_jobs.cancel_sweep(ctx.studio, v.sweep).line()}


def export(ctx: TabContext, v):
    if not v.sweep:
        raise ValueError("`sweep` is empty: pick a sweep")
    files = sweep_jobs.export_cell(ctx.studio, v.sweep, v.cell or "")
    return {"message": "Exported: " + ", ".join(f"`{f}`" for f in files)}


def preset_chosen(ctx: TabContext, v):
    grid = preset_grid(v.choice) if v.choice else None
    return {"grid": grid_text(grid)} if grid else {}


def status(ctx: TabContext, v):
    return SWEEP_VIEW.show(ctx, v.sweep, v.last)


def status_views(ctx: TabContext, current) -> dict:
    """SweepStatus -> the status text, the table, the pictures, the loss curves and the cells one can export."""
    report, settings = current.report, ctx.studio.settings
    lines = [f"**{current.line()}**", *[f"- {n}" for n in report["notes"]]]
    if current.messages:
        lines.append("\n".join(f"- {m}" for m in current.messages[-4:]))
    rows = []
    if report.get("base"):
        s = report["base"]["scores"]
        rows.append(["base", "the base model", "", number(s["mean_clip"], 2),
                     " / ".join(f"{x:.1f}" for x in s["clip"]), number(s["mean_sim"], 4),
                     "" if s["no_face"] is None else s["no_face"], _share(s.get("shape")), "", "", "", ""])
    for c in report["cells"]:
        s = c["scores"]
        rows.append([c["id"], c["label"], c["state"], number(s["mean_clip"], 2),
                     " / ".join(f"{x:.1f}" for x in s["clip"]), number(s["mean_sim"], 4),
                     "" if s["no_face"] is None else s["no_face"], _share(s.get("shape")), number(c["loss"], 4),
                     number(c["time_s"], 1),
                     c["reason"], "best" if c["best"] else ""])
    shown = [p for p in [report.get("grid_image"), *report.get("charts", [])] if p]
    if shown:
        pictures = [(served(settings, p), "grid" if p == report.get("grid_image") else "chart") for p in shown]
    else:  # under way: each cell's validation pictures as they come
        pictures = [(served(settings, c["grid"]), f"{c['id']} {c['label']} ({c['state']})")
                    for c in report["cells"] if c["grid"]]
    curves = [(step, loss, c["id"]) for c in report["cells"] for step, loss in c["losses"]]
    done = [c["id"] for c in report["cells"] if c["state"] == "done"]
    return {"status": "\n\n".join(lines), "table": rows, "pictures": pictures,
            "loss": LOSS.value(curves), "cells": gr.update(choices=done)}


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


SWEEP_VIEW = job_watch.JobView(
    read=sweep_jobs.sweep_status, views=status_views, empty={"status": NO_SWEEP},
    key=lambda s: [len(s.messages), s.message,
                   [[c["state"], c["loss"] is not None and round(c["loss"], 6)] for c in s.report["cells"]]])
