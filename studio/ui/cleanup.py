"""The Generate tab's Clean-up accordion: a mask painter over a picture (the selected one, or a dropped PNG), inpaint,
Upscale, and Face fix with each face's sim-score before and after, each saying what it did under its own button.

Layout and wiring only: each callback turns widget values into a studio.generate request and back (endpoints
/inpaint, /upscale and /fix_faces).
"""

from __future__ import annotations

import gradio as gr
from PIL import Image, ImageChops

from studio.fields import declared, default, written
from studio.generate import GenerationRequest, generate
from studio.generate.facefix import FaceFixRequest, face_fix_fields, fix_faces
from studio.generate.inpaint import binary_mask
from studio.generate.parameters import parse_parameters, read_png_parameters, request_fields
from studio.generate.upscale import UpscaleRequest, upscale
from studio.progress import Cancelled
from studio.ui.common import TabContext, bind, chosen_model, dataset_names, progress_fn
from studio.ui.forms import Form, request_from_values
from studio.ui.names import listed
from studio.ui.serving import served

SAME_MODEL = "(as Generate)"  # the inpainting model choice that means Generate's base model
ITSELF = "(each face before the fix)"  # the reference choice that compares each face with itself
# GenerationRequest's settings only /inpaint takes (the painter is its init_image, and its paint the mask)
INPAINT_ONLY = ("init_image", "strength", "mask_blur", "inpaint_area", "inpaint_padding")
HIRES = ("hires_scale", "hires_steps", "hires_upscaler", "hires_strength")  # txt2img only: /generate's, not /inpaint's
# What face fix takes from Generate's form: the model, the LoRAs, the seed and the sampling
FROM_GENERATE = ("model", "loras", "embeddings", "seed", "steps", "cfg", "sampler")


def layout(ctx: TabContext, gen: Form) -> dict:
    """The accordion's widgets, by name; the inpainting widgets go into Generate's form `gen` (its settings), face
    fix's and upscale's into forms of their own ("face_form", "upscale_form")."""
    studio, w = ctx.studio, {}
    face, up = Form(ctx, FaceFixRequest), Form(ctx, UpscaleRequest)
    w.update(face_form=face, upscale_form=up)
    with gr.Accordion("Clean-up: inpaint, upscale, face fix", open=False) as w["panel"]:
        with gr.Row():
            with gr.Column(scale=3):
                w["cleanup_image"] = gr.ImageEditor(
                    label="Picture (paint white where inpainting should change it)", type="pil", image_mode="RGBA",
                    format="png", sources=("upload", "clipboard"), transforms=(), layers=False, height=520,
                    elem_id="cleanup-painter",
                    brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size="auto"))  # sized to the picture
                gen.put("init_image", w["cleanup_image"])
                face.put("image", w["cleanup_image"])
                up.put("image", w["cleanup_image"])
                w["use_selected"] = gr.Button("Use the selected picture", size="sm")
                w["status"] = gr.Markdown(elem_id="cleanup-status")
            with gr.Column(scale=2):
                gr.Markdown("**Inpaint** with the prompt, seed, sampler and LoRAs above")
                gen.widget("strength")
                gen.widget("mask_blur")
                gen.widget("inpaint_area", gr.Radio, choices=[("Whole picture", "whole"), ("Only masked", "only masked")])
                gen.widget("inpaint_padding")
                w["inpaint_model"] = listed(ctx, gr.Dropdown(
                    inpaint_model_choices(studio), value=SAME_MODEL, label="Inpainting model",
                    info="a dedicated inpainting checkpoint, or Generate's base"), "base model", SAME_MODEL)
                w["inpaint_btn"] = gr.Button("Inpaint", variant="primary")
                w["inpaint_status"] = gr.Markdown(elem_id="inpaint-status")
            with gr.Column(scale=2):
                gr.Markdown("**Upscale** (models from models/upscale/)")
                w["upscaler"] = up.widget("upscaler")
                up.widget("scale")
                up.widget("tile")
                up.rest(title="More upscale settings")
                w["upscale_btn"] = gr.Button("Upscale")
                w["upscale_status"] = gr.Markdown(elem_id="upscale-status")
                gr.Markdown("**Face fix**: re-draw each face at the model's size with the LoRAs above")
                for name in ("prompt", "strength", "confidence", "dilate", "mask_blur", "padding", "size"):
                    face.widget(name)
                for name in FROM_GENERATE:
                    face.put(name, gen.inputs[name])
                face.rest(title="More face fix settings")
                w["facefix_reference"] = listed(ctx, gr.Dropdown(reference_choices(studio), value=ITSELF,
                                                                 label="Sim-score against"), "dataset", ITSELF)
                w["facefix_btn"] = gr.Button("Face fix")
                w["facefix_status"] = gr.Markdown(elem_id="facefix-status")
                w["face_table"] = gr.Dataframe(
                    headers=["face", "box", "sim-score before", "sim-score after", "face found after"],
                    label="Faces (lower sim-score: more alike)", interactive=False)
    w["source_parameters"] = gr.State("")  # the picture's own parameters text, carried into what is made from it
    w["selected"] = gr.State(0)  # which gallery picture "Use the selected picture" takes
    return w


