"""The Dataset tab's first part: photos (or a .zip) in, a training set out, through one studio.data.prepare_dataset
call; or a question first: replace the dataset of that name? whose face is the subject's, when most photos show
several faces and no reference photo says? (the API raises the same questions as errors; replace and subject_face
answer them)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import data
from studio.data.prepare import NameTaken, PrepareRequest, default_size
from studio.data.subject import SubjectUnclear
from studio.progress import Cancelled
from studio.ui.common import TabContext, bind, dataset_names, progress_fn
from studio.ui.forms import Form, request_from_values
from studio.ui.names import model_name


def layout(ctx: TabContext) -> dict:
    """The form (PrepareRequest's, `form`), the two questions and the report, by name (the names the callbacks use;
    /dataset_prepare takes the form's: PrepareRequest's fields)."""
    studio = ctx.studio
    form = Form(ctx, PrepareRequest)
    gr.Markdown("Drop 5 to 300 photos of one subject (or a .zip). You get square crops around the subject's face, "
                "other people's faces blurred and masked out of training, a caption per picture that starts with "
                "your trigger word, and a check of which photos may not show the same person.")
    with gr.Row():
        with gr.Column(scale=2):
            form.put("inputs", gr.File(file_count="multiple", file_types=[".jpg", ".jpeg", ".png", ".webp", ".zip"],
                                       type="filepath", label=form.settings["inputs"].label))
            form.put("reference", gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                          label=f"{form.settings['reference'].label} "
                                                f"({form.settings['reference'].help})"))
        with gr.Column(scale=2):
            form.widget("name", placeholder="e.g. tim-2024")
            with gr.Row():
                form.widget("trigger", placeholder="e.g. ohwx", info="starts every caption")
                form.widget("class_word")
            with gr.Row():
                form.widget("size", gr.Radio, value=default_size(studio), info=_size_info(studio))
                form.widget("crop", gr.Radio)
            with gr.Row():
                form.widget("margin")
                form.widget("tolerance")
            form.widget("blur_bystanders")
            with gr.Row():
                form.widget("subject_mask", gr.Radio)
                form.widget("background_weight")
            with gr.Row():
                form.widget("captioner", gr.Radio)
                form.widget("template")
    form.rest(skip=("subject_face", "replace"))
    with gr.Row():
        prepare_btn = gr.Button("Prepare dataset", variant="primary")
        stop_btn = gr.Button("Stop")
    form.widget("replace", visible=False)  # the API's: the page asks instead (below)
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
        subject_face = form.widget("subject_face")
    report = gr.Textbox(label="Report", lines=8, interactive=False)

    return {"form": form, "prepare_btn": prepare_btn, "stop_btn": stop_btn, "replace_row": replace_row,
            "replace_md": replace_md, "replace_btn": replace_btn, "keep_btn": keep_btn, "subject_row": subject_row,
            "subject_faces": subject_faces, "subject_face": subject_face, "report": report}


def wire(ctx: TabContext, w: dict, shown: dict) -> None:
    """Bind Prepare (/dataset_prepare), Replace it, Stop and the face pick; `shown` are the tab's dataset picker and
    pictures, which a prepared dataset fills."""
    inputs = w["form"].inputs
    prepared = {"report": w["report"], **shown, "replace_row": w["replace_row"], "subject_row": w["subject_row"]}
    questions = {k: w[k] for k in ("replace_row", "replace_md", "subject_row", "subject_faces")}
    for event in (bind(ctx, w["prepare_btn"].click, prepare, inputs, prepared, api_name="dataset_prepare", gpu=True),
                  bind(ctx, w["replace_btn"].click, prepare, {**inputs, "replace": gr.State(True)}, prepared,
                       api_name=False, gpu=True)):
        bind(ctx, event.failure, ask, None, questions, api_name=False, queue=False)
    w["keep_btn"].click(lambda: gr.update(visible=False), None, w["replace_row"], api_name=False, queue=False)
    w["subject_faces"].select(_picked_face, None, w["subject_face"], api_name=False, queue=False)
    bind(ctx, w["stop_btn"].click, stop, None, None, api_name=False, queue=False)


# ---- callbacks ---------------------------------------------------------------------------------------------------

def request_from_widgets(values: dict) -> PrepareRequest:
    """/dataset_prepare's inputs (PrepareRequest's fields, by name) as a PrepareRequest: the uploads as paths, then
    the one conversion flags and API calls go through."""
    return request_from_values(PrepareRequest, {**values, "inputs": paths(values.get("inputs")),
                                                "reference": paths(values.get("reference"))})


def prepare(ctx: TabContext, v, request: gr.Request, progress):
    from studio.ui.dataset_tab import pictures_of

    should_stop = ctx.stops.begin(request, "prepare")
    try:
        result = data.prepare_dataset(ctx.studio, request_from_widgets(vars(v)), progress_fn(progress), should_stop)
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
