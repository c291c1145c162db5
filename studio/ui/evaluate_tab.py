"""Evaluate tab: prompts x seeds x variants scored by what fits (likeness, CLIP, the pocket checker) -> grid, charts and
tables; past runs reopened."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from studio.evaluate import (EvaluationCancelled, EvaluationReport, EvaluationRequest, evaluate, list_evaluations,
                             load_evaluation, parse_variant)
from studio.evaluate.charts import TITLES
from studio.evaluate.defaults import defaults_for
from studio.evaluate.scoring import against_lines, summary_table
from studio.models.clip import HUB_CLIP, TINY_CLIP, default_clip, real_clip_models
from studio.ui.common import TabContext, TabRefresh, bind, dataset_names, number, progress_fn
from studio.ui.forms import Form, request_from_values
from studio.ui.names import check_listed, is_listed, listed
from studio.ui.serving import served

NO_CLIP = "(no CLIP score)"
NO_REFERENCE = "(none: no likeness score)"
_SCORES_HELP = ("What is scored follows the run: **likeness** (sim-score) when the reference has faces, **CLIP score** "
                "when a CLIP model is chosen, and **what was drawn** (the pocket checker) when every variant is "
                "builtin:pocket.")


def clip_choices(settings) -> list[tuple[str, str]]:
    """The CLIP dropdown: none, the real CLIP models on disk, the hub default when it may be downloaded, and the
    builtin with random weights, each saying what it is."""
    real = real_clip_models(settings)
    choices = [(NO_CLIP, NO_CLIP), *((f"{name} (on disk)", name) for name in real)]
    if HUB_CLIP not in real and settings.allow_downloads:
        choices.append((f"{HUB_CLIP} (downloads about 600 MB)", HUB_CLIP))
    choices.append((f"{TINY_CLIP} (random weights, for tests: its scores mean nothing)", TINY_CLIP))
    return choices


def _clip_note(clip_model: str) -> str:
    if clip_model in (None, "", NO_CLIP):
        return ("No CLIP model: the report has no CLIP column. Put real CLIP weights in models/clip/ (e.g. "
                "openai/clip-vit-base-patch16) and they are picked by default.")
    if clip_model == TINY_CLIP:
        return (f"**{TINY_CLIP} has random weights (for offline tests): its CLIP scores mean nothing.** Put real CLIP "
                f"weights in models/clip/ (e.g. openai/clip-vit-base-patch16) for scores that do.")
    return f"CLIP score (0-100, torchmetrics' definition) of each picture with its prompt, by {clip_model}."


def request_from_widgets(values: dict) -> EvaluationRequest:
    """/evaluate's inputs (EvaluationRequest's fields, by name) as an EvaluationRequest: the choices that mean none
    as "", then the one conversion flags and API calls go through."""
    none = {"reference": NO_REFERENCE, "clip_model": NO_CLIP}
    values = {**values, **{k: "" for k, choice in none.items() if values.get(k) == choice}}
    return request_from_values(EvaluationRequest, values)


def checked_names(studio, request: EvaluationRequest) -> EvaluationRequest:
    """`request`, once every model, LoRA, embedding and dataset its text fields name is one the studio lists."""
    for variant in request.variants:
        check_listed(studio, "base model", variant.model, "variants")
        check_listed(studio, "LoRA", [lc.name for lc in variant.loras], "variants")
        check_listed(studio, "embedding", variant.embeddings, "variants")
    check_listed(studio, "dataset", request.also_against, "also_against")
    return request


def _variants(text: str | None) -> list:
    return [parse_variant(line) for line in (text or "").splitlines() if line.strip()]


# ---- what the form starts with -------------------------------------------------------------------------------------

def _start(studio, variants_text: str | None = None) -> dict:
    """Prompts, seeds, reference (and the variants, when none are given) the studio suggests, as widget text."""
    start = defaults_for(studio, None if variants_text is None else _variants(variants_text))
    why = start.why
    if variants_text is None:  # a LoRA's own base, when the studio does not list it (a path it was trained on)
        unlisted = {v.model for v in start.variants if v.model and not is_listed(studio, "base model", v.model)}
        variants = [replace(v, model="") if v.model in unlisted else v for v in start.variants]
        if unlisted:
            why += (f"; {len(unlisted)} LoRA base model(s) the studio does not list, so the studio's default base "
                    f"instead")
        variants_text = "\n".join(v.spec() for v in variants)
    return {"variants": variants_text, "prompts": "\n".join(start.prompts), "seeds": ", ".join(map(str, start.seeds)),
            "reference": start.reference or NO_REFERENCE,
            "why": f"Starting values: {why}. **Suggest** fills them in again for the variants above."}


def _reference_choices(studio) -> list[str]:
    return [NO_REFERENCE, *dataset_names(studio)]


# ---- results -------------------------------------------------------------------------------------------------------

def _tables(report: EvaluationReport) -> tuple[list[list], list[list], list[str], list[str]]:
    """The summary (one row per variant) and the per-image table, with the columns of the scores the run has."""
    likeness, clip, checker = report.has_likeness, report.has_clip, report.has_checker
    summary_headers, summary = summary_table(report.by_variant(), report.request.tolerance, likeness=likeness,
                                             clip=clip, checker=checker)
    others = list(dict.fromkeys(k for r in report.rows for k in r.sim_against))  # the other subjects' datasets
    image_headers = (["variant", "prompt", "seed"] + (["sim-score"] if likeness else [])
                     + [f"sim-score vs {name}" for name in others]
                     + (["drawn", "asked for", "as asked"] if checker else []) + (["CLIP score"] if clip else [])
                     + ["file"])
    images = []
    for r in report.rows:
        row = [r.variant, r.prompt, r.seed]
        if likeness:
            row.append("no face" if r.sim_score is None else round(r.sim_score, 4))
        row += ["no face" if r.sim_against.get(name) is None else round(r.sim_against[name], 4) for name in others]
        if checker:
            asked = " ".join(w for w in (r.asked_color, r.asked_label) if w) or "-"
            row += [" ".join(w for w in (r.drawn_color, r.drawn) if w), asked,
                    "-" if r.as_asked is None else "yes" if r.as_asked else "no"]
        if clip:
            row.append(number(r.clip_score, 2))
        images.append(row + [r.file])
    return summary, images, summary_headers, image_headers


def _view(report: EvaluationReport, status: str, settings):
    """Widget values for a report: status, grid, charts, summary, images, past runs, files."""
    summary, images, summary_headers, image_headers = _tables(report)
    charts = [(served(settings, report.folder / c), TITLES.get(c, c)) for c in report.charts]
    grid = served(settings, report.folder / report.grid) if report.grid else None
    past = gr.update(choices=[e.name for e in list_evaluations(settings)], value=report.name)
    files = [served(settings, report.folder / "report.csv"), served(settings, report.folder / "report.json")]
    return {"status": status, "grid": grid, "charts": charts, "summary": pd.DataFrame(summary, columns=summary_headers),
            "images": pd.DataFrame(images, columns=image_headers), "past": past, "files": files}


def _status(report: EvaluationReport, prefix: str) -> str:
    head = f"{prefix} **{report.name}**: {len(report.rows)} image(s)"
    if report.has_likeness:
        found = sum(r.sim_score is not None for r in report.rows)
        head += (f", {found} with a face, {len(report.rows) - found} with no face found; reference: {report.reference}."
                 f" Lower sim-score is more alike; <= {report.request.tolerance:g} counts as the same person")
    against = against_lines(report.rows, [v.label for v in report.request.variants], report.request.reference)
    if against:
        head += ". " + "; ".join(against)
    if report.has_checker:
        asked = [r for r in report.rows if r.as_asked is not None]
        head += (f"; drawn as the prompt asks (pocket checker): {sum(bool(r.as_asked) for r in asked)} of "
                 f"{len(asked)}")
    lines = [f"{head}. Saved in `{report.folder}` ({report.seconds:.1f} s)."]
    lines += [f"- {note}" for note in [*report.notes, report.clip_note]]
    return "\n".join(lines)


# ---- layout --------------------------------------------------------------------------------------------------------

def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    settings = studio.settings
    start = _start(studio)
    form = Form(ctx, EvaluationRequest)  # every widget named by its field: /evaluate's parameters
    with gr.Row():
        with gr.Column(scale=2):
            form.widget("name", value="", placeholder="my-lora-vs-base", elem_id="evaluate-name")
            variants = form.widget("variants", value=start["variants"])
            prompts = form.widget("prompts", value=start["prompts"])
            seeds = form.widget("seeds", value=start["seeds"])
            with gr.Row():
                why = gr.Markdown(start["why"])
                suggest_btn = gr.Button("Suggest", scale=0, min_width=100)
            reference = form.widget("reference", choices=_reference_choices(studio), value=start["reference"])
            listed(ctx, reference, "dataset", NO_REFERENCE)  # "(none...)" names no dataset
            form.widget("also_against", lines=1)
            clip = listed(ctx, form.put("clip_model", gr.Dropdown(
                clip_choices(settings), value=default_clip(settings) or NO_CLIP,
                label=form.settings["clip_model"].label, info=form.settings["clip_model"].help)), "CLIP model", NO_CLIP)
            clip_note = gr.Markdown(_clip_note(default_clip(settings)))
            with gr.Accordion("Generation (the same for every variant)", open=False):
                form.rows(form.missing())
            with gr.Row():
                run_btn = gr.Button("Evaluate", variant="primary")
                stop_btn = gr.Button("Stop")
            past = listed(ctx, gr.Dropdown([e.name for e in list_evaluations(settings)], value=None,
                                           label="Past evaluations"), "evaluation")
        with gr.Column(scale=3):
            status = gr.Markdown("Name the evaluation, check the variants, then press Evaluate. " + _SCORES_HELP,
                                 elem_id="evaluate-status")
            summary = gr.Dataframe(label="Per variant", interactive=False, wrap=True)
            # The /evaluate API's list of charts; the page shows them one per row below (a gallery's square cells
            # would shrink wide charts).
            charts = gr.Gallery(label="Charts", format="png", visible=False)
            with gr.Column(elem_id="evaluate-charts"):
                chart_views = [gr.Image(type="filepath", format="png", interactive=False, visible=False,
                                        show_label=False) for _ in range(len(TITLES))]  # each chart has its title
            # at its own size, as wide as the column allows: a fixed height shrank a tall grid's labels unreadable
            grid = gr.Image(label="Grid: rows prompt x seed, columns variants", type="filepath", format="png",
                            elem_id="evaluate-grid")
            images = gr.Dataframe(label="Per image", interactive=False, wrap=True, max_height=320)
            files = gr.File(label="report.csv and report.json", file_count="multiple", interactive=False)
    # What the studio last filled in: on tab open, fields still holding it follow what is on disk now.
    suggested = gr.State({k: start[k] for k in ("variants", "prompts", "seeds", "reference")})

    # The API endpoint /evaluate takes EvaluationRequest's field names
    inputs = form.inputs
    outputs = {"status": status, "grid": grid, "charts": charts, "summary": summary, "images": images, "past": past,
               "files": files}
    shown = {f"chart{i}": view for i, view in enumerate(chart_views)}
    ran = bind(ctx, run_btn.click, run, inputs, outputs, api_name="evaluate", gpu=True)
    bind(ctx, ran.success, show_charts, {"charts": charts}, shown, api_name=False, queue=False)
    bind(ctx, stop_btn.click, stop, None, None, api_name=False, queue=False)
    opened = bind(ctx, past.input, show_past, {"chosen": past}, outputs, api_name="evaluation")
    bind(ctx, opened.success, show_charts, {"charts": charts}, shown, api_name=False, queue=False)
    filled = {"variants": variants, "prompts": prompts, "seeds": seeds, "reference": reference, "why": why,
              "suggested": suggested}
    bind(ctx, suggest_btn.click, suggest, {"variants": variants}, filled, api_name=False, queue=False)
    clip.change(_clip_note, clip, clip_note, api_name=False, queue=False)
    lists = {"past": past, "clip": clip, **filled, **outputs, **shown}
    return TabRefresh(refresh_lists, lists, inputs={"variants": variants, "prompts": prompts, "seeds": seeds,
                                                    "reference": reference, "suggested": suggested, "shown": past})


# ---- callbacks -----------------------------------------------------------------------------------------------------

def run(ctx: TabContext, v, request: gr.Request, progress):
    settings = ctx.studio.settings
    evaluation = checked_names(ctx.studio, request_from_widgets(vars(v)))
    should_stop = ctx.stops.begin(request, "evaluate")
    try:
        report = evaluate(ctx.studio, evaluation, should_stop=should_stop, progress=progress_fn(progress))
    except EvaluationCancelled as e:
        return _view(e.report, _status(e.report, "Stopped; the finished images are kept as"), settings)
    return _view(report, _status(report, "Done:"), settings)


def stop(ctx: TabContext, v, request: gr.Request):
    ctx.stops.stop(request, "evaluate")


def show_past(ctx: TabContext, v):
    if not v.chosen:
        return {}
    settings = ctx.studio.settings
    report = load_evaluation(settings, v.chosen)
    return _view(report, _status(report, "Evaluation" if report.status == "complete" else "Cancelled evaluation"),
                 settings)


def show_charts(ctx: TabContext, v):
    """The charts of the report just shown, each in its own picture at the column's width."""
    items = list(v.charts or [])
    out = {}
    for i in range(len(TITLES)):
        if i < len(items):
            path, caption = items[i] if isinstance(items[i], (tuple, list)) else (items[i], None)
            out[f"chart{i}"] = gr.update(value=path, label=caption, visible=True)
        else:
            out[f"chart{i}"] = gr.update(value=None, visible=False)
    return out


