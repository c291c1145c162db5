"""The Generate tab's Clean-up accordion: a mask painter over a picture (the selected one, or a dropped PNG), inpaint,
the hires fix settings Generate uses, Upscale, and Face fix with each face's sim-score before and after.

Layout and wiring only: each callback turns widget values into a studio.generate request and back (endpoints
/inpaint, /upscale and /fix_faces).
"""

from __future__ import annotations

from dataclasses import replace

import gradio as gr
from PIL import Image, ImageChops

from studio.generate import GenerationRequest, generate
from studio.generate.facefix import FaceFixRequest, face_fix_fields, fix_faces
from studio.generate.inpaint import binary_mask
from studio.generate.parameters import parse_parameters, read_png_parameters, request_fields
from studio.generate.upscale import DEFAULT_TILE, UpscaleRequest, upscale
from studio.progress import Cancelled
from studio.ui.common import TabContext, bind, chosen_model, dataset_names, fit_gallery, progress_fn, upscaler_choices
from studio.ui.names import listed
from studio.ui.serving import served

SAME_MODEL = "(as Generate)"  # the inpainting model choice that means Generate's base model
ITSELF = "(each face before the fix)"  # the reference choice that compares each face with itself
_GEN = GenerationRequest(prompt="")
_FACE = FaceFixRequest(image=None)


def layout(ctx: TabContext) -> dict:
    """The accordion's widgets, by name (the names the callbacks and endpoints use)."""
    studio, w = ctx.studio, {}
    with gr.Accordion("Clean-up: inpaint, hires fix, upscale, face fix", open=False):
        with gr.Row():
            with gr.Column(scale=3):
                w["cleanup_image"] = gr.ImageEditor(
                    label="Picture (paint white where inpainting should change it)", type="pil", image_mode="RGBA",
                    format="png", sources=("upload", "clipboard"), transforms=(), layers=False, height=520,
                    elem_id="cleanup-painter",
                    brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24))
                w["use_selected"] = gr.Button("Use the selected picture", size="sm")
                w["status"] = gr.Markdown(elem_id="cleanup-status")
            with gr.Column(scale=2):
                gr.Markdown("**Inpaint** with the prompt, seed, sampler and LoRAs above")
                w["inpaint_strength"] = gr.Slider(0.05, 1, value=_GEN.strength, step=0.05, label="Denoising strength")
                w["mask_blur"] = gr.Slider(0, 64, value=_GEN.mask_blur, step=1, label="Mask blur")
                w["inpaint_area"] = gr.Radio([("Whole picture", "whole"), ("Only masked", "only masked")],
                                             value=_GEN.inpaint_area, label="Inpaint area")
                w["inpaint_padding"] = gr.Slider(0, 256, value=_GEN.inpaint_padding, step=4,
                                                 label="Only masked padding, pixels")
                w["inpaint_model"] = listed(ctx, gr.Dropdown(
                    inpaint_model_choices(studio), value=SAME_MODEL, label="Inpainting model",
                    info="a dedicated inpainting checkpoint, or Generate's base"), "base model", SAME_MODEL)
                w["inpaint_btn"] = gr.Button("Inpaint", variant="primary")
                gr.Markdown("**Hires fix**: Generate draws at the size above, upscales, then draws again over it")
                w["hires_scale"] = gr.Slider(1, 4, value=_GEN.hires_scale, step=0.05, label="Upscale by (1: off)")
                w["hires_steps"] = gr.Slider(0, 150, value=_GEN.hires_steps, step=1, label="Hires steps (0: as Steps)")
                w["hires_upscaler"] = listed(ctx, gr.Dropdown(upscaler_choices(studio), value=_GEN.hires_upscaler,
                                                              label="Hires upscaler"), "upscaler")
                w["hires_strength"] = gr.Slider(0.05, 1, value=_GEN.hires_strength, step=0.05,
                                                label="Hires denoising strength")
            with gr.Column(scale=2):
                gr.Markdown("**Upscale** (models from models/upscale/)")
                w["upscaler"] = listed(ctx, gr.Dropdown(upscaler_choices(studio), value=upscaler_choices(studio)[0],
                                                        label="Upscaler"), "upscaler")
                w["upscale_scale"] = gr.Slider(1, 8, value=4, step=0.5, label="Scale")
                w["upscale_tile"] = gr.Number(DEFAULT_TILE, precision=0, label="Tile size, pixels (0: whole picture)")
                w["upscale_btn"] = gr.Button("Upscale")
                gr.Markdown("**Face fix**: re-draw each face at the model's size with the LoRAs above")
                w["facefix_prompt"] = gr.Textbox("", label="Face prompt",
                                                 placeholder="empty: the picture's own; [PROMPT] stands for it")
                w["facefix_strength"] = gr.Slider(0.05, 1, value=_FACE.strength, step=0.05, label="Denoising strength")
                w["facefix_confidence"] = gr.Slider(0, 2, value=_FACE.confidence, step=0.05,
                                                    label="Detection confidence")
                w["facefix_dilate"] = gr.Slider(0, 64, value=_FACE.dilate, step=1, label="Mask dilate, pixels")
                w["facefix_mask_blur"] = gr.Slider(0, 64, value=_FACE.mask_blur, step=1, label="Mask blur")
                w["facefix_padding"] = gr.Slider(0, 256, value=_FACE.padding, step=4, label="Inpaint padding, pixels")
                w["facefix_size"] = gr.Number(0, precision=0, label="Working size (0: the model's native size)")
                w["facefix_reference"] = listed(ctx, gr.Dropdown(reference_choices(studio), value=ITSELF,
                                                                 label="Sim-score against"), "dataset", ITSELF)
                w["facefix_btn"] = gr.Button("Face fix")
                w["face_table"] = gr.Dataframe(
                    headers=["face", "box", "sim-score before", "sim-score after", "face found after"],
                    label="Faces (lower sim-score: more alike)", interactive=False)
    w["source_parameters"] = gr.State("")  # the picture's own parameters text, carried into what is made from it
    w["selected"] = gr.State(0)  # which gallery picture "Use the selected picture" takes
    return w


