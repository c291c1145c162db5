"""Generate tab: prompt, seed, sampler, size, LoRAs with weights -> images with A1111 parameters; PNG drop restores."""

from __future__ import annotations

import threading

import gradio as gr

from studio.generate import GenerationRequest, LoraChoice, generate
from studio.generate.parameters import parse_parameters, read_png_parameters, request_fields
from studio.generate.samplers import DEFAULT_SAMPLER, SAMPLERS
from studio.progress import Cancelled
from studio.ui.common import GPU_QUEUE, TabRefresh, shows_errors

DEFAULT_CHOICE = "(studio default)"


class _StopFlags:
    """Per-browser-session cancel flags: the Stop button of one user never stops another's generation."""

    def __init__(self):
        self._flags: dict[str, threading.Event] = {}

    def event(self, session: str) -> threading.Event:
        return self._flags.setdefault(session, threading.Event())


def _model_choices(studio) -> list[str]:
    return [DEFAULT_CHOICE, *studio.store.list_models().base]


def _lora_rows(studio) -> list[list]:
    return [[p.stem, 0.0] for p in studio.store.list_models().lora]


def _embedding_choices(studio) -> list[str]:
    return [p.stem for p in studio.store.list_models().embeddings]


def loras_from_table(table) -> list[LoraChoice]:
    """Rows of (LoRA name, weight) -> the LoRAs to apply: those with a non-zero weight."""
    rows = table.values.tolist() if hasattr(table, "values") else (table or [])
    chosen = []
    for row in rows:
        if len(row) < 2 or not str(row[0]).strip() or row[1] in (None, ""):
            continue
        try:
            weight = float(row[1])
        except (TypeError, ValueError) as e:
            raise ValueError(f"LoRA weight for {row[0]!r} must be a number but is {row[1]!r}") from e
        if weight != 0:
            chosen.append(LoraChoice(str(row[0]).strip(), weight))
    return chosen


def build(studio) -> None:
    stops = _StopFlags()
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Prompt", lines=3, placeholder="a photo of sks person, close up, <lora:name:0.8>")
            negative = gr.Textbox("", label="Negative prompt", lines=2)
        with gr.Column(scale=1):
            model = gr.Dropdown(_model_choices(studio), value=DEFAULT_CHOICE, label="Base model",
                                allow_custom_value=True, info="builtin, a hub id, or a path to a folder or .safetensors")
            with gr.Row():
                generate_btn = gr.Button("Generate", variant="primary")
                stop_btn = gr.Button("Stop")
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                seed = gr.Number(label="Seed", value=-1, precision=0, info="-1: random")
                random_btn = gr.Button("Random", size="sm", min_width=80)
                reuse_btn = gr.Button("Reuse last", size="sm", min_width=80)
            sampler = gr.Dropdown(list(SAMPLERS), value=DEFAULT_SAMPLER, label="Sampler")
            steps = gr.Slider(1, 150, value=20, step=1, label="Steps")
            cfg = gr.Slider(0, 30, value=7, step=0.5, label="CFG scale")
            with gr.Row():
                width = gr.Number(label="Width", value=0, precision=0, info="0: the model's native size")
                height = gr.Number(label="Height", value=0, precision=0, info="multiples of 8")
            batch = gr.Slider(1, 8, value=1, step=1, label="Batch size")
            loras = gr.Dataframe(_lora_rows(studio), headers=["LoRA", "weight"], datatype=["str", "number"],
                                 label="LoRAs (a non-zero weight applies one)", interactive=True,
                                 column_count=(2, "fixed"))
            embeddings = gr.Dropdown(_embedding_choices(studio), multiselect=True, label="Embeddings",
                                     info="textual inversions; use their names in the prompt")
            refresh_btn = gr.Button("Refresh model lists", size="sm")
            png_drop = gr.File(label="Drop a PNG to restore its settings", file_types=[".png"], type="filepath")
        with gr.Column(scale=2):
            gallery = gr.Gallery(label="Images", columns=2, height=520, format="png")
            parameters = gr.Textbox(label="Parameters", lines=4, buttons=["copy"], elem_id="generate-parameters")
            last_seed = gr.Number(label="Seed used", value=-1, precision=0, interactive=False)

    @shows_errors
    def run(prompt_text, negative_prompt, model_id, seed_value, sampler_name, steps_value, cfg_scale, width_px,
            height_px, batch_size, lora_weights, embedding_names, request: gr.Request, progress=gr.Progress()):
        stop = stops.event(request.session_hash if request else "")
        stop.clear()
        req = GenerationRequest(
            prompt=prompt_text or "", negative_prompt=negative_prompt or "",
            model="" if model_id in (None, "", DEFAULT_CHOICE) else model_id,
            seed=int(seed_value if seed_value is not None else -1), steps=int(steps_value), cfg=float(cfg_scale),
            width=int(width_px or 0) or None, height=int(height_px or 0) or None, batch_size=int(batch_size),
            sampler=sampler_name, loras=loras_from_table(lora_weights), embeddings=list(embedding_names or []),
        )
        try:
            result = generate(studio, req, progress=lambda f, msg: progress(f, desc=msg), should_stop=stop.is_set)
        except Cancelled:
            raise gr.Error("Generation stopped.")
        images = [(str(item.path) if item.path else item.image, f"seed {item.seed}") for item in result.images]
        return images, result.images[0].parameters, result.images[0].seed

    generate_btn.click(
        run,
        [prompt, negative, model, seed, sampler, steps, cfg, width, height, batch, loras, embeddings],
        [gallery, parameters, last_seed],
        api_name="generate",
        **GPU_QUEUE,
    )
    stop_btn.click(_stopper(stops), None, None, api_name=False, queue=False)
    random_btn.click(lambda: -1, None, seed, api_name=False, queue=False)
    reuse_btn.click(lambda s: s, last_seed, seed, api_name=False, queue=False)

    def refresh(current_loras):
        # New files appear with weight 0; weights the user already set are kept.
        rows = current_loras.values.tolist() if hasattr(current_loras, "values") else (current_loras or [])
        weights = {str(r[0]): r[1] for r in rows if len(r) >= 2}
        table = [[name, weights.get(name, weight)] for name, weight in _lora_rows(studio)]
        return (gr.update(choices=_model_choices(studio)), table, gr.update(choices=_embedding_choices(studio)))

    refresh_btn.click(refresh, loras, [model, loras, embeddings], api_name=False, queue=False)

    @shows_errors
    def restore(path):
        if not path:
            return [gr.update()] * 9
        fields = request_fields(parse_parameters(read_png_parameters(path)))
        return (fields.get("prompt", ""), fields.get("negative_prompt", ""), fields.get("seed", -1),
                fields.get("sampler", gr.update()), fields.get("steps", gr.update()), fields.get("cfg", gr.update()),
                fields.get("width", gr.update()), fields.get("height", gr.update()),
                read_png_parameters(path))

    png_drop.upload(restore, png_drop, [prompt, negative, seed, sampler, steps, cfg, width, height, parameters],
                    api_name="restore_parameters")

    return TabRefresh(refresh, [model, loras, embeddings], inputs=[loras])


def _stopper(stops: _StopFlags):
    def stop(request: gr.Request):
        stops.event(request.session_hash if request else "").set()

    return stop
