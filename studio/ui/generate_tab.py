"""Generate tab: prompt, seed, sampler, size, hires fix, LoRAs with weights -> images with A1111 parameters; PNG drop
restores (and says what); the Clean-up accordion (ui/cleanup.py) inpaints, upscales and fixes faces of a picture."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from studio.fields import declared
from studio.generate import GenerationRequest, LoraChoice, generate
from studio.generate.parameters import parse_parameters, read_png_parameters, request_fields
from studio.generate.preview import PREVIEW_EVERY
from studio.models.families.samplers import DDPM_SAMPLERS
from studio.progress import Cancelled
from studio.ui import cleanup, send_to
from studio.ui.common import (DEFAULT_MODEL, FAMILY_SAMPLER, TabContext, TabRefresh, bind, embedding_names,
                              lora_names, model_choices, model_hints, picked_model, progress_fn,
                              sampling_updates, table_rows, upscaler_choices)
from studio.ui.forms import Form, request_from_values, style_names
from studio.ui.names import check_listed
from studio.ui.serving import served


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    form = Form(ctx, GenerationRequest)  # every widget named by its field: /generate's parameters
    with gr.Row():
        with gr.Column(scale=3):
            prompt = form.widget("prompt", placeholder=_placeholder(studio, DEFAULT_MODEL))
            negative = form.widget("negative_prompt")
            with gr.Row():
                styles = form.widget("styles", scale=3)
                with gr.Column(scale=2, min_width=200):
                    style_name = gr.Textbox(label="Save both prompts as a style named", placeholder="e.g. film photo",
                                            max_lines=1)
                    with gr.Row():
                        style_save = gr.Button("Save style", size="sm", min_width=80)
                        style_delete = gr.Button("Delete style", size="sm", min_width=80)
            style_md = gr.Markdown(elem_id="generate-style-said")
        with gr.Column(scale=1):
            model = form.widget("model")
            with gr.Row():
                generate_btn = gr.Button("Generate", variant="primary")
                stop_btn = gr.Button("Stop")
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                seed = form.widget("seed")
                random_btn = gr.Button("Random", size="sm", min_width=80)
                reuse_btn = gr.Button("Reuse last", size="sm", min_width=80)
            names, guidance = _default_sampling(studio)
            sampler = form.widget("sampler", choices=[FAMILY_SAMPLER, *names])
            steps = form.widget("steps")
            cfg = form.widget("cfg")
            with gr.Row(visible=guidance is not None) as flux_row:
                distilled = form.widget("distilled_cfg", **_distilled_look(guidance))
                sequence = form.widget("max_sequence_length")
            with gr.Row():
                width = form.widget("width")
                height = form.widget("height")
            form.widget("batch_size")
            with gr.Accordion("Hires fix: draw at the size above, upscale, then draw again over it", open=True):
                for pair in (cleanup.HIRES[:2], cleanup.HIRES[2:]):  # two a row: the column is narrow
                    with gr.Row():
                        for name in pair:
                            form.widget(name)
            loras = form.put("loras", gr.Dataframe(
                lora_rows(studio, None), headers=["LoRA", "weight"], datatype=["str", "number"],
                label=f"{form.settings['loras'].label} (a non-zero weight applies one)", interactive=True,
                column_count=(2, "fixed")))
            embeddings = form.widget("embeddings")
            refresh_btn = gr.Button("Refresh model lists", size="sm")
            png_drop = gr.File(label="Drop a PNG to restore its settings", file_types=[".png"], type="filepath")
            restored_md = gr.Markdown(elem_id="generate-restored")
            with gr.Accordion("Image to image: start from a picture", open=False) as img2img_panel:
                img2img_image = gr.Image(type="pil", label="Image to start from (empty: from noise)", height=220,
                                         sources=("upload", "clipboard"))
                img2img_strength = gr.Slider(0.05, 1.0, value=0.75, step=0.05, label="Denoising strength",
                                             info="how much of the picture is drawn again: 0.3 keeps most of it, "
                                                  "1 little")
        with gr.Column(scale=2):
            live = gr.Image(label=LIVE_LABEL, interactive=False, height=160, format="png", elem_id="generate-live")
            # a picture shown whole (not cropped to the gallery's cells), and no upload prompt on an output
            # two columns for a batch (one for one picture), each picture in a row of its own height (CSS in
            # studio/ui/__init__.py): a square cell as wide as the column would be cut by the gallery's height
            gallery = gr.Gallery(label="Images", columns=2, height="auto", format="png", object_fit="contain",
                                 interactive=False, elem_id="generate-gallery")
            parameters = gr.Textbox(label="Parameters", lines=4, buttons=["copy"], elem_id="generate-parameters")
            last_seed = gr.Number(label="Seed used", value=-1, precision=0, interactive=False)
            sending = send_to.layout()
    with gr.Accordion("Past pictures: pick one to restore the settings it was made with", open=False):
        # filled when the page loads (and after each picture made): the page as built names no file
        past = gr.Gallery([], label="Made here, newest first", columns=8, fit_columns=False, height=300,
                          object_fit="contain", interactive=False, format="png")
        with gr.Row():
            past_btn = gr.Button("Restore the selected picture's settings", size="sm")
            past_md = gr.Markdown(elem_id="generate-past-restored")
        # which picture was clicked, and the files the list shows (kept here: a click names only its place)
        past_pick, past_paths = gr.State(None), gr.State([])
    panel = cleanup.layout(ctx, form)  # its inpainting settings are this form's too
    form.rest(skip=cleanup.INPAINT_ONLY)  # a setting declared since, not yet placed: shown, and /generate takes it

    # The API endpoint /generate takes GenerationRequest's field names (all but inpainting's: /inpaint's)
    # (its image to start from and strength by the request's names: img2img's widgets, not the painter's)
    inputs = {**{name: w for name, w in form.inputs.items() if name not in cleanup.INPAINT_ONLY},
              "init_image": img2img_image, "strength": img2img_strength}
    timer, shown = gr.Timer(0.5, active=False), gr.State(0)
    generate_btn.click(lambda: gr.Timer(active=True), None, timer, api_name=False, queue=False)
    generated = bind(ctx, generate_btn.click, run, inputs, {"gallery": gallery, "parameters": parameters,
                                                             "seed": last_seed}, api_name="generate", gpu=True)
    bind(ctx, generated.success, show_past, None, {"past": past, "past_paths": past_paths}, api_name=False,
         queue=False)
    bind(ctx, generated.then, live_done, None, {"live": live, "timer": timer, "shown": shown}, api_name=False,
         queue=False)
    bind(ctx, timer.tick, live_tick, {"shown": shown}, {"live": live, "shown": shown}, api_name=False,
         show_progress="hidden")
    bind(ctx, stop_btn.click, stop, None, None, api_name=False, queue=False)
    bind(ctx, model.change, model_picked, {"model": model, "sampler": sampler},
         {"sampler": sampler, "cfg": cfg, "steps": steps, "flux_row": flux_row, "distilled": distilled,
          "sequence": sequence, "prompt": prompt}, api_name=False, queue=False, checked=False)  # a name still typed
    random_btn.click(lambda: -1, None, seed, api_name=False, queue=False)
    reuse_btn.click(lambda s: s, last_seed, seed, api_name=False, queue=False)
    lists = {"model": model, "loras": loras, "embeddings": embeddings, "hires_upscaler": form.inputs["hires_upscaler"],
             "upscaler": panel["upscaler"], "inpaint_model": panel["inpaint_model"],
             "facefix_reference": panel["facefix_reference"], "past": past, "past_paths": past_paths, "styles": styles}
    bind(ctx, refresh_btn.click, refresh_lists, {"loras": loras}, lists, api_name=False, queue=False, checked=False)
    restored = {"prompt": prompt, "negative_prompt": negative, "seed": seed, "sampler": sampler, "steps": steps,
                "cfg": cfg, "width": width, "height": height, "parameters": parameters, "said": restored_md}
    restoring = bind(ctx, png_drop.upload, restore, {"path": png_drop}, restored, api_name="restore_parameters")
    style_outputs = {"styles": styles, "said": style_md, "name": style_name}
    bind(ctx, style_save.click, save_style, {"name": style_name, "prompt": prompt, "negative_prompt": negative},
         style_outputs, api_name="style_save")
    bind(ctx, style_delete.click, delete_style, {"name": style_name}, style_outputs, api_name="style_delete")
    past.select(_selected_index, None, past_pick, api_name=False, queue=False)
    bind(ctx, past_btn.click, restore_past, {"picked": past_pick, "paths": past_paths},
         {**restored, "said": past_md}, api_name=False)
    cleanup.wire(ctx, panel, form, gallery=gallery, parameters=parameters, last_seed=last_seed, png_drop=png_drop,
                 restored=restoring)
    send_to.wire(ctx, sending, gallery=gallery, selected=panel["selected"],
                 img2img={"image": img2img_image, "panel": img2img_panel}, cleanup=panel)
    return TabRefresh(refresh_lists, lists, inputs={"loras": loras})


def request_from_widgets(values: dict, studio, **fixed) -> GenerationRequest:
    """/generate's (or /inpaint's) inputs, by field name, as a GenerationRequest: the LoRA table's rows as LoRAs,
    then the one conversion flags and API calls go through."""
    values = dict(values)
    if "loras" in values:
        values["loras"] = loras_from_table(studio, values["loras"])
    return request_from_values(GenerationRequest, values, **fixed)


def _default_sampling(studio) -> tuple[list[str], str | None]:
    """The sampler names and FLUX.1 guidance kind the form starts with: the default model's."""
    updates = sampling_updates(studio, DEFAULT_MODEL, None)
    names = [n for n in updates.get("sampler", {}).get("choices", list(DDPM_SAMPLERS)) if n != FAMILY_SAMPLER]
    return names, updates.get("guidance")


