"""Face to animal tab: photo, animal and breed, control images previewed, Transform -> original | control | results."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path

import gradio as gr

from studio.faces.control import CONTROL_MODULES, ControlOptions
from studio.generate.animal import (ANIMALS, HUB_CONTROLNETS, NO_CONTROLNET, AnimalRequest, ControlChoice,
                                    NoFaceFound, animal_prompt, face_to_animal, preview_controls)
from studio.generate.request import CONTROL_MODES
from studio.generate.samplers import SAMPLERS
from studio.progress import Cancelled
from studio.ui.common import GPU_QUEUE, shows_errors

DEFAULT_CHOICE = "(default)"
EXAMPLES_DIR = Path(__file__).parent / "examples"
# The offline demo: a cartoon face (a pocket drawing) into a cartoon dog on builtin:pocket, which has no ControlNet,
# so canny is only previewed and img2img does the work. Widget values by request_from_widgets' parameter names.
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
    return list(dict.fromkeys([DEFAULT_CHOICE, NO_CONTROLNET, *studio.store.list_models().controlnet,
                               *HUB_CONTROLNETS.values()]))


def _base_choices(studio) -> list[str]:
    return [DEFAULT_CHOICE, *studio.store.list_models().base]


def _breed_choices(animal: str) -> list[str]:
    preset = ANIMALS.get(animal)
    return ["", *preset.breeds] if preset else [""]


def request_from_widgets(image, animal, breed, prompt, negative_prompt,
                         mediapipe_face, mediapipe_face_controlnet, mediapipe_face_weight, mediapipe_face_start,
                         mediapipe_face_end, openpose_face, openpose_face_controlnet, openpose_face_weight,
                         openpose_face_start, openpose_face_end, canny, canny_controlnet, canny_weight, canny_start,
                         canny_end, max_faces, min_confidence, canny_low, canny_high, model, task, strength,
                         control_mode, seed, n_seeds, sampler, steps, cfg, size, crop_to_face, paste_back,
                         face_index) -> AnimalRequest:
    """The tab's widget values, in the order of its inputs, as an AnimalRequest."""
    rows = [(mediapipe_face, mediapipe_face_controlnet, mediapipe_face_weight, mediapipe_face_start,
             mediapipe_face_end),
            (openpose_face, openpose_face_controlnet, openpose_face_weight, openpose_face_start, openpose_face_end),
            (canny, canny_controlnet, canny_weight, canny_start, canny_end)]
    controls = [ControlChoice(module, "" if controlnet in (None, DEFAULT_CHOICE) else controlnet, float(weight),
                              float(start), float(end))
                for module, (on, controlnet, weight, start, end) in zip(CONTROL_MODULES, rows) if on]
    if image is None:
        raise ValueError("`image` is missing: upload a face photo first")
    # A prompt left at some animal's preset text (an API caller who only set animal and breed) follows the preset.
    untouched_prompts = {animal_prompt(name)[0] for name in ANIMALS}
    untouched_negatives = {preset.negative_prompt for preset in ANIMALS.values()}
    return AnimalRequest(
        image=image, animal=animal, breed=breed or "",
        prompt="" if (prompt or "").strip() in untouched_prompts else prompt,
        negative_prompt=None if negative_prompt is None or negative_prompt in untouched_negatives else negative_prompt,
        controls=controls,
        options=ControlOptions(max_faces=int(max_faces), min_confidence=float(min_confidence),
                               canny_low=int(canny_low), canny_high=int(canny_high)),
        model="" if model in (None, DEFAULT_CHOICE) else model, task=task, strength=float(strength),
        control_mode=control_mode, seed=int(seed if seed is not None else -1), n_seeds=int(n_seeds),
        steps=int(steps), cfg=float(cfg), sampler=sampler, size=int(size or 0) or None, crop_to_face=bool(crop_to_face),
        paste_back=bool(paste_back), face_index=int(face_index or 0),
    )


