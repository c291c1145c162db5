"""The "Send to" buttons under Generate's pictures, as A1111 users know them: the picture selected in the gallery goes
to img2img (Generate's own image to start from), to the Clean-up painter for inpaint, upscale or face fix, or to the
Face to animal tab, and what it went to opens."""

from __future__ import annotations

import gradio as gr

from studio.ui.common import TabContext, bind

TARGETS = {  # button -> what the picture is for, said once it is there
    "img2img": "Picture {n} is the image to start from: set the strength, then Generate.",
    "inpaint": "Picture {n} is in the painter: paint white where it should change, then Inpaint.",
    "upscale": "Picture {n} is in the painter: press Upscale.",
    "face fix": "Picture {n} is in the painter: press Face fix.",
    "Face to animal": "Picture {n} is the Face to animal photo.",
}


def layout() -> dict:
    """A row of buttons, one per target, and where they say what they did."""
    with gr.Row():
        buttons = {target: gr.Button(f"Send to {target}", size="sm", min_width=90) for target in TARGETS}
    return {"buttons": buttons, "said": gr.Markdown(elem_id="send-to-status")}


def wire(ctx: TabContext, w: dict, *, gallery, selected, img2img: dict, cleanup: dict) -> None:
    """Bind the buttons: `img2img` holds Generate's "image" and "panel"; `cleanup` the Clean-up accordion's widgets
    ("cleanup_image", "source_parameters", "status", "panel"). Face to animal's photo is bound once that tab exists
    (ctx.later)."""
    picked = {"gallery_items": gallery, "selected": selected}
    bind(ctx, w["buttons"]["img2img"].click, to_img2img, picked,
         {"image": img2img["image"], "panel": img2img["panel"], "said": w["said"]}, api_name=False, queue=False)
    for target in ("inpaint", "upscale", "face fix"):
        bind(ctx, w["buttons"][target].click, lambda ctx, v, target=target: to_painter(ctx, v, target), picked,
             {"cleanup_image": cleanup["cleanup_image"], "source_parameters": cleanup["source_parameters"],
              "status": cleanup["status"], "panel": cleanup["panel"], "said": w["said"]}, api_name=False, queue=False)

    def animal_wiring():
        bind(ctx, w["buttons"]["Face to animal"].click, to_animal, picked,
             {"photo": ctx.widgets["animal.image"], "tabs": ctx.widgets["tabs"], "said": w["said"]}, api_name=False,
             queue=False)

    ctx.later.append(animal_wiring)


def selected_picture(v) -> tuple[str, int]:
    """(path, number from 1) of the picture selected in the gallery (the first when none was clicked)."""
    items = v.gallery_items or []
    if not items:
        raise ValueError("no picture to send yet: generate one first")
    index = min(int(v.selected or 0), len(items) - 1)
    item = items[index]
    path = item[0] if isinstance(item, (list, tuple)) else item
    return (path.get("path") if isinstance(path, dict) else path), index + 1


def to_img2img(ctx: TabContext, v):
    path, n = selected_picture(v)
    return {"image": path, "panel": gr.Accordion(open=True), "said": TARGETS["img2img"].format(n=n)}


def to_painter(ctx: TabContext, v, target: str):
    from studio.ui.cleanup import use_selected

    shown = use_selected(ctx, v)
    _, n = selected_picture(v)
    said = TARGETS[target].format(n=n)
    return {**shown, "status": said, "panel": gr.Accordion(open=True), "said": said}


def to_animal(ctx: TabContext, v):
    path, n = selected_picture(v)
    return {"photo": path, "tabs": gr.Tabs(selected="animal_tab"), "said": TARGETS["Face to animal"].format(n=n)}
