"""Models tab: choose the studio's base model, see what is on disk and what the model cache holds in memory."""

from __future__ import annotations

import gradio as gr

from studio.ui.common import GPU_QUEUE, shows_errors

_MB = 1024**2


def _disk_rows(studio) -> list[list[str]]:
    listing = studio.store.list_models()
    rows = [["base", m] for m in listing.base] + [["controlnet", m] for m in listing.controlnet]
    rows += [["lora", str(p)] for p in listing.lora] + [["embedding", str(p)] for p in listing.embeddings]
    return rows


def _cache_rows(studio) -> list[list]:
    return [[h.kind, h.model_id, h.device, h.dtype, round(h.nbytes / _MB, 1), "yes" if h.in_use else "",
             ", ".join(h.loras), ", ".join(h.pipelines)] for h in studio.cache.holdings()]


def _cache_summary(studio) -> str:
    held, budget = studio.cache.held_bytes / _MB, studio.settings.resolve_cache_budget() / _MB
    return f"The cache holds **{held:,.1f} MB** of weights (budget {budget:,.0f} MB; least recently used goes first)."


def build(studio) -> None:
    with gr.Row():
        base = gr.Dropdown(studio.store.list_models().base, value=studio.settings.model, allow_custom_value=True,
                           label="Studio base model", info="used by every tab when no other is chosen: builtin, "
                           "hub id (owner/name), diffusers folder or .safetensors checkpoint")
        use_btn = gr.Button("Use as default", variant="primary")
        load_btn = gr.Button("Load into memory")
    status = gr.Markdown()
    gr.Markdown("### On disk")
    disk = gr.Dataframe(_disk_rows(studio), headers=["kind", "model"], interactive=False)
    gr.Markdown("### In memory")
    summary = gr.Markdown(_cache_summary(studio))
    cache = gr.Dataframe(_cache_rows(studio), headers=["kind", "model", "device", "dtype", "MB", "in use", "LoRAs",
                                                       "pipelines"], interactive=False)
    with gr.Row():
        refresh_btn = gr.Button("Refresh")
        release_btn = gr.Button("Free memory")

    def views():
        return _disk_rows(studio), _cache_summary(studio), _cache_rows(studio)

    @shows_errors
    def use(model_id):
        studio.set_default_model(model_id)
        return f"Base model is now `{model_id}`.", *views()

    @shows_errors
    def load(model_id, progress=gr.Progress()):
        progress(0.1, desc=f"loading {model_id}")
        with studio.cache.pipeline(model_id):
            pass
        return f"`{model_id}` is loaded.", *views()

    def release():
        still = studio.cache.release()
        return f"Freed the cache ({still} model(s) still in use).", *views()

    outputs = [status, disk, summary, cache]
    use_btn.click(use, base, outputs, api_name="models_use")
    load_btn.click(load, base, outputs, api_name="models_load", **GPU_QUEUE)
    refresh_btn.click(views, None, [disk, summary, cache], api_name=False, queue=False)
    release_btn.click(release, None, outputs, api_name="models_release")
