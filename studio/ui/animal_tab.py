"""Face to animal tab: photo, animal and breed, control images previewed, Transform -> original | control | results."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio.faces.control import CONTROL_MODULES, ControlOptions
from studio.generate.animal import (ANIMALS, NO_CONTROLNET, AnimalRequest,
                                    ControlChoice, NoFaceFound, animal_prompt, face_to_animal, plan_animal)
from studio.generate.request import CONTROL_MODES
from studio.models.families import all_families
from studio.progress import Cancelled
from studio.ui.common import (DEFAULT_MODEL, FAMILY_SAMPLER, TabContext, TabRefresh, bind, chosen_model, chosen_sampler,
                              model_choices, progress_fn, sampler_choices)
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


def request_from_widgets(**v) -> AnimalRequest:
    """The /animal endpoint's inputs, by name, as an AnimalRequest."""
    controls = [ControlChoice(module, "" if v[f"{module}_controlnet"] in (None, DEFAULT_CONTROLNET)
                              else v[f"{module}_controlnet"], float(v[f"{module}_weight"]), float(v[f"{module}_start"]),
                              float(v[f"{module}_end"]))
                for module in CONTROL_MODULES if v[module]]
    if v["image"] is None:
        raise ValueError("`image` is missing: upload a face photo first")
    # A prompt left at some animal's preset text (an API caller who only set animal and breed) follows the preset.
    untouched_prompts = {animal_prompt(name)[0] for name in ANIMALS}
    untouched_negatives = {preset.negative_prompt for preset in ANIMALS.values()}
    negative = v["negative_prompt"]
    return AnimalRequest(
        image=v["image"], animal=v["animal"], breed=v["breed"] or "",
        prompt="" if (v["prompt"] or "").strip() in untouched_prompts else v["prompt"],
        negative_prompt=None if negative is None or negative in untouched_negatives else negative,
        controls=controls,
        options=ControlOptions(max_faces=int(v["max_faces"]), min_confidence=float(v["min_confidence"]),
                               canny_low=int(v["canny_low"]), canny_high=int(v["canny_high"])),
        model=chosen_model(v["model"]), task=v["task"], strength=float(v["strength"]),
        control_mode=v["control_mode"], seed=int(v["seed"] if v["seed"] is not None else -1),
        n_seeds=int(v["n_seeds"]), steps=int(v["steps"]), cfg=float(v["cfg"] or 0) or None,
        sampler=chosen_sampler(v["sampler"]),
        size=int(v["size"] or 0) or None, crop_to_face=bool(v["crop_to_face"]), paste_back=bool(v["paste_back"]),
        face_index=int(v["face_index"] or 0),
    )


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    inputs = {}  # the /animal endpoint's inputs, by name, filled as the widgets are made
    with gr.Row():
        with gr.Column(scale=1):
            inputs["image"] = photo = gr.Image(type="pil", label="Face photo", height=320)
            with gr.Row():
                inputs["animal"] = animal = gr.Dropdown(list(ANIMALS), value=_DEFAULTS.animal, label="Animal")
                inputs["breed"] = breed = gr.Dropdown(_breed_choices(_DEFAULTS.animal), value="", label="Breed",
                                                      allow_custom_value=True)
            default_prompt, default_negative = animal_prompt(_DEFAULTS.animal)
            inputs["prompt"] = prompt = gr.Textbox(default_prompt, label="Prompt", lines=2,
                                                   info="filled from the animal and breed; edit freely")
            inputs["negative_prompt"] = negative = gr.Textbox(default_negative, label="Negative prompt", lines=2)
            with gr.Row():
                n_seeds = gr.Slider(1, 8, value=1, step=1, label="Seeds (seed, seed+1, ...)")
                crop = gr.Checkbox(False, label="Crop to the face first")
                paste = gr.Checkbox(True, label="Paste back into the photo", interactive=False,
                                    info="with a face crop: the result goes back into the whole photo")
            demo_slot = gr.Column()  # the demo example goes here once every widget it fills exists
            with gr.Row():
                preview_btn = gr.Button("Preview controls")
                transform_btn = gr.Button("Transform", variant="primary")
                stop_btn = gr.Button("Stop")
            with gr.Accordion("Controls (several at once, each with its ControlNet and weight)", open=True):
                for module in CONTROL_MODULES:
                    with gr.Group():
                        inputs[module] = gr.Checkbox(module == "mediapipe_face", label=module, info=_HELP[module])
                        with gr.Row():
                            inputs[f"{module}_controlnet"] = listed(ctx, gr.Dropdown(
                                _controlnet_choices(studio), value=DEFAULT_CONTROLNET, label="ControlNet",
                                min_width=160), "ControlNet", DEFAULT_CONTROLNET, NO_CONTROLNET)
                            inputs[f"{module}_weight"] = gr.Slider(0, 2, value=1.0, step=0.05, label="Weight",
                                                                   min_width=100)
                            inputs[f"{module}_start"] = gr.Slider(0, 1, value=0.0, step=0.05, label="Guidance start",
                                                                  min_width=100)
                            inputs[f"{module}_end"] = gr.Slider(0, 1, value=1.0, step=0.05, label="Guidance end",
                                                                min_width=100)
                with gr.Row():
                    inputs["max_faces"] = gr.Slider(1, 10, value=1, step=1, label="Max faces", min_width=120)
                    inputs["min_confidence"] = gr.Slider(0.05, 1, value=0.5, step=0.05,
                                                         label="Min confidence (mediapipe)", min_width=120)
                    inputs["canny_low"] = gr.Slider(1, 254, value=100, step=1, label="Canny low", min_width=120)
                    inputs["canny_high"] = gr.Slider(2, 255, value=200, step=1, label="Canny high", min_width=120)
            with gr.Accordion("Generation", open=False):
                inputs["model"] = base = listed(ctx, gr.Dropdown(model_choices(studio), value=DEFAULT_MODEL,
                                                                 label="Base model"), "base model", DEFAULT_MODEL)
                with gr.Row():
                    inputs["task"] = gr.Radio(["img2img", "txt2img"], value=_DEFAULTS.task, label="Start from",
                                              info="img2img keeps the photo's colours; txt2img follows the controls only")
                    inputs["strength"] = gr.Slider(0.05, 1, value=_DEFAULTS.strength, step=0.05,
                                                   label="Denoising strength")
                inputs["control_mode"] = gr.Radio(list(CONTROL_MODES), value=_DEFAULTS.control_mode,
                                                  label="Control mode")
                with gr.Row():
                    inputs["seed"] = gr.Number(-1, label="Seed", precision=0, info="-1: random")
                    inputs["n_seeds"] = n_seeds
                    size = gr.Number(0, label="Size (longer side)", precision=0, info="0: the model's native size")
                    face_index = gr.Number(0, label="Face", precision=0, info="0: the largest")
                with gr.Row():
                    inputs["sampler"] = gr.Dropdown(sampler_choices(), value=FAMILY_SAMPLER, label="Sampler",
                                                    info="the model's: DPM++ 2S a (seed 003's); Euler for FLUX.1")
                    inputs["steps"] = gr.Slider(1, 150, value=_DEFAULTS.steps, step=1, label="Steps")
                    inputs["cfg"] = gr.Slider(0, 30, value=0, step=0.5, label="CFG scale",
                                              info="0: the family's (7; 1 for FLUX.1)")
        with gr.Column(scale=1):
            status = gr.Markdown("Upload a face photo, then preview its control images or press Transform.")
            controls_view = gr.Gallery(label="Control images", columns=3, height=240, format="png")
            sheet = gr.Image(label="Original | control | results", type="pil", format="png")
            results = gr.Gallery(label="Results", columns=4, height="auto", format="png")
            parameters = gr.Textbox(label="Parameters", lines=4, buttons=["copy"])
    inputs.update(size=size, crop_to_face=crop, paste_back=paste, face_index=face_index)
    with demo_slot:
        gr.Examples([list(POCKET_DEMO.values())], [inputs[name] for name in POCKET_DEMO],
                    label="Offline demo: a cartoon face into a dog on builtin:pocket (pick it, then Transform)")

    previewed = {"controls": controls_view, "status": status, **{f"use_{m}": inputs[m] for m in CONTROL_MODULES}}
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
    lists = {"model": base, **{m: inputs[f"{m}_controlnet"] for m in CONTROL_MODULES}}
    return TabRefresh(refresh_lists, lists)


# ---- callbacks ---------------------------------------------------------------------------------------------------

def preview(ctx: TabContext, v):
    try:
        plan = plan_animal(ctx.studio, request_from_widgets(**vars(v)))
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
        result = face_to_animal(ctx.studio, request_from_widgets(**vars(v)), should_stop=should_stop,
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