def suggest(ctx: TabContext, v):
    """Prompts, seeds and reference the studio suggests for the variants typed (a bad line is said as an error)."""
    start = _start(ctx.studio, v.variants or "")
    fields = {k: start[k] for k in ("variants", "prompts", "seeds", "reference")}
    return {**fields, "why": start["why"], "suggested": fields}


def refresh_lists(ctx: TabContext, v):
    """On tab open and reload: the lists as they are on disk now; the fields the user has not changed since the
    studio filled them follow what is on disk too (a LoRA just trained becomes a variant, with its prompts)."""
    studio = ctx.studio
    settings = studio.settings
    evaluations = [e.name for e in list_evaluations(settings)]
    out = {"past": gr.update(choices=evaluations),
           "reference": gr.update(choices=_reference_choices(studio)), "clip": gr.update(choices=clip_choices(settings))}
    if evaluations and getattr(v, "shown", None) not in evaluations:  # a reload: the last evaluation is shown again
        try:
            out.update(show_past(ctx, SimpleNamespace(chosen=evaluations[0])))
        except (ValueError, OSError) as e:  # a report that cannot be read: the list stays, and says why
            out["status"] = f"The last evaluation, {evaluations[0]}, cannot be shown: {e}"
        else:
            out.update(show_charts(ctx, SimpleNamespace(charts=out["charts"])))
    last = v.suggested or {}
    untouched = [k for k in ("variants", "prompts", "seeds", "reference") if getattr(v, k) == last.get(k)]
    if len(untouched) == 4:
        try:
            start = _start(studio)
        except ValueError:  # a LoRA file that cannot be read: keep the form as it is
            return out
        fields = {k: start[k] for k in ("variants", "prompts", "seeds", "reference")}
        out.update(fields, why=start["why"], suggested=fields,
                   reference=gr.update(choices=_reference_choices(studio), value=fields["reference"]))
    return out