def wire(ctx: TabContext, w: dict, gen: Form, *, gallery, parameters, last_seed, png_drop, restored) -> None:
    """Bind the accordion's events. `gen` is Generate's form; `restored` is the event that restores Generate's
    settings from `png_drop`: when it succeeds, the picture goes in the painter too and the clean-up settings are
    restored. The endpoints take their request's field names (/inpaint: GenerationRequest's but the hires fix,
    /upscale: UpscaleRequest's, /fix_faces: FaceFixRequest's), and `inpaint_model` and `reference` beside them."""
    gallery.select(_selected_index, None, w["selected"], api_name=False, queue=False)
    gallery.change(lambda: 0, None, w["selected"], api_name=False, queue=False)
    picked = {"cleanup_image": w["cleanup_image"], "source_parameters": w["source_parameters"], "status": w["status"]}
    bind(ctx, w["use_selected"].click, use_selected, {"gallery_items": gallery, "selected": w["selected"]}, picked,
         api_name=False, queue=False)
    bind(ctx, w["cleanup_image"].upload, painter_upload, {"cleanup_image": w["cleanup_image"]},
         {"source_parameters": w["source_parameters"], "status": w["status"]}, api_name=False)

    inpaint_inputs = {**{k: x for k, x in gen.inputs.items() if k not in HIRES}, "inpaint_model": w["inpaint_model"]}
    bind(ctx, w["inpaint_btn"].click, inpaint, inpaint_inputs,
         {"gallery": gallery, "parameters": parameters, "seed": last_seed, "status": w["inpaint_status"]},
         api_name="inpaint", gpu=True)
    bind(ctx, w["upscale_btn"].click, run_upscale, {**w["upscale_form"].inputs,
                                                     "source_parameters": w["source_parameters"]},
         {"gallery": gallery, "parameters": parameters, "status": w["upscale_status"]}, api_name="upscale", gpu=True)
    face_inputs = {**w["face_form"].inputs, "inpaint_model": w["inpaint_model"], "reference": w["facefix_reference"],
                   "source_parameters": w["source_parameters"]}
    bind(ctx, w["facefix_btn"].click, run_fix_faces, face_inputs,
         {"gallery": gallery, "parameters": parameters, "faces": w["face_table"], "status": w["facefix_status"]},
         api_name="fix_faces", gpu=True)
    settings = {**{f"gen.{k}": gen.inputs[k] for k in (*INPAINT_ONLY[1:], *HIRES)},
                **{f"face.{k}": x for k, x in w["face_form"].inputs.items() if k not in ("image", *FROM_GENERATE)}}
    bind(ctx, restored.success, restore_cleanup, {"path": png_drop}, {**picked, **settings}, api_name=False)