HIRES_INPUTS = ("hires_scale", "hires_steps", "hires_upscaler", "hires_strength")  # appended to /generate's inputs


def wire(ctx: TabContext, w: dict, generate_inputs: dict, *, gallery, parameters, last_seed, png_drop,
         restored) -> None:
    """Bind the accordion's events. `generate_inputs` are /generate's widgets by name; `restored` is the event that
    restores Generate's settings from `png_drop`: when it succeeds, the picture goes in the painter too and the
    clean-up settings are restored."""
    gallery.select(_selected_index, None, w["selected"], api_name=False, queue=False)
    gallery.change(lambda: 0, None, w["selected"], api_name=False, queue=False)
    picked = {"cleanup_image": w["cleanup_image"], "source_parameters": w["source_parameters"], "status": w["status"]}
    bind(ctx, w["use_selected"].click, use_selected, {"gallery_items": gallery, "selected": w["selected"]}, picked,
         api_name=False, queue=False)
    bind(ctx, w["cleanup_image"].upload, painter_upload, {"cleanup_image": w["cleanup_image"]},
         {"source_parameters": w["source_parameters"], "status": w["status"]}, api_name=False)

    inpaint_inputs = {**generate_inputs, **_named(w, "cleanup_image", "inpaint_model", "inpaint_strength", "mask_blur",
                                                  "inpaint_area", "inpaint_padding")}
    inpaint_inputs["inpaint_model_id"] = inpaint_inputs.pop("inpaint_model")
    bind(ctx, w["inpaint_btn"].click, inpaint, inpaint_inputs,
         {"gallery": gallery, "parameters": parameters, "seed": last_seed, "status": w["status"]},
         api_name="inpaint", gpu=True).success(fit_gallery, gallery, gallery, api_name=False, queue=False)
    upscale_inputs = _named(w, "cleanup_image", "upscaler", "upscale_scale", "upscale_tile", "source_parameters")
    upscale_inputs["upscaler_name"] = upscale_inputs.pop("upscaler")
    bind(ctx, w["upscale_btn"].click, run_upscale, upscale_inputs,
         {"gallery": gallery, "parameters": parameters, "status": w["status"]}, api_name="upscale", gpu=True)
    face_inputs = {k: generate_inputs[k] for k in ("model_id", "seed_value", "sampler_name", "steps_value", "cfg_scale",
                                                   "lora_weights", "embedding_names")}
    face_inputs.update(_named(w, "cleanup_image", "inpaint_model", "facefix_prompt", "facefix_strength",
                              "facefix_confidence", "facefix_dilate", "facefix_mask_blur", "facefix_padding",
                              "facefix_size", "facefix_reference", "source_parameters"))
    face_inputs["inpaint_model_id"] = face_inputs.pop("inpaint_model")
    bind(ctx, w["facefix_btn"].click, run_fix_faces, face_inputs,
         {"gallery": gallery, "parameters": parameters, "faces": w["face_table"], "status": w["status"]},
         api_name="fix_faces", gpu=True)
    settings = _named(w, "inpaint_strength", "mask_blur", "inpaint_area", "inpaint_padding", *HIRES_INPUTS,
                      "facefix_prompt", "facefix_strength", "facefix_confidence", "facefix_dilate",
                      "facefix_mask_blur", "facefix_padding", "facefix_size")
    bind(ctx, restored.success, restore_cleanup, {"path": png_drop}, {**picked, **settings}, api_name=False)


