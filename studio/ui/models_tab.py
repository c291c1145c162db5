"""Models tab: choose the studio's base model, see what is on disk and what the model cache holds in memory."""

from __future__ import annotations

import gradio as gr

from studio.ui.common import DEFAULT_MODEL, TabContext, TabRefresh, bind, chosen_model, model_choices, progress_fn
from studio.ui.names import listed

_MB = 1024**2


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    with gr.Row():
        base = listed(ctx, gr.Dropdown(model_choices(studio), value=DEFAULT_MODEL, label="Studio base model",
                                       info="used by every tab when no other is chosen: builtin, a model in "
                                            "models/base/ (diffusers folder or .safetensors checkpoint), or a hub id "
                                            "(owner/name)"), "base model", DEFAULT_MODEL)
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

    shown = {"disk": disk, "summary": summary, "cache": cache}
    bind(ctx, use_btn.click, use, {"model_id": base}, {"status": status, "base": base, **shown}, api_name="models_use")
    bind(ctx, load_btn.click, load, {"model_id": base}, {"status": status, **shown}, api_name="models_load", gpu=True)
    bind(ctx, refresh_btn.click, views, None, shown, api_name=False, queue=False)
    bind(ctx, release_btn.click, release, None, {"status": status, **shown}, api_name="models_release")
    return TabRefresh(views, shown)


def views(ctx: TabContext, v) -> dict:
    studio = ctx.studio
    return {"disk": _disk_rows(studio), "summary": _cache_summary(studio), "cache": _cache_rows(studio)}


def use(ctx: TabContext, v):
    model = chosen_model(v.model_id) or ctx.studio.store.default_model
    ctx.studio.set_default_model(model)
    return {"status": f"Base model is now `{model}`.", "base": gr.update(choices=model_choices(ctx.studio)),
            **views(ctx, v)}


def load(ctx: TabContext, v, progress):
    model = chosen_model(v.model_id) or ctx.studio.store.default_model
    progress_fn(progress)(0.1, f"loading {model}")
    with ctx.studio.cache.pipeline(model):
        pass
    return {"status": f"`{model}` is loaded.", **views(ctx, v)}


def release(ctx: TabContext, v):
    still = ctx.studio.cache.release()
    return {"status": f"Freed the cache ({still} model(s) still in use).", **views(ctx, v)}


def _disk_rows(studio) -> list[list[str]]:
    listing = studio.store.list_models()
    root = studio.settings.models_dir
    rows = [["base", m] for m in listing.base] + [["controlnet", m] for m in listing.controlnet]
    for kind, files in (("lora", listing.lora), ("embedding", listing.embeddings), ("upscaler", listing.upscale)):
        rows += [[kind, p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name] for p in files]
    return rows


def _cache_rows(studio) -> list[list]:
    """What the cache holds, as this user may know it: another user's own models and LoRAs are not named."""
    user, mine = studio.settings.user, {p.resolve() for p in studio.store.list_models().lora}
    return [[h.kind, h.model_id, h.device, h.dtype, round(h.nbytes / _MB, 1), "yes" if h.in_use else "",
             ", ".join(p.name for p in h.lora_files if p in mine), ", ".join(h.pipelines)]
            for h in studio.cache.holdings() if h.owner in ("", user)]


def _cache_summary(studio) -> str:
    held, budget = studio.cache.held_bytes / _MB, studio.settings.resolve_cache_budget() / _MB
    return f"The cache holds **{held:,.1f} MB** of weights (budget {budget:,.0f} MB; least recently used goes first)."