def inpaint_model_choices(studio) -> list[str]:
    return [SAME_MODEL, *studio.store.list_models().base]


def reference_choices(studio) -> list[str]:
    return [ITSELF, *dataset_names(studio)]


# ---- callbacks --------------------------------------------------------------------------------------------------

def _selected_index(evt: gr.SelectData):
    return evt.index


def use_selected(ctx: TabContext, v):
    items = v.gallery_items or []
    if not items:
        raise ValueError("no picture to use yet: generate one, or drop a picture on the painter")
    index = min(int(v.selected or 0), len(items) - 1)
    path = items[index][0]
    text = _parameters_of(path)
    note = "" if text else " (it carries no parameters: face fix needs a face prompt)"
    return {"cleanup_image": path, "source_parameters": text, "status": f"Picture {index + 1} is in the painter{note}."}


def painter_upload(ctx: TabContext, v):
    """A picture dropped straight on the painter: its own parameters (if it has any) replace the last picture's."""
    if not v.cleanup_image or v.cleanup_image.get("background") is None:
        return {"source_parameters": ""}
    text = v.cleanup_image["background"].info.get("parameters", "") or ""
    return {"source_parameters": text, "status": "" if text else "This picture carries no parameters: face fix "
                                                                 "needs a face prompt."}


def inpaint(ctx: TabContext, v, request: gr.Request, progress):
    from studio.ui.generate_tab import request_from_widgets

    picture, mask = picture_and_mask(v.init_image)
    if mask is None:
        raise ValueError("`init_image` has no mask painted on it: paint (white) where the picture should change")
    chosen = {} if v.inpaint_model in (None, "", SAME_MODEL) else {"model": chosen_model(v.inpaint_model)}
    values = {**vars(v), **chosen, "init_image": None}
    generation = request_from_widgets(values, ctx.studio, init_image=picture, mask_image=mask, width=None, height=None)
    try:
        result = generate(ctx.studio, generation, progress=progress_fn(progress),
                          should_stop=ctx.stops.begin(request, "generate"))
    except Cancelled:
        raise Cancelled("Inpainting stopped.") from None
    images = [(served(ctx.studio.settings, item.path) if item.path else item.image, f"seed {item.seed}")
              for item in result.images]
    status = f"Inpainted {len(images)} picture(s) at {result.request.width}x{result.request.height}."
    return {"gallery": images, "parameters": result.images[0].parameters, "seed": result.images[0].seed,
            "status": status}


def upscale_request(values: dict) -> UpscaleRequest:
    """/upscale's inputs (UpscaleRequest's fields, by name) as an UpscaleRequest: the painter's picture, its own
    parameters carried over, then the one conversion flags and API calls go through."""
    picture, _ = picture_and_mask(values.get("image"))
    return request_from_values(UpscaleRequest, {**values, "image": None}, image=picture,
                               parameters=_source_text(values, picture))


def face_fix_request(values: dict, studio) -> FaceFixRequest:
    """/fix_faces' inputs (FaceFixRequest's fields, by name, with `inpaint_model` and `reference`) as a
    FaceFixRequest: the painter's picture, the LoRA table's rows, the reference's faces, then the one conversion."""
    from studio.evaluate.scoring import load_reference
    from studio.ui.generate_tab import loras_from_table

    picture, _ = picture_and_mask(values.get("image"))
    reference = None
    if values.get("reference") not in (None, "", ITSELF):
        reference = load_reference(studio.settings, values["reference"])
    values = {**values, "image": None, "loras": loras_from_table(studio, values.get("loras"))}
    if values.get("inpaint_model") not in (None, "", SAME_MODEL):
        values["model"] = values["inpaint_model"]
    return request_from_values(FaceFixRequest, values, image=picture, parameters=_source_text(values, picture),
                               reference=None if reference is None else reference.encodings,
                               reference_name="" if reference is None else reference.source)