def build(studio) -> None:
    stops: dict[str, threading.Event] = {}  # per browser session: one user's Stop never stops another's run
    with gr.Row():
        with gr.Column(scale=1):
            photo = gr.Image(type="pil", label="Face photo", height=320)
            with gr.Row():
                animal = gr.Dropdown(list(ANIMALS), value=_DEFAULTS.animal, label="Animal")
                breed = gr.Dropdown(_breed_choices(_DEFAULTS.animal), value="", label="Breed", allow_custom_value=True)
            default_prompt, default_negative = animal_prompt(_DEFAULTS.animal)
            prompt = gr.Textbox(default_prompt, label="Prompt", lines=2,
                                info="filled from the animal and breed; edit freely")
            negative = gr.Textbox(default_negative, label="Negative prompt", lines=2)
            with gr.Row():
                n_seeds = gr.Slider(1, 8, value=1, step=1, label="Seeds (seed, seed+1, ...)")
                crop = gr.Checkbox(False, label="Crop to the face first")
                paste = gr.Checkbox(True, label="Paste back into the photo")
            demo_slot = gr.Column()  # the demo example goes here once every widget it fills exists
            with gr.Row():
                preview_btn = gr.Button("Preview controls")
                transform_btn = gr.Button("Transform", variant="primary")
                stop_btn = gr.Button("Stop")
            with gr.Accordion("Controls (several at once, each with its ControlNet and weight)", open=True):
                control_widgets = []
                for module in CONTROL_MODULES:
                    with gr.Group():
                        enabled = gr.Checkbox(module == "mediapipe_face", label=module, info=_HELP[module])
                        with gr.Row():
                            model = gr.Dropdown(_controlnet_choices(studio), value=DEFAULT_CHOICE, label="ControlNet",
                                                allow_custom_value=True, min_width=160)
                            weight = gr.Slider(0, 2, value=1.0, step=0.05, label="Weight", min_width=100)
                            start = gr.Slider(0, 1, value=0.0, step=0.05, label="Guidance start", min_width=100)
                            end = gr.Slider(0, 1, value=1.0, step=0.05, label="Guidance end", min_width=100)
                    control_widgets.append((enabled, model, weight, start, end))
                with gr.Row():
                    max_faces = gr.Slider(1, 10, value=1, step=1, label="Max faces", min_width=120)
                    min_confidence = gr.Slider(0.05, 1, value=0.5, step=0.05, label="Min confidence (mediapipe)",
                                               min_width=120)
                    canny_low = gr.Slider(1, 254, value=100, step=1, label="Canny low", min_width=120)
                    canny_high = gr.Slider(2, 255, value=200, step=1, label="Canny high", min_width=120)
            with gr.Accordion("Generation", open=False):
                base = gr.Dropdown(_base_choices(studio), value=DEFAULT_CHOICE, label="Base model",
                                   allow_custom_value=True)
                with gr.Row():
                    task = gr.Radio(["img2img", "txt2img"], value=_DEFAULTS.task, label="Start from",
                                    info="img2img keeps the photo's colours; txt2img follows the controls only")
                    strength = gr.Slider(0.05, 1, value=_DEFAULTS.strength, step=0.05, label="Denoising strength")
                control_mode = gr.Radio(list(CONTROL_MODES), value=_DEFAULTS.control_mode, label="Control mode")
                with gr.Row():
                    seed = gr.Number(-1, label="Seed", precision=0, info="-1: random")
                    size = gr.Number(0, label="Size (longer side)", precision=0, info="0: the model's native size")
                    face_index = gr.Number(0, label="Face", precision=0, info="0: the largest")
                with gr.Row():
                    sampler = gr.Dropdown(list(SAMPLERS), value=_DEFAULTS.sampler, label="Sampler")
                    steps = gr.Slider(1, 150, value=_DEFAULTS.steps, step=1, label="Steps")
                    cfg = gr.Slider(0, 30, value=_DEFAULTS.cfg, step=0.5, label="CFG scale")
        with gr.Column(scale=1):
            status = gr.Markdown("Upload a face photo, then preview its control images or press Transform.")
            controls_view = gr.Gallery(label="Control images", columns=3, height=240, format="png")
            sheet = gr.Image(label="Original | control | results", type="pil", format="png")
            results = gr.Gallery(label="Results", columns=4, height=260, format="png")
            parameters = gr.Textbox(label="Parameters", lines=4, buttons=["copy"])

    flat_controls = [w for row in control_widgets for w in row]
    inputs = [photo, animal, breed, prompt, negative, *flat_controls, max_faces, min_confidence, canny_low,
              canny_high, base, task, strength, control_mode, seed, n_seeds, sampler, steps, cfg, size, crop, paste,
              face_index]
    by_name = dict(zip(inspect.signature(request_from_widgets).parameters, inputs))
    with demo_slot:
        gr.Examples([list(POCKET_DEMO.values())], [by_name[name] for name in POCKET_DEMO],
                    label="Offline demo: a cartoon face into a dog on builtin:pocket (pick it, then Transform)")

    enable_boxes = [row[0] for row in control_widgets]

    @shows_errors
    def preview(*values):
        keep = [gr.update()] * len(enable_boxes)
        try:
            shown = preview_controls(request_from_widgets(*values))
        except NoFaceFound as e:
            # Say so, show the picture looked at, and offer the control that needs no face.
            offer = [gr.update(value=m == "canny") for m in CONTROL_MODULES]
            message = f"**{e}**\n\nCanny is selected instead: press Transform to use it."
            return [(e.photo, "no face found")], message, *offer
        gallery = [(im, choice.module) for choice, im in shown.controls]
        notes = "; ".join(shown.notes) or "Face found."
        return gallery, f"{notes} The model will work at {shown.work.width}x{shown.work.height}.", *keep

    @shows_errors
    def transform(image, animal, breed, prompt, negative_prompt,
                  mediapipe_face, mediapipe_face_controlnet, mediapipe_face_weight, mediapipe_face_start,
                  mediapipe_face_end, openpose_face, openpose_face_controlnet, openpose_face_weight,
                  openpose_face_start, openpose_face_end, canny, canny_controlnet, canny_weight, canny_start,
                  canny_end, max_faces, min_confidence, canny_low, canny_high, model, task, strength, control_mode,
                  seed, n_seeds, sampler, steps, cfg, size, crop_to_face, paste_back, face_index,
                  request: gr.Request, progress=gr.Progress()):
        # The API endpoint /animal: named parameters, in the order of `inputs`.
        values = locals()
        widgets = {name: values[name] for name in inspect.signature(request_from_widgets).parameters}
        stop = stops.setdefault(request.session_hash if request else "", threading.Event())
        stop.clear()
        try:
            result = face_to_animal(studio, request_from_widgets(**widgets), should_stop=stop.is_set,
                                    progress=lambda f, msg: progress(f, desc=msg))
        except Cancelled:
            raise gr.Error("Transform stopped.")
        controls = [(im, choice.module) for choice, im in result.preview.controls]
        images = [(str(a.path) if a.path else a.image, f"seed {a.seed}") for a in result.images]
        notes = " ".join(f"{n}." for n in result.preview.notes)
        text = f"{len(images)} result(s) in {result.seconds:.1f} s. {notes}"
        return controls, result.sheet, images, result.images[0].parameters, text

    def stop_run(request: gr.Request):
        stops.setdefault(request.session_hash if request else "", threading.Event()).set()

    def preset_changed(animal_name, breed_name):
        auto_prompt, auto_negative = animal_prompt(animal_name, breed_name or "")
        return auto_prompt, auto_negative

    def animal_changed(animal_name):
        auto_prompt, auto_negative = animal_prompt(animal_name)
        return gr.update(choices=_breed_choices(animal_name), value=""), auto_prompt, auto_negative

    animal.change(animal_changed, animal, [breed, prompt, negative], api_name=False, queue=False)
    breed.change(preset_changed, [animal, breed], [prompt, negative], api_name=False, queue=False)
    preview_btn.click(preview, inputs, [controls_view, status, *enable_boxes], api_name=False)
    photo.upload(preview, inputs, [controls_view, status, *enable_boxes], api_name=False)
    transform_btn.click(transform, inputs, [controls_view, sheet, results, parameters, status], api_name="animal",
                        **GPU_QUEUE)
    stop_btn.click(stop_run, None, None, api_name=False, queue=False)