def _named(w: dict, *names: str) -> dict:
    return {n: w[n] for n in names}


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
    from studio.ui.generate_tab import fit_to_model, request_from_widgets

    picture, mask = picture_and_mask(v.cleanup_image)
    if mask is None:
        raise ValueError("`mask_image` is empty: paint (white) where the picture should change")
    generation = replace(request_from_widgets(v, ctx.studio), init_image=picture, mask_image=mask, width=None, height=None,
                         strength=float(v.inpaint_strength), mask_blur=int(v.mask_blur), inpaint_area=v.inpaint_area,
                         inpaint_padding=int(v.inpaint_padding), hires_scale=1.0)
    if v.inpaint_model_id not in (None, "", SAME_MODEL):
        generation = fit_to_model(ctx.studio, replace(generation, model=chosen_model(v.inpaint_model_id)))
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


def run_upscale(ctx: TabContext, v, request: gr.Request, progress):
    picture, _ = picture_and_mask(v.cleanup_image)
    up = UpscaleRequest(image=picture, upscaler=v.upscaler_name or "", scale=float(v.upscale_scale),
                        tile=int(v.upscale_tile or 0), parameters=_source_text(v, picture))
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
    from studio.evaluate.scoring import load_reference
    from studio.ui.generate_tab import loras_from_table

    picture, _ = picture_and_mask(v.cleanup_image)
    reference = None
    if v.facefix_reference not in (None, "", ITSELF):
        reference = load_reference(ctx.studio.settings, v.facefix_reference)
    model = v.model_id if v.inpaint_model_id in (None, "", SAME_MODEL) else v.inpaint_model_id
    fix = FaceFixRequest(
        image=picture, prompt=v.facefix_prompt or "", model=chosen_model(model),
        loras=loras_from_table(ctx.studio, v.lora_weights),
        embeddings=list(v.embedding_names or []), seed=int(v.seed_value if v.seed_value is not None else -1),
        steps=int(v.steps_value), cfg=float(v.cfg_scale), sampler=v.sampler_name, strength=float(v.facefix_strength),
        confidence=float(v.facefix_confidence), dilate=int(v.facefix_dilate), mask_blur=int(v.facefix_mask_blur),
        padding=int(v.facefix_padding), size=int(v.facefix_size or 0) or None,
        reference=None if reference is None else reference.encodings,
        reference_name="" if reference is None else reference.source, parameters=_source_text(v, picture),
    )
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
        "inpaint_strength": gen.get("strength", _GEN.strength), "mask_blur": gen.get("mask_blur", _GEN.mask_blur),
        "inpaint_area": gen.get("inpaint_area", _GEN.inpaint_area),
        "inpaint_padding": gen.get("inpaint_padding", _GEN.inpaint_padding),
        **{name: gen.get(name, getattr(_GEN, name)) for name in HIRES_INPUTS},
        "facefix_prompt": face.get("prompt", _FACE.prompt),
        **{f"facefix_{name}": face.get(name, getattr(_FACE, name))
           for name in ("strength", "confidence", "dilate", "mask_blur", "padding")},
        "facefix_size": face.get("size") or 0,
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


def _source_text(v, picture: Image.Image) -> str:
    """The picture's own parameters: as the painter received them (a session's State), else from the picture's PNG
    text itself (an API caller's PNG keeps it)."""
    return getattr(v, "source_parameters", "") or picture.info.get("parameters", "") or ""


def _as_image(item) -> Image.Image:
    return item if isinstance(item, Image.Image) else Image.open(item)


def _parameters_of(path) -> str:
    with Image.open(path) as im:
        return im.info.get("parameters", "") or ""