def _distilled_look(guidance: str | None) -> dict:
    if guidance == "schnell":
        return dict(interactive=False, info="this FLUX.1 model is schnell-like: it has no guidance input")
    return dict(interactive=True, info=declared(GenerationRequest)["distilled_cfg"].help)


def model_picked(ctx: TabContext, v):
    """A base model was picked: its samplers and CFG default, an example prompt it can draw, FLUX.1's widgets
    shown where they apply, and emptied (their 0: the default) where the model takes no such value."""
    updates = sampling_updates(ctx.studio, v.model, v.sampler)
    if not updates:
        return {}
    guidance = updates.pop("guidance")
    distilled = gr.update(**_distilled_look(guidance), **({} if guidance == "dev" else {"value": 0}))
    ref = picked_model(ctx.studio, v.model)
    sequence = {} if ref.family.prompt_length_option else {"sequence": 0}
    return {**updates, "flux_row": gr.update(visible=guidance is not None), "distilled": distilled, **sequence,
            "prompt": gr.update(placeholder=_placeholder(ctx.studio, v.model))}


def _placeholder(studio, model) -> str:
    example = model_hints(studio, model).get("prompt", "a photo of sks person, close up")
    return f"{example}, <lora:name:0.8>"


def run(ctx: TabContext, v, request: gr.Request, progress):
    should_stop = ctx.stops.begin(request, "generate")
    key = _session(request)
    ctx.previews[key] = (0, None)
    try:
        result = generate(ctx.studio, request_from_widgets(vars(v), ctx.studio), progress=progress_fn(progress),
                          should_stop=should_stop, preview=lambda picture: _keep_preview(ctx, key, picture))
    except Cancelled:
        raise Cancelled("Generation stopped.") from None
    for note in result.notes:  # what the studio did otherwise than asked (a base offloaded to the CPU, tiles...)
        gr.Info(note[0].upper() + note[1:] + ".")
    settings = ctx.studio.settings
    images = [(served(settings, item.path) if item.path else item.image, f"seed {item.seed}") for item in result.images]
    return {"gallery": images, "parameters": result.images[0].parameters, "seed": result.images[0].seed}


