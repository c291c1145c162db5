"""The Dataset tab's first part: photos (or a .zip) in, a training set out, through one studio.data.prepare_dataset
call; or a question first: replace the dataset of that name? whose face is the subject's, when most photos show
several faces and no reference photo says? (the API raises the same questions as errors; replace_ and subject_face_
answer them)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import data
from studio.data.captions import CAPTIONER_NAMES, DEFAULT_TEMPLATE
from studio.data.crop import CROP_MODES, SIZES
from studio.data.masks import DEFAULT_BACKGROUND_WEIGHT, SUBJECT_MASKS
from studio.data.prepare import NameTaken, default_size
from studio.data.subject import SubjectUnclear
from studio.faces import DEFAULT_TOLERANCE
from studio.progress import Cancelled
from studio.ui.common import TabContext, bind, dataset_names, progress_fn
from studio.ui.names import model_name


def layout(ctx: TabContext) -> dict:
    """The form, the two questions and the report, by name (the names the callbacks and /dataset_prepare use)."""
    studio = ctx.studio
    gr.Markdown("Drop 5 to 300 photos of one subject (or a .zip). You get square crops around the subject's face, "
                "other people's faces blurred and masked out of training, a caption per picture that starts with "
                "your trigger word, and a check of which photos may not show the same person.")
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.File(file_count="multiple", file_types=[".jpg", ".jpeg", ".png", ".webp", ".zip"],
                            type="filepath", label="Photos or a .zip")
            reference = gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                label="Reference photos of the subject (optional: tells them from bystanders)")
        with gr.Column(scale=2):
            name = gr.Textbox(label="Dataset name", placeholder="e.g. tim-2024")
            with gr.Row():
                trigger = gr.Textbox(label="Trigger word", placeholder="e.g. ohwx", info="starts every caption")
                class_word = gr.Textbox("person", label="Class word", info="what the subject is: person, dog, ...")
            with gr.Row():
                size = gr.Radio(list(SIZES), value=default_size(studio), label="Resolution",
                                info=_size_info(studio))
                crop = gr.Radio(list(CROP_MODES), value="face", label="Crop")
            with gr.Row():
                margin = gr.Slider(0.0, 4.0, value=1.0, step=0.25, label="Margin around the face (face widths)")
                tolerance = gr.Slider(0.2, 0.8, value=DEFAULT_TOLERANCE, step=0.01, label="Face distance tolerance",
                                      info="above it a photo is flagged as maybe someone else (seed: 0.40)")
            blur = gr.Checkbox(True, label="Protect bystanders",
                               info="blur other people's faces, and mask them (and the blur) out of training")
            with gr.Row():
                subject_mask = gr.Radio(list(SUBJECT_MASKS), value="none", label="Subject mask",
                                        info="face / person: learn mostly the subject, the rest at the weight below")
                background_weight = gr.Slider(0.0, 1.0, value=DEFAULT_BACKGROUND_WEIGHT, step=0.05,
                                              label="Weight of the rest", info="OneTrainer's default: 0.1")
            with gr.Row():
                captioner = gr.Radio(list(CAPTIONER_NAMES), value="template", label="Captions from",
                                     info="blip / florence2 need their weights in models/captioners/<name>/")
                template = gr.Textbox(DEFAULT_TEMPLATE, label="Caption template")
    with gr.Row():
        prepare_btn = gr.Button("Prepare dataset", variant="primary")
        stop_btn = gr.Button("Stop")
    replace_it = gr.Checkbox(False, visible=False)  # the API's replace_: the page asks instead (below)
    with gr.Group(visible=False) as replace_row:  # the name is taken: replace that dataset?
        replace_md = gr.Markdown()
        with gr.Row():
            replace_btn = gr.Button("Replace it", variant="stop")
            keep_btn = gr.Button("Keep it (choose another name)")
    with gr.Group(visible=False) as subject_row:  # several faces in most photos, no reference: who is the subject?
        gr.Markdown("**Who is the subject?** Most photos show several faces and no reference photo says which one. "
                    "Click the subject's face below (or add reference photos), then press Prepare dataset.")
        subject_faces = gr.Gallery(label="The faces of one photo, from the left", columns=6, height=220,
                                   allow_preview=False, object_fit="contain", elem_id="subject-faces")
        subject_face = gr.Textbox("", label="Subject's face", info="<photo>#<n>, faces numbered from the left; "
                                                                   "empty: none picked")
    report = gr.Textbox(label="Report", lines=8, interactive=False)

    return {"files": files, "reference": reference, "name": name, "trigger": trigger, "class_word": class_word,
            "size": size, "crop": crop, "margin": margin, "tolerance": tolerance, "blur": blur,
            "subject_mask": subject_mask, "background_weight": background_weight, "captioner": captioner,
            "template": template, "prepare_btn": prepare_btn, "stop_btn": stop_btn, "replace_it": replace_it,
            "replace_row": replace_row, "replace_md": replace_md, "replace_btn": replace_btn, "keep_btn": keep_btn,
            "subject_row": subject_row, "subject_faces": subject_faces, "subject_face": subject_face,
            "report": report}


def wire(ctx: TabContext, w: dict, shown: dict) -> None:
    """Bind Prepare (/dataset_prepare), Replace it, Stop and the face pick; `shown` are the tab's dataset picker and
    pictures, which a prepared dataset fills."""
    inputs = {"files_": w["files"], "name_": w["name"], "trigger_": w["trigger"], "class_word_": w["class_word"],
              "size_": w["size"], "crop_": w["crop"], "margin_": w["margin"], "blur_": w["blur"],
              "reference_": w["reference"], "tolerance_": w["tolerance"], "captioner_": w["captioner"],
              "template_": w["template"], "subject_mask_": w["subject_mask"],
              "background_weight_": w["background_weight"], "subject_face_": w["subject_face"],
              "replace_": w["replace_it"]}
    prepared = {"report": w["report"], **shown, "replace_row": w["replace_row"], "subject_row": w["subject_row"]}
    questions = {k: w[k] for k in ("replace_row", "replace_md", "subject_row", "subject_faces")}
    for event in (bind(ctx, w["prepare_btn"].click, prepare, inputs, prepared, api_name="dataset_prepare", gpu=True),
                  bind(ctx, w["replace_btn"].click, prepare, {**inputs, "replace_": gr.State(True)}, prepared,
                       api_name=False, gpu=True)):
        bind(ctx, event.failure, ask, None, questions, api_name=False, queue=False)
    w["keep_btn"].click(lambda: gr.update(visible=False), None, w["replace_row"], api_name=False, queue=False)
    w["subject_faces"].select(_picked_face, None, w["subject_face"], api_name=False, queue=False)
    bind(ctx, w["stop_btn"].click, stop, None, None, api_name=False, queue=False)


# ---- callbacks ---------------------------------------------------------------------------------------------------

def request_from_widgets(v) -> data.PrepareRequest:
    return data.PrepareRequest(
        inputs=paths(v.files_), name=v.name_, trigger=v.trigger_, class_word=v.class_word_, size=int(v.size_),
        crop=v.crop_, margin=float(v.margin_), blur_bystanders=bool(v.blur_), reference=paths(v.reference_),
        tolerance=float(v.tolerance_), captioner=v.captioner_, template=v.template_ or DEFAULT_TEMPLATE,
        subject_mask=v.subject_mask_ or "none", background_weight=float(v.background_weight_),
        subject_face=v.subject_face_ or "", replace=bool(v.replace_),
    )


def prepare(ctx: TabContext, v, request: gr.Request, progress):
    from studio.ui.dataset_tab import pictures_of

    should_stop = ctx.stops.begin(request, "prepare")
    try:
        result = data.prepare_dataset(ctx.studio, request_from_widgets(v), progress_fn(progress), should_stop)
    except Cancelled:
        return {"report": "Stopped: nothing was written.", "gallery": [], "captions": []}  # the picker stays
    except (NameTaken, SubjectUnclear) as e:  # a question: the failure listener (ask) puts it on the page
        ctx.questions[_session(request), "prepare"] = e
        raise
    return {"report": result.summary(), "chosen": gr.update(choices=dataset_names(ctx.studio),
                                                            value=result.dataset.name),
            **pictures_of(ctx, result.dataset), "replace_row": gr.update(visible=False),
            "subject_row": gr.update(visible=False)}


def stop(ctx: TabContext, v, request: gr.Request):
    ctx.stops.stop(request, "prepare")


def ask(ctx: TabContext, v, request: gr.Request):
    """After a failed preparation: the question it left, if any (replace the dataset of that name? whose face is
    the subject's?), on the page; both hidden otherwise."""
    asked = ctx.questions.pop((_session(request), "prepare"), None)
    out = {"replace_row": gr.update(visible=isinstance(asked, NameTaken)),
           "subject_row": gr.update(visible=isinstance(asked, SubjectUnclear))}
    if isinstance(asked, NameTaken):
        out["replace_md"] = f"**{asked}**"
    if isinstance(asked, SubjectUnclear):
        out["subject_faces"] = [(face, value) for value, face in asked.faces]
    return out


def _picked_face(evt: gr.SelectData):
    """The subject_face value of the face clicked (its caption)."""
    caption = (evt.value or {}).get("caption") if isinstance(evt.value, dict) else None
    return caption or gr.skip()


def _session(request: gr.Request | None) -> str:
    return request.session_hash if request is not None and request.session_hash else ""


def _size_info(studio) -> str:
    """Why the preselected size: the studio's default model and its family's native size."""
    model = model_name(studio, studio.store.default_model)
    try:
        family = studio.store.resolve(studio.store.default_model).family
    except ValueError:
        family = None
    if family is None:
        return f"512 preselected ({model} is not found); SD 1.x 512, SD 2.x 768, SDXL and FLUX.1 1024"
    return (f"{family.native_resolution} preselected: {family.label}'s native size ({model}, the studio's default "
            f"model); SDXL and FLUX.1 want 1024")


def paths(files) -> tuple[Path, ...]:
    if not files:
        return ()
    files = files if isinstance(files, list) else [files]
    return tuple(Path(f if isinstance(f, str) else f.name) for f in files)