def run_upscale(ctx: TabContext, v, request: gr.Request, progress):
    up = upscale_request(vars(v))
    try:
        result = upscale(ctx.studio, up, progress=progress_fn(progress),
                         should_stop=ctx.stops.begin(request, "generate"))
    except Cancelled:
        raise Cancelled("Upscale stopped.") from None
    info = result.info
    how = f" in tiles of {info.tile} px" if info.tile else ""
    status = " ".join([f"Upscaled to {info.size[0]}x{info.size[1]} with {info.upscaler}{how}.", *info.notes])
    return {"gallery": [(served(ctx.studio.settings, result.path), f"{info.size[0]}x{info.size[1]}")],
            "parameters": result.parameters, "status": status}


def run_fix_faces(ctx: TabContext, v, request: gr.Request, progress):
    fix = face_fix_request(vars(v), ctx.studio)
    try:
        result = fix_faces(ctx.studio, fix, progress=progress_fn(progress),
                           should_stop=ctx.stops.begin(request, "generate"))
    except Cancelled:
        raise Cancelled("Face fix stopped.") from None
    rows = [[f.index, str(f.box), round(f.sim_before, 4), round(f.sim_after, 4), f.found_after] for f in result.faces]
    out = {"faces": rows, "status": result.message}
    if result.path is not None:
        out.update(gallery=[(served(ctx.studio.settings, result.path), "face fix")], parameters=result.parameters)
    return out


def restore_cleanup(ctx: TabContext, v):
    """A dropped PNG in the painter, and its clean-up settings restored: keys it lacks go back to their defaults,
    so what the picture did not use is off again (hires fix at 1)."""
    if not v.path:
        return {}
    text = read_png_parameters(v.path)
    parsed = parse_parameters(text)
    gen, face = request_fields(parsed), face_fix_fields(parsed)
    return {
        "cleanup_image": v.path, "source_parameters": text, "status": "The dropped picture is in the painter.",
        **{f"gen.{name}": written(GenerationRequest, name, gen.get(name, default(GenerationRequest, name)))
           for name in (*INPAINT_ONLY[1:], *HIRES)},
        **{f"face.{name}": written(FaceFixRequest, name, face.get(name, default(FaceFixRequest, name)))
           for name in declared(FaceFixRequest) if name not in ("image", *FROM_GENERATE)},
    }


def picture_and_mask(value) -> tuple[Image.Image, Image.Image | None]:
    """The painter's value ({"background", "layers", "composite"}) as the picture (RGB) and the mask painted on it
    ("L", white = repaint; None when nothing is painted)."""
    if not value or value.get("background") is None:  # the composite alone would hold the paint strokes too
        raise ValueError("`cleanup_image` holds no picture: use the selected picture, or drop one on the painter")
    picture = _as_image(value["background"]).convert("RGB")
    mask = None
    for layer in value.get("layers") or []:
        painted = binary_mask(_as_image(layer))
        if painted.size != picture.size:  # the canvas may hand layers back at its own resolution
            painted = painted.resize(picture.size, Image.Resampling.NEAREST)
        mask = painted if mask is None else ImageChops.lighter(mask, painted)
    if mask is not None and mask.getbbox() is None:
        mask = None
    return picture, mask


def _source_text(values: dict, picture: Image.Image) -> str:
    """The picture's own parameters: as the painter received them (a session's State), else from the picture's PNG
    text itself (an API caller's PNG keeps it)."""
    return values.get("source_parameters") or picture.info.get("parameters", "") or ""


def _as_image(item) -> Image.Image:
    return item if isinstance(item, Image.Image) else Image.open(item)


def _parameters_of(path) -> str:
    with Image.open(path) as im:
        return im.info.get("parameters", "") or ""