LIVE_LABEL = f"Live preview (the latents' approximate colours, every {PREVIEW_EVERY} steps)"
NO_PREVIEW = "none"  # a preview that cannot be made (the model's latents have other channels than its VAE)


def _session(request: gr.Request | None) -> str:
    return request.session_hash if request is not None and request.session_hash else ""


def _keep_preview(ctx: TabContext, key: str, picture) -> None:
    """The newest preview of this session's generation (the batch side by side), for the timer to show; a model
    whose latents cannot be coloured says so in the preview's place."""
    count, _ = ctx.previews.get(key, (0, None))
    ctx.previews[key] = (count + 1, NO_PREVIEW if picture is None else picture)


def live_tick(ctx: TabContext, v, request: gr.Request):
    """While generating: the newest preview, when there is one not shown yet."""
    count, picture = ctx.previews.get(_session(request), (0, None))
    if count == (v.shown or 0) or picture is None:
        return {}
    if picture is NO_PREVIEW:
        return {"live": gr.update(value=None, label="No live preview: this model's latents are not its VAE's"),
                "shown": count}
    return {"live": picture, "shown": count}


def live_done(ctx: TabContext, v, request: gr.Request):
    """The generation ended: the timer rests, and the preview goes (the pictures themselves are shown)."""
    ctx.previews.pop(_session(request), None)
    return {"live": gr.update(value=None, label=LIVE_LABEL), "timer": gr.Timer(active=False), "shown": 0}


def stop(ctx: TabContext, v, request: gr.Request):
    ctx.stops.stop(request, "generate")


