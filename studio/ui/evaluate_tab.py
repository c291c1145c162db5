"""Evaluate tab: prompts x seeds x variants against a reference set -> grid, charts and tables; past runs reopened."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from studio.evaluate import (STUDY_PROMPTS, STUDY_SEEDS, EvaluationCancelled, EvaluationReport, EvaluationRequest,
                             evaluate, list_evaluations, load_evaluation, parse_seeds, parse_variant)
from studio.evaluate.charts import CLIP_PER_VARIANT, NO_FACE_PER_PROMPT, SIM_PER_PROMPT, SIM_PER_VARIANT
from studio.models.clip import TINY_CLIP, list_clip_models
from studio.ui.common import (FAMILY_SAMPLER, TabContext, TabRefresh, bind, chosen_sampler, dataset_names, lora_names,
                              number, progress_fn, sampler_choices)
from studio.ui.serving import served

NO_CLIP = "(no CLIP score)"
_DEFAULTS = EvaluationRequest(name="", prompts=[], seeds=[], variants=[], reference="")
_CHART_TITLES = {SIM_PER_VARIANT: "mean sim-score per variant", SIM_PER_PROMPT: "mean sim-score per prompt",
                 NO_FACE_PER_PROMPT: "faces not found per prompt", CLIP_PER_VARIANT: "CLIP score per variant"}
_VARIANT_HELP = ("One per line: label=MODEL[+lora:NAME:WEIGHT][+embedding:NAME]. An empty MODEL is the studio's "
                 "default base; e.g. control= (the base alone), mine=+lora:mine:1, mine@0.6=+lora:mine:0.6")


def _clip_note(clip_model: str) -> str:
    if clip_model in (None, "", NO_CLIP):
        return "No CLIP model: the report has no CLIP column."
    if clip_model == TINY_CLIP:
        return (f"**{TINY_CLIP} has random weights (for offline tests): its CLIP scores mean nothing.** Put real CLIP "
                f"weights in models/clip/ (e.g. openai/clip-vit-base-patch16) for scores that do.")
    return f"CLIP score (0-100, torchmetrics' definition) of each picture with its prompt, by {clip_model}."


def _default_variants(studio) -> str:
    loras = lora_names(studio)[:2]
    return "\n".join(["control="] + [f"{name}=+lora:{name}:1" for name in loras])


def request_from_widgets(name, prompts, seeds, variants, reference, clip_model, negative_prompt, sampler, steps, cfg,
                         width, height, tolerance) -> EvaluationRequest:
    """The tab's widget values, in the order of its inputs, as an EvaluationRequest."""
    return EvaluationRequest(
        name=(name or "").strip(), prompts=[p.strip() for p in (prompts or "").splitlines() if p.strip()],
        seeds=parse_seeds(seeds), variants=[parse_variant(line) for line in (variants or "").splitlines() if line.strip()],
        reference=(reference or "").strip(), clip_model="" if clip_model in (None, NO_CLIP) else clip_model,
        negative_prompt=negative_prompt or "", sampler=chosen_sampler(sampler), steps=int(steps),
        cfg=float(cfg or 0) or None,
        width=int(width or 0) or None, height=int(height or 0) or None, tolerance=float(tolerance),
    )


def _tables(report: EvaluationReport) -> tuple[list[list], list[list], list[str], list[str]]:
    """The summary (one row per variant) and the per-image table; CLIP columns only when there are CLIP scores."""
    clip = report.has_clip
    tol = report.request.tolerance
    summary_headers = ["variant", "images", "faces found", "no face", f"sim <= {tol:g}", "mean sim-score",
                       "best sim-score"] + (["mean CLIP score"] if clip else [])
    summary = [[s.variant, s.images, s.faces, s.no_face, s.alike, number(s.mean_sim, 4), number(s.best_sim, 4)]
               + ([number(s.mean_clip, 2)] if clip else []) for s in report.by_variant()]
    image_headers = ["variant", "prompt", "seed", "sim-score"] + (["CLIP score"] if clip else []) + ["file"]
    images = [[r.variant, r.prompt, r.seed, "no face" if r.sim_score is None else round(r.sim_score, 4)]
              + ([number(r.clip_score, 2)] if clip else []) + [r.file] for r in report.rows]
    return summary, images, summary_headers, image_headers


def _view(report: EvaluationReport, status: str, settings):
    """Widget values for a report: status, grid, charts, summary, images, past runs, files."""
    summary, images, summary_headers, image_headers = _tables(report)
    charts = [(served(settings, report.folder / c), _CHART_TITLES.get(c, c)) for c in report.charts]
    grid = served(settings, report.folder / report.grid) if report.grid else None
    past = gr.update(choices=[e.name for e in list_evaluations(settings)], value=report.name)
    files = [served(settings, report.folder / "report.csv"), served(settings, report.folder / "report.json")]
    return {"status": status, "grid": grid, "charts": charts, "summary": pd.DataFrame(summary, columns=summary_headers),
            "images": pd.DataFrame(images, columns=image_headers), "past": past, "files": files}


