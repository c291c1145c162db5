"""Generate tab: prompt, seed, sampler, size, LoRAs with weights -> images with A1111 parameters; PNG drop restores;
the Clean-up accordion (ui/cleanup.py) inpaints, upscales and fixes faces of a picture, and holds the hires fix."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from studio.generate import GenerationRequest, LoraChoice, generate
from studio.generate.parameters import parse_parameters, read_png_parameters, request_fields
from studio.generate.run import fit_to_model
from studio.models.families.flux1 import DISTILLED_CFG
from studio.models.families.samplers import DDPM_SAMPLERS
from studio.progress import Cancelled
from studio.ui import cleanup
from studio.ui.common import (DEFAULT_MODEL, TabContext, TabRefresh, bind, chosen_model, embedding_names, fit_gallery,
                              lora_names, model_choices, model_hints, picked_model, progress_fn, sampling_updates,
                              table_rows, upscaler_choices)
from studio.ui.names import check_listed, listed
from studio.ui.serving import served


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Prompt", lines=3, placeholder=_placeholder(studio, DEFAULT_MODEL))
            negative = gr.Textbox("", label="Negative prompt", lines=2)
        with gr.Column(scale=1):
            model = listed(ctx, gr.Dropdown(model_choices(studio), value=DEFAULT_MODEL, label="Base model",
                                            info="builtin, a model in models/base/, or a hub id (owner/name)"),
                           "base model", DEFAULT_MODEL)
            with gr.Row():
                generate_btn = gr.Button("Generate", variant="primary")
                stop_btn = gr.Button("Stop")
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                seed = gr.Number(label="Seed", value=-1, precision=0, info="-1: random")
                random_btn = gr.Button("Random", size="sm", min_width=80)
                reuse_btn = gr.Button("Reuse last", size="sm", min_width=80)
            names, first, first_cfg, guidance = _default_sampling(studio)
            sampler = gr.Dropdown(names, value=first, label="Sampler")
            steps = gr.Slider(1, 150, value=20, step=1, label="Steps")
            cfg = gr.Slider(0, 30, value=first_cfg, step=0.5, label="CFG scale",
                            info="FLUX.1: 1 is off; above 1, real CFG with the negative prompt at twice the time")
            with gr.Row(visible=guidance is not None) as flux_row:
                distilled = gr.Slider(0, 10, value=DISTILLED_CFG, step=0.1, label="Distilled CFG Scale",
                                      **_distilled_look(guidance))
                sequence = gr.Number(0, precision=0, label="T5 prompt tokens",
                                     info="FLUX.1: 0 is 512 for dev, 256 for schnell")
            with gr.Row():
                width = gr.Number(label="Width", value=0, precision=0, info="0: the model's native size")
                height = gr.Number(label="Height", value=0, precision=0, info="multiples of 8")
            batch = gr.Slider(1, 8, value=1, step=1, label="Batch size")
            loras = gr.Dataframe(lora_rows(studio, None), headers=["LoRA", "weight"], datatype=["str", "number"],
                                 label="LoRAs (a non-zero weight applies one)", interactive=True,
                                 column_count=(2, "fixed"))
            embeddings = listed(ctx, gr.Dropdown(embedding_names(studio), multiselect=True, label="Embeddings",
                                                 info="textual inversions; use their names in the prompt"),
                                "embedding")
            refresh_btn = gr.Button("Refresh model lists", size="sm")
            png_drop = gr.File(label="Drop a PNG to restore its settings", file_types=[".png"], type="filepath")
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Images", columns=1, height=460, format="png")
            parameters = gr.Textbox(label="Parameters", lines=4, buttons=["copy"], elem_id="generate-parameters")
            last_seed = gr.Number(label="Seed used", value=-1, precision=0, interactive=False)
    panel = cleanup.layout(ctx)

    # The API endpoint /generate takes these names, in this order (scripts call it positionally: new ones go last).
    inputs = {"prompt_text": prompt, "negative_prompt": negative, "model_id": model, "seed_value": seed,
              "sampler_name": sampler, "steps_value": steps, "cfg_scale": cfg, "width_px": width, "height_px": height,
              "batch_size": batch, "lora_weights": loras, "embedding_names": embeddings,
              **{name: panel[name] for name in cleanup.HIRES_INPUTS},
              "distilled_cfg_scale": distilled, "t5_tokens": sequence}
    bind(ctx, generate_btn.click, run, inputs, {"gallery": gallery, "parameters": parameters, "seed": last_seed},
         api_name="generate", gpu=True).success(fit_gallery, gallery, gallery, api_name=False, queue=False)
    bind(ctx, stop_btn.click, stop, None, None, api_name=False, queue=False)
    bind(ctx, model.change, model_picked, {"model": model, "sampler": sampler},
         {"sampler": sampler, "cfg": cfg, "steps": steps, "flux_row": flux_row, "distilled": distilled,
          "prompt": prompt},
         api_name=False, queue=False, checked=False)  # a name still being typed
    random_btn.click(lambda: -1, None, seed, api_name=False, queue=False)
    reuse_btn.click(lambda s: s, last_seed, seed, api_name=False, queue=False)
    lists = {"model": model, "loras": loras, "embeddings": embeddings, "hires_upscaler": panel["hires_upscaler"],
             "upscaler": panel["upscaler"], "inpaint_model": panel["inpaint_model"],
             "facefix_reference": panel["facefix_reference"]}
    bind(ctx, refresh_btn.click, refresh_lists, {"loras": loras}, lists, api_name=False, queue=False, checked=False)
    restored = {"prompt": prompt, "negative_prompt": negative, "seed": seed, "sampler": sampler, "steps": steps,
                "cfg": cfg, "width": width, "height": height, "parameters": parameters}
    restoring = bind(ctx, png_drop.upload, restore, {"path": png_drop}, restored, api_name="restore_parameters")
    cleanup.wire(ctx, panel, inputs, gallery=gallery, parameters=parameters, last_seed=last_seed, png_drop=png_drop,
                 restored=restoring)
    return TabRefresh(refresh_lists, lists, inputs={"loras": loras})


def request_from_widgets(v, studio) -> GenerationRequest:
    """The /generate inputs (by name) as a GenerationRequest for the picked model (see fit_to_model)."""
    return fit_to_model(studio, GenerationRequest(
        prompt=v.prompt_text or "", negative_prompt=v.negative_prompt or "", model=chosen_model(v.model_id),
        seed=int(v.seed_value if v.seed_value is not None else -1), steps=int(v.steps_value), cfg=float(v.cfg_scale),
        width=int(v.width_px or 0) or None, height=int(v.height_px or 0) or None, batch_size=int(v.batch_size),
        sampler=v.sampler_name, loras=loras_from_table(studio, v.lora_weights),
        embeddings=list(v.embedding_names or []),
        hires_scale=float(v.hires_scale or 1), hires_steps=int(v.hires_steps or 0), hires_upscaler=v.hires_upscaler,
        hires_strength=float(v.hires_strength),
        distilled_cfg=None if v.distilled_cfg_scale is None else float(v.distilled_cfg_scale),
        max_sequence_length=int(v.t5_tokens or 0) or None,
    ))


def _default_sampling(studio) -> tuple[list[str], str, float, str | None]:
    """The sampler names, sampler, CFG scale and FLUX.1 guidance kind the form starts with: the default model's."""
    updates = sampling_updates(studio, DEFAULT_MODEL, None)
    names = updates.get("sampler", {}).get("choices", list(DDPM_SAMPLERS))
    first = updates.get("sampler", {}).get("value", names[0])
    return names, first, updates.get("cfg", 7.0), updates.get("guidance")


