"""The "Start here" panel above the tabs: what the studio is, where to begin, and the offline demo in one click
(builtin:pocket learns a star: studio.pocket.demo). Open on a first run and on a browser's first visit, folded once
there is work on disk and the browser has seen it."""

from __future__ import annotations

import gradio as gr

from studio.ui.common import TabContext, bind
from studio.ui.names import model_name


def build(ctx: TabContext) -> dict:
    studio = ctx.studio
    with gr.Accordion("Start here", open=_first_run(studio)) as panel:
        gr.Markdown(
            "Likeness Studio makes a personal image model, all on this machine: **Dataset** (photos of one subject: "
            "checked, cropped around the face, bystanders blurred, captioned) or **Mine** (a consistent synthetic "
            "identity instead of a real face) → **Train** (LoRA, DreamBooth, textual inversion on SD 1.x, SDXL or "
            "FLUX.1, scored for likeness every epoch) → **Generate** (with your LoRA; inpaint, hires fix, "
            "upscalers, face fix) → **Evaluate** (likeness and CLIP scores over prompts and seeds). "
            f"The base model now is **{model_name(studio, studio.store.default_model)}**; README.md says how to "
            "point the studio at a real one.\n\n"
            "**No GPU, no downloads?** The demo teaches builtin:pocket (a 12 MB model trained on drawings of "
            "shapes) a shape it has never seen, a star, under the word `zq`: it writes the 8-drawing dataset, "
            "trains the LoRA (a few minutes on 2 CPU cores, watched in the Train tab) and then Generate draws stars.")
        with gr.Row():
            demo_btn = gr.Button("Teach builtin:pocket a star (offline demo)", variant="primary", min_width=420)
            gr.Column(scale=2, min_width=0)  # the button keeps a readable width, not the whole row
        message = gr.Markdown()
    seen = gr.BrowserState(False, storage_key="likeness-studio-start-here-seen")  # this browser has visited before
    return {"panel": panel, "demo": demo_btn, "message": message, "seen": seen}


def wire(ctx: TabContext, w: dict) -> None:
    """Bind the panel after the tabs exist: the demo opens the Train tab on its run."""
    bind(ctx, w["demo"].click, run_demo, None,
         {"message": w["message"], "tabs": ctx.widgets["tabs"], "run": ctx.widgets["train.run"]},
         api_name="pocket_demo")


def first_visit(seen: bool):
    """On page load: the panel opens for a browser that has not been here before, which is then remembered."""
    return (gr.skip() if seen else gr.Accordion(open=True)), True


def wire_visit(app, w: dict) -> None:
    app.load(first_visit, w["seen"], [w["panel"], w["seen"]], api_name=False, queue=False)


def run_demo(ctx: TabContext, v):
    from studio import train
    from studio.pocket.demo import start_demo

    started = start_demo(ctx.studio)
    runs = [r.name for r in train.list_runs(ctx.studio)]
    return {"message": started.message, "tabs": gr.Tabs(selected="train_tab"),
            "run": gr.update(choices=runs, value=started.run)}


def _first_run(studio) -> bool:
    """Nothing made yet: no dataset and no run on disk."""
    s = studio.settings
    return not any(folder.is_dir() and any(folder.iterdir()) for folder in (s.datasets_dir, s.runs_dir))