def _status(report: EvaluationReport, prefix: str) -> str:
    found = sum(r.sim_score is not None for r in report.rows)
    return (f"{prefix} **{report.name}**: {len(report.rows)} image(s), {found} with a face, "
            f"{len(report.rows) - found} with no face found; reference: {report.reference}. {report.clip_note} "
            f"Lower sim-score is more alike; <= {report.request.tolerance:g} counts as the same person. "
            f"Saved in `{report.folder}` ({report.seconds:.1f} s).")


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    settings = studio.settings
    with gr.Row():
        with gr.Column(scale=2):
            name = gr.Textbox("", label="Name", placeholder="amari-lora-vs-base",
                              info="saved as workspace/evaluations/NAME/")
            prompts = gr.Textbox("\n".join(STUDY_PROMPTS), label="Prompts (one per line)", lines=4,
                                 info="seed 000's four prompts; put your subject's trigger word in place of 'amari'")
            seeds = gr.Textbox(", ".join(map(str, STUDY_SEEDS)), label="Seeds",
                               info="fixed seeds, comma separated: every variant gets the same noise")
            variants = gr.Textbox(_default_variants(studio), label="Variants to compare (2 or more)", lines=3,
                                  info=_VARIANT_HELP)
            reference = gr.Dropdown(dataset_names(studio), value=None, allow_custom_value=True,
                                    label="Reference: a dataset, or a folder of photos of the subject")
            clip = gr.Dropdown([NO_CLIP, *list_clip_models(settings)], value=NO_CLIP, allow_custom_value=True,
                               label="CLIP model (optional)")
            clip_note = gr.Markdown(_clip_note(NO_CLIP))
            with gr.Accordion("Generation (the same for every variant)", open=False):
                negative = gr.Textbox("", label="Negative prompt")
                with gr.Row():
                    sampler = gr.Dropdown(sampler_choices(), value=FAMILY_SAMPLER, label="Sampler",
                                          info="the model's default: Euler a, or Euler for FLUX.1")
                    steps = gr.Slider(1, 150, value=_DEFAULTS.steps, step=1, label="Steps")
                    cfg = gr.Number(0, label="CFG scale", info="0: the family's (7; 1 for FLUX.1)")
                with gr.Row():
                    width = gr.Number(0, label="Width", precision=0, info="0: the model's native size")
                    height = gr.Number(0, label="Height", precision=0)
                    tolerance = gr.Slider(0.2, 0.8, value=_DEFAULTS.tolerance, step=0.01, label="Same-person tolerance",
                                          info="seed 000: 0.40")
            with gr.Row():
                run_btn = gr.Button("Evaluate", variant="primary")
                stop_btn = gr.Button("Stop")
            with gr.Row():
                past = gr.Dropdown([e.name for e in list_evaluations(settings)], value=None, label="Past evaluations",
                                   scale=3)
                refresh_btn = gr.Button("Refresh", scale=1)
        with gr.Column(scale=3):
            status = gr.Markdown("Name the evaluation, choose the variants and the reference, then press Evaluate.")
            summary = gr.Dataframe(label="Per variant", interactive=False, wrap=True)
            charts = gr.Gallery(label="Charts", columns=2, height="auto", object_fit="contain", format="png")
            grid = gr.Image(label="Grid: rows prompt x seed, columns variants", type="filepath", format="png",
                            height=640)
            images = gr.Dataframe(label="Per image", interactive=False, wrap=True, max_height=320)
            files = gr.File(label="report.csv and report.json", file_count="multiple", interactive=False)

    # The API endpoint /evaluate takes these names.
    inputs = {"name": name, "prompts": prompts, "seeds": seeds, "variants": variants, "reference": reference,
              "clip_model": clip, "negative_prompt": negative, "sampler": sampler, "steps": steps, "cfg": cfg,
              "width": width, "height": height, "tolerance": tolerance}
    outputs = {"status": status, "grid": grid, "charts": charts, "summary": summary, "images": images, "past": past,
               "files": files}
    bind(ctx, run_btn.click, run, inputs, outputs, api_name="evaluate", gpu=True)
    bind(ctx, stop_btn.click, stop, None, None, api_name=False, queue=False)
    bind(ctx, past.input, show_past, {"chosen": past}, outputs, api_name="evaluation")
    lists = {"past": past, "reference": reference}
    bind(ctx, refresh_btn.click, refresh_lists, None, lists, api_name=False, queue=False)
    clip.change(_clip_note, clip, clip_note, api_name=False, queue=False)
    return TabRefresh(refresh_lists, lists)


def run(ctx: TabContext, v, request: gr.Request, progress):
    settings = ctx.studio.settings
    evaluation = request_from_widgets(**vars(v))
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


def refresh_lists(ctx: TabContext, v):
    return {"past": gr.update(choices=[e.name for e in list_evaluations(ctx.studio.settings)]),
            "reference": gr.update(choices=dataset_names(ctx.studio))}