def loras_from_table(studio, table) -> list[LoraChoice]:
    """Rows of (LoRA name, weight) -> the LoRAs to apply: those with a non-zero weight, each a LoRA the studio lists."""
    chosen = []
    for row in table_rows(table):
        if len(row) < 2 or not str(row[0]).strip() or row[1] in (None, ""):
            continue
        try:
            weight = float(row[1])
        except (TypeError, ValueError) as e:
            raise ValueError(f"LoRA weight for {row[0]!r} must be a number but is {row[1]!r}") from e
        if weight != 0:
            check_listed(studio, "LoRA", str(row[0]).strip(), "loras")
            chosen.append(LoraChoice(str(row[0]).strip(), weight))
    return chosen


def lora_rows(studio, current) -> list[list]:
    """One row per LoRA on disk; new files appear with weight 0, weights the user already set are kept."""
    weights = {str(r[0]): r[1] for r in table_rows(current) if len(r) >= 2}
    return [[name, weights.get(name, 0.0)] for name in lora_names(studio)]


def refresh_lists(ctx: TabContext, v):
    studio = ctx.studio
    upscalers = upscaler_choices(studio)
    return {"model": gr.update(choices=model_choices(studio)), "loras": lora_rows(studio, v.loras),
            "embeddings": gr.update(choices=embedding_names(studio)), "hires_upscaler": gr.update(choices=upscalers),
            "upscaler": gr.update(choices=upscalers),
            "inpaint_model": gr.update(choices=cleanup.inpaint_model_choices(studio)),
            "facefix_reference": gr.update(choices=cleanup.reference_choices(studio)), **past_views(studio),
            "styles": gr.update(choices=style_names(studio))}


def save_style(ctx: TabContext, v):
    """The prompt and negative prompt as they are now, kept as a style of this name (replacing one of that name)."""
    from studio.generate.styles import Style, save_style as save

    saved = save(ctx.studio.settings, Style((v.name or "").strip(), v.prompt or "", v.negative_prompt or ""))
    name = (v.name or "").strip()
    return {"styles": gr.update(choices=[s.name for s in saved]), "name": "",
            "said": f"Saved style **{name}** ({len(saved)} styles in workspace/styles.csv); pick it in Styles to add "
                    f"it to a prompt."}


def delete_style(ctx: TabContext, v):
    from studio.generate.styles import delete_style as delete

    kept = delete(ctx.studio.settings, (v.name or "").strip())
    return {"styles": gr.update(choices=[s.name for s in kept]), "said": f"Deleted style **{v.name.strip()}**."}


RESTORED = ("prompt", "negative_prompt", "seed", "sampler", "steps", "cfg", "width", "height")


def past_views(studio) -> dict:
    """The outputs browser: its pictures (served copies, captioned with their file names) and their files."""
    from studio.generate.parameters import past_outputs

    paths = past_outputs(studio.settings.outputs_dir)
    return {"past": [(served(studio.settings, p), p.name) for p in paths], "past_paths": [str(p) for p in paths]}


def show_past(ctx: TabContext, v):
    return past_views(ctx.studio)


def _selected_index(evt: gr.SelectData):
    return evt.index


def restore_past(ctx: TabContext, v):
    """The settings of the past picture clicked, looked up among the files the list shows."""
    paths = v.paths or []
    if v.picked is None or not 0 <= int(v.picked) < len(paths):
        raise ValueError("no past picture picked: click one in the list first")
    return restore(ctx, SimpleNamespace(path=paths[int(v.picked)]))


def restore(ctx: TabContext, v):
    """A dropped PNG's settings in the form, and a line saying which were restored (or that it carries none)."""
    if not v.path:
        return {}
    text = read_png_parameters(v.path)  # (a picture without them is a ValueError: the page says so)
    fields = request_fields(parse_parameters(text))
    found = [k for k in RESTORED if k in fields]
    return {**{k: fields[k] for k in ("sampler", "steps", "cfg", "width", "height") if k in fields},
            "prompt": fields.get("prompt", ""), "negative_prompt": fields.get("negative_prompt", ""),
            "seed": fields.get("seed", -1), "parameters": text, "said": restored_line(fields, found)}


def restored_line(fields: dict, found: list[str]) -> str:
    """What a restore set, in one line: the prompt's start and each setting with its value."""
    shown = [f"{k.replace('_', ' ')} {fields[k]}" for k in found if k not in ("prompt", "negative_prompt")]
    prompt = fields.get("prompt", "")
    # the prompt as a code span: its <lora:...> tags shown as written, not read as HTML
    start = f"prompt `{prompt[:60].replace('`', '')}{'...' if len(prompt) > 60 else ''}`" if prompt else "no prompt"
    return f"Restored {start}, {', '.join(shown)}." if shown else f"Restored {start}."
