"""Face to animal tab: photo, animal and breed, control images previewed, Transform -> original | control | results."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio.faces.control import CONTROL_MODULES, ControlOptions
from studio.generate.animal import (ANIMALS, NO_CONTROLNET, AnimalRequest, ControlChoice, NoFaceFound, animal_prompt,
                                    face_to_animal, plan_animal)
from studio.models.families import all_families
from studio.progress import Cancelled
from studio.ui.common import TabContext, TabRefresh, bind, model_choices, progress_fn
from studio.ui.forms import Form, request_from_values
from studio.ui.names import listed
from studio.ui.serving import served

DEFAULT_CONTROLNET = "(default)"  # the ControlNet that fits the base model (see default_controlnet)
EXAMPLES_DIR = Path(__file__).parent / "examples"
# The offline demo: a cartoon face (a pocket drawing) into a cartoon dog on builtin:pocket, which has no ControlNet,
# so canny is only previewed and img2img does the work. Widget values by the /animal endpoint's input names.
POCKET_DEMO = {"image": str(EXAMPLES_DIR / "cartoon_face.png"),
               "prompt": "a cartoon dog face with brown fur, on a white background", "negative_prompt": "",
               "mediapipe_face": False, "canny": True, "model": "builtin:pocket", "strength": 0.75, "cfg": 4.0,
               "sampler": "Euler a", "seed": 0, "n_seeds": 4}
# Shown as one button: eleven values in a table did not fit the half-page column
DEMO_LABEL = "A cartoon face into a dog on builtin:pocket"
_DEFAULTS = AnimalRequest(image=None)
_HELP = {
    "mediapipe_face": "MediaPipe face mesh: contours, eyes, brows and lips, for the MediaPipe face ControlNet",
    "openpose_face": "70 face keypoints (dlib's 68 and the pupils) as white dots, for the OpenPose ControlNet",
    "canny": "edges of the whole picture: works without a face",
}


def _controlnet_choices(studio) -> list[str]:
    return list(dict.fromkeys([DEFAULT_CONTROLNET, NO_CONTROLNET, *studio.store.list_models().controlnet,
                               *(cn for f in reversed(all_families()) for cn in f.default_controlnets.values())]))


def _breed_choices(animal: str) -> list[str]:
    preset = ANIMALS.get(animal)
    return ["", *preset.breeds] if preset else [""]


def request_from_widgets(v: dict) -> AnimalRequest:
    """The /animal endpoint's inputs, by name (AnimalRequest's fields, ControlOptions' and, per module, a checkbox
    and <module>_<ControlChoice field>), as an AnimalRequest: the one conversion flags and API calls go through."""
    if v.get("image") is None:
        raise ValueError("`image` is missing: upload a face photo first")
    controls = []
    for module in CONTROL_MODULES:
        if v.get(module):
            choice = {k[len(module) + 1:]: x for k, x in v.items() if k.startswith(f"{module}_")}
            if choice.get("model") == DEFAULT_CONTROLNET:
                choice["model"] = None
            controls.append(request_from_values(ControlChoice, choice, module=module))
    return request_from_values(AnimalRequest, {**v, "image": None}, image=v["image"], controls=controls,
                               options=request_from_values(ControlOptions, v))


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    form, options = Form(ctx, AnimalRequest), Form(ctx, ControlOptions)  # /animal's parameters: their fields...
    per_module = {m: Form(ctx, ControlChoice, prefix=f"{m}_") for m in CONTROL_MODULES}  # ...and <module>_<field>
    use = {}  # a checkbox per module: use it
    with gr.Row():
        with gr.Column(scale=1):
            photo = form.put("image", gr.Image(type="pil", label=form.settings["image"].label, height=320))
            ctx.widgets["animal.image"] = photo  # Generate's "Send to Face to animal" puts a picture here
            with gr.Row():
                animal = form.widget("animal")
                breed = form.widget("breed", choices=_breed_choices(_DEFAULTS.animal), allow_custom_value=True,
                                    component=gr.Dropdown)
            default_prompt, default_negative = animal_prompt(_DEFAULTS.animal)
            prompt = form.widget("prompt", value=default_prompt)
            negative = form.widget("negative_prompt", value=default_negative)
            with gr.Row():
                form.widget("n_seeds")
                crop = form.widget("crop_to_face")
                paste = form.widget("paste_back", interactive=False)
            demo_slot = gr.Column()  # the demo example goes here once every widget it fills exists
            with gr.Row():
                preview_btn = gr.Button("Preview controls")
                transform_btn = gr.Button("Transform", variant="primary")
                stop_btn = gr.Button("Stop")
            with gr.Accordion("Controls (several at once, each with its ControlNet and weight)", open=True):
                for module, choice in per_module.items():
                    with gr.Group():
                        use[module] = gr.Checkbox(module == "mediapipe_face", label=module, info=_HELP[module])
                        with gr.Row():
                            listed(ctx, choice.put("model", gr.Dropdown(
                                _controlnet_choices(studio), value=DEFAULT_CONTROLNET,
                                label=choice.settings["model"].label, min_width=160)),
                                   "ControlNet", DEFAULT_CONTROLNET, NO_CONTROLNET)
                            for name in ("weight", "guidance_start", "guidance_end"):
                                choice.widget(name, min_width=100, info=None)
                with gr.Row():
                    for name in ("max_faces", "min_confidence", "canny_low", "canny_high"):
                        options.widget(name, min_width=120, info=None)
                options.rest(title="More control settings")
            with gr.Accordion("Generation", open=False):
                base = form.widget("model")
                with gr.Row():
                    form.widget("task", gr.Radio)
                    form.widget("strength", info=None)
                form.widget("control_mode", gr.Radio)
                with gr.Row():
                    for name in ("seed", "size", "face_index"):
                        form.widget(name)
                with gr.Row():
                    for name in ("sampler", "steps", "cfg"):
                        form.widget(name)
                form.rest()
        with gr.Column(scale=1):
            status = gr.Markdown("Upload a face photo, then preview its control images or press Transform.")
            controls_view = gr.Gallery(label="Control images", columns=3, height=240, format="png")
            sheet = gr.Image(label="Original | control | results", type="pil", format="png")
            results = gr.Gallery(label="Results", columns=4, height="auto", format="png")
            parameters = gr.Textbox(label="Parameters", lines=4, buttons=["copy"])
    inputs = {**form.inputs, **options.inputs, **use, **{k: w for f in per_module.values() for k, w in f.inputs.items()}}
    with demo_slot:
        gr.Examples([list(POCKET_DEMO.values())], [inputs[name] for name in POCKET_DEMO], example_labels=[DEMO_LABEL],
                    label="Offline example (pick it, then Transform)")

    previewed = {"controls": controls_view, "status": status, **{f"use_{m}": use[m] for m in CONTROL_MODULES}}
    bind(ctx, preview_btn.click, preview, inputs, previewed, api_name=False)
    bind(ctx, photo.upload, preview, inputs, previewed, api_name=False)
    bind(ctx, transform_btn.click, transform, inputs, {"controls": controls_view, "sheet": sheet, "results": results,
                                                       "parameters": parameters, "status": status},
         api_name="animal", gpu=True)
    bind(ctx, stop_btn.click, stop, None, None, api_name=False, queue=False)
    crop.change(lambda on: gr.update(interactive=bool(on)), crop, paste, api_name=False, queue=False)
    bind(ctx, animal.change, animal_changed, {"animal": animal},
         {"breed": breed, "prompt": prompt, "negative": negative}, api_name=False, queue=False)
    bind(ctx, breed.change, breed_changed, {"animal": animal, "breed": breed},
         {"prompt": prompt, "negative": negative}, api_name=False, queue=False)
    lists = {"model": base, **{m: per_module[m].inputs[f"{m}_model"] for m in CONTROL_MODULES}}
    return TabRefresh(refresh_lists, lists)


# ---- callbacks ---------------------------------------------------------------------------------------------------

def preview(ctx: TabContext, v):
    try:
        plan = plan_animal(ctx.studio, request_from_widgets(vars(v)))
    except NoFaceFound as e:
        # Say so, show the picture looked at, and offer the control that needs no face.
        message = f"**{e}**\n\nCanny is selected instead: press Transform to use it."
        return {"controls": [(e.photo, "no face found")], "status": message,
                **{f"use_{m}": gr.update(value=m == "canny") for m in CONTROL_MODULES}}
    shown = plan.preview
    nets = ", ".join(f"{u.module} with {u.model}" for u in plan.units) or "no ControlNet: plain img2img"
    notes = " ".join(f"{n[0].upper()}{n[1:]}." for n in plan.notes) or "Face found."
    return {"controls": [(im, choice.module) for choice, im in shown.controls],
            "status": f"{notes} {plan.request.model} will work at {shown.work.width}x{shown.work.height} ({nets})."}


def transform(ctx: TabContext, v, request: gr.Request, progress):
    should_stop = ctx.stops.begin(request, "animal")
    try:
        result = face_to_animal(ctx.studio, request_from_widgets(vars(v)), should_stop=should_stop,
                                progress=progress_fn(progress))
    except Cancelled:
        raise Cancelled("Transform stopped.") from None
    settings = ctx.studio.settings
    images = [(served(settings, a.path) if a.path else a.image, f"seed {a.seed}") for a in result.images]
    notes = " ".join(f"{n[0].upper()}{n[1:]}." for n in result.notes)
    each = result.generation_seconds
    timing = (f"{len(images)} result(s) in {result.seconds:.1f} s: the face and control images "
              f"{result.control_seconds:.1f} s, then one generation per seed ({', '.join(f'{t:.1f}' for t in each)} s; "
              f"the first loads the model)")
    work = result.preview.work
    return {"controls": [(im, choice.module) for choice, im in result.preview.controls], "sheet": result.sheet,
            "results": images, "parameters": result.images[0].parameters,
            "status": f"{timing}, at {work.width}x{work.height}. {notes}"}


def stop(ctx: TabContext, v, request: gr.Request):
    ctx.stops.stop(request, "animal")


def animal_changed(ctx: TabContext, v):
    auto_prompt, auto_negative = animal_prompt(v.animal)
    return {"breed": gr.update(choices=_breed_choices(v.animal), value=""), "prompt": auto_prompt,
            "negative": auto_negative}


def breed_changed(ctx: TabContext, v):
    auto_prompt, auto_negative = animal_prompt(v.animal, v.breed or "")
    return {"prompt": auto_prompt, "negative": auto_negative}


def refresh_lists(ctx: TabContext, v):
    choices = _controlnet_choices(ctx.studio)
    return {"model": gr.update(choices=model_choices(ctx.studio)),
            **{m: gr.update(choices=choices) for m in CONTROL_MODULES}}