def _distilled_look(guidance: str | None) -> dict:
    if guidance == "schnell":
        return dict(interactive=False, info="this FLUX.1 model is schnell-like: it has no guidance input")
    return dict(interactive=True, info="FLUX.1-dev's guidance input, as Forge's (3.5 is its default)")


def model_picked(ctx: TabContext, v):
    """A base model was picked: its samplers and CFG default, an example prompt it can draw, FLUX.1's widgets
    shown where they apply."""
    updates = sampling_updates(ctx.studio, v.model, v.sampler)
    if not updates:
        return {}
    guidance = updates.pop("guidance")
    return {**updates, "flux_row": gr.update(visible=guidance is not None),
            "distilled": gr.update(**_distilled_look(guidance)),
            "prompt": gr.update(placeholder=_placeholder(ctx.studio, v.model))}


def _placeholder(studio, model) -> str:
    example = model_hints(studio, model).get("prompt", "a photo of sks person, close up")
    return f"{example}, <lora:name:0.8>"


def run(ctx: TabContext, v, request: gr.Request, progress):
    should_stop = ctx.stops.begin(request, "generate")
    try:
        result = generate(ctx.studio, request_from_widgets(v, ctx.studio), progress=progress_fn(progress), should_stop=should_stop)
    except Cancelled:
        raise Cancelled("Generation stopped.") from None
    settings = ctx.studio.settings
    images = [(served(settings, item.path) if item.path else item.image, f"seed {item.seed}") for item in result.images]
    return {"gallery": images, "parameters": result.images[0].parameters, "seed": result.images[0].seed}


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
            check_listed(studio, "LoRA", str(row[0]).strip(), "lora_weights")
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
            "facefix_reference": gr.update(choices=cleanup.reference_choices(studio))}


def restore(ctx: TabContext, v):
    if not v.path:
        return {}
    text = read_png_parameters(v.path)
    fields = request_fields(parse_parameters(text))
    return {**{k: fields[k] for k in ("sampler", "steps", "cfg", "width", "height") if k in fields},
            "prompt": fields.get("prompt", ""), "negative_prompt": fields.get("negative_prompt", ""),
            "seed": fields.get("seed", -1), "parameters": text}
