"""Train tab: pick a dataset, a base model and a method, train in a child process, watch loss and validation grids,
cancel or resume, and export the epoch whose likeness scores best."""

from __future__ import annotations

from dataclasses import fields, replace

import gradio as gr

from studio import train
from studio.train.config import LORA_LAYERS, METHODS, OPTIMIZERS, PRECISIONS, PRESETS, SCHEDULERS, RunConfig
from studio.ui.common import GPU_QUEUE, shows_errors

DEFAULT_CHOICE = "(studio default)"
NO_RUN = "(no run yet)"
_DEFAULTS = RunConfig(name="x", dataset="x")
# RunConfig fields the knob widgets set, in the order of the event inputs after the first row.
_KNOBS = ("resolution", "buckets", "repeats", "epochs", "max_steps", "batch_size", "grad_accum", "lr",
          "text_encoder_lr", "lr_scheduler", "warmup_steps", "lr_cycles", "rank", "alpha", "dropout", "min_snr_gamma",
          "noise_offset", "flip", "shuffle_captions", "keep_tokens", "mixed_precision", "gradient_checkpointing",
          "optimizer", "seed", "cache", "prior_preservation", "class_prompt", "class_images", "prior_loss_weight",
          "init_word", "vectors", "validation_every", "validation_steps", "lora_layers", "validation_cfg")
_INTS = {f.name for f in fields(RunConfig) if f.type in ("int", int)}
_FLOATS = {f.name for f in fields(RunConfig) if f.type in ("float", float)}


def _run_names(studio) -> list[str]:
    return [r.name for r in train.list_runs(studio)]


def _model_choices(studio) -> list[str]:
    return [DEFAULT_CHOICE, *studio.store.list_models().base]


def config_from_widgets(name, dataset, model, method, trigger, prompts, *knobs) -> RunConfig:
    """Widget values -> a checked RunConfig (numbers from gradio may arrive as floats or None)."""
    values = {}
    for key, value in zip(_KNOBS, knobs):
        if value is None:
            continue
        values[key] = int(value) if key in _INTS else float(value) if key in _FLOATS else value
    return RunConfig(name=(name or "").strip(), dataset=dataset or "", method=method,
                     model="" if model in (None, "", DEFAULT_CHOICE) else model, trigger=(trigger or "").strip(),
                     validation_prompts=[p.strip() for p in (prompts or "").splitlines() if p.strip()],
                     **values).check()


def _status_views(status):
    """RunStatus -> (status markdown, loss plot data, score plot data, grids, epoch table, epoch choices)."""
    import pandas as pd

    lines = [f"**{status.line()}**"]
    if status.messages:
        lines.append("\n".join(f"- {m}" for m in status.messages[-4:]))
    if status.checkpoint_step and status.state in ("cancelled", "stopped", "failed"):
        lines.append(f"Resume continues from the checkpoint at step {status.checkpoint_step}.")
    if status.best_epoch is not None:
        lines.append(f"Best epoch by likeness (lowest mean sim-score): **{status.best_epoch}**")
    if status.files:
        lines.append("Files: " + ", ".join(f"`{f}`" for f in status.files))
    every = max(1, len(status.losses) // 2000)  # a long run's curve is thinned to what a plot can show
    loss = pd.DataFrame(status.losses[::every], columns=["step", "loss"])
    scored = [(v["epoch"], v["mean_score"]) for v in status.validations if v.get("mean_score") is not None]
    scores = pd.DataFrame(scored, columns=["epoch", "mean sim-score"])
    grids = []
    for v in status.validations:
        if v.get("grid"):
            score = f", mean sim-score {v['mean_score']:.3f}" if v.get("mean_score") is not None else ""
            star = " (best)" if v["epoch"] == status.best_epoch else ""
            grids.append((v["grid"], f"epoch {v['epoch']}{score}{star}"))
    def fmt(value):
        return "" if value is None else round(value, 4)

    table = [[v["epoch"], fmt(v.get("loss")), fmt(v.get("mean_score")),
              " / ".join("no face" if s is None else f"{s:.3f}" for s in v.get("scores") or []),
              "best" if v["epoch"] == status.best_epoch else ""] for v in status.validations]
    return "\n\n".join(lines), loss, scores, grids, table, [str(v["epoch"]) for v in status.validations]


def build(studio) -> None:
    runs = _run_names(studio)
    # 1. What to train
    with gr.Row():
        dataset = gr.Dropdown(train.list_datasets(studio.settings), label="Dataset", allow_custom_value=True,
                              info="a dataset from the Dataset tab, or a folder of images with .txt captions")
        model = gr.Dropdown(_model_choices(studio), value=DEFAULT_CHOICE, label="Base model", allow_custom_value=True)
        method = gr.Radio(list(METHODS), value="lora", label="Method")
        preset = gr.Dropdown(list(PRESETS), value="default", label="Preset")
    with gr.Row():
        name = gr.Textbox(label="Run name", placeholder="e.g. tim-lora-v1", info="also the name of the exported files")
        trigger = gr.Textbox(label="Trigger word", placeholder="default: the dataset's trigger or the run name",
                             info="textual inversion: the new token")
        refresh_btn = gr.Button("Refresh lists", size="sm")
    prompts = gr.Textbox("\n".join(_DEFAULTS.validation_prompts), lines=3, label="Validation prompts (one a line)",
                         info="{trigger} becomes the trigger word; prompt i always uses seed 1234 + i")

    # 2. Knobs, with the RunConfig defaults
    d = _DEFAULTS
    with gr.Accordion("Settings", open=False):
        with gr.Row():
            resolution = gr.Number(0, precision=0, label="Resolution", info="0: the family's native size")
            buckets = gr.Checkbox(d.buckets, label="Aspect-ratio buckets")
            repeats = gr.Number(d.repeats, precision=0, label="Repeats")
            epochs = gr.Number(d.epochs, precision=0, label="Epochs")
            max_steps = gr.Number(d.max_steps, precision=0, label="Max steps", info="> 0 overrides epochs")
            batch_size = gr.Number(d.batch_size, precision=0, label="Batch size")
            grad_accum = gr.Number(d.grad_accum, precision=0, label="Gradient accumulation")
        with gr.Row():
            lr = gr.Number(d.lr, label="Learning rate", info="0: the method's default")
            text_encoder_lr = gr.Number(d.text_encoder_lr, label="Text encoder lr", info="0: frozen")
            lr_scheduler = gr.Dropdown(list(SCHEDULERS), value=d.lr_scheduler, label="LR scheduler")
            warmup_steps = gr.Number(d.warmup_steps, precision=0, label="Warmup steps")
            lr_cycles = gr.Number(d.lr_cycles, precision=0, label="Restarts (cycles)")
        with gr.Row():
            rank = gr.Number(d.rank, precision=0, label="LoRA rank")
            alpha = gr.Number(d.alpha, label="LoRA alpha")
            dropout = gr.Number(d.dropout, label="LoRA dropout")
            lora_layers = gr.Dropdown(list(LORA_LAYERS), value=d.lora_layers, label="LoRA layers",
                                      info="all adds the ResNet convs (LoCon): for shapes the base cannot draw")
            min_snr_gamma = gr.Number(d.min_snr_gamma, label="Min-SNR gamma", info="0 off, 5 in seed 002")
            noise_offset = gr.Number(d.noise_offset, label="Noise offset")
        with gr.Row():
            flip = gr.Checkbox(d.flip, label="Flip augmentation")
            shuffle_captions = gr.Checkbox(d.shuffle_captions, label="Shuffle caption tags")
            keep_tokens = gr.Number(d.keep_tokens, precision=0, label="Keep tokens")
            mixed_precision = gr.Dropdown(list(PRECISIONS), value=d.mixed_precision, label="Mixed precision")
            gradient_checkpointing = gr.Checkbox(d.gradient_checkpointing, label="Gradient checkpointing")
            optimizer = gr.Dropdown(list(OPTIMIZERS), value=d.optimizer, label="Optimizer")
            seed = gr.Number(d.seed, precision=0, label="Seed")
            cache = gr.Checkbox(d.cache, label="Cache latents and text")
        with gr.Row():
            prior_preservation = gr.Checkbox(d.prior_preservation, label="DreamBooth: prior preservation")
            class_prompt = gr.Textbox(d.class_prompt, label="Class prompt")
            class_images = gr.Number(d.class_images, precision=0, label="Class images")
            prior_loss_weight = gr.Number(d.prior_loss_weight, label="Prior loss weight")
            init_word = gr.Textbox(d.init_word, label="TI: init word")
            vectors = gr.Number(d.vectors, precision=0, label="TI: vectors per token")
            validation_every = gr.Number(d.validation_every, precision=0, label="Validate every N epochs")
            validation_steps = gr.Number(d.validation_steps, precision=0, label="Validation sampling steps")
            validation_cfg = gr.Number(d.validation_cfg, label="Validation CFG scale")
    knobs = [resolution, buckets, repeats, epochs, max_steps, batch_size, grad_accum, lr, text_encoder_lr,
             lr_scheduler, warmup_steps, lr_cycles, rank, alpha, dropout, min_snr_gamma, noise_offset, flip,
             shuffle_captions, keep_tokens, mixed_precision, gradient_checkpointing, optimizer, seed, cache,
             prior_preservation, class_prompt, class_images, prior_loss_weight, init_word, vectors, validation_every,
             validation_steps, lora_layers, validation_cfg]

    # 3. Run controls and what a run shows
    with gr.Row():
        start_btn = gr.Button("Train", variant="primary")
        resume_btn = gr.Button("Resume")
        cancel_btn = gr.Button("Cancel")
        run_pick = gr.Dropdown(runs, value=runs[0] if runs else None, label="Run", allow_custom_value=True)
    status_md = gr.Markdown(NO_RUN)
    with gr.Row():
        loss_plot = gr.LinePlot(x="step", y="loss", title="Loss", height=260)
        score_plot = gr.LinePlot(x="epoch", y="mean sim-score", title="Likeness (mean sim-score, lower is better)",
                                 height=260)
    with gr.Row():
        grids = gr.Gallery(label="Validation grids per epoch (one column per prompt)", columns=2, height=380,
                           object_fit="contain", format="png", scale=3)
        with gr.Column(scale=2):
            epoch_table = gr.Dataframe(headers=["epoch", "loss", "mean sim-score", "sim-score per prompt", ""],
                                       label="Epochs", interactive=False)
            epoch_pick = gr.Dropdown([], label="Epoch to export")
            export_btn = gr.Button("Export epoch")
            export_md = gr.Markdown()
    timer = gr.Timer(1.0)
    seen = gr.State(None)  # (run, events read) last shown, so unchanged views are not re-sent every tick

    # 4. Events
    @shows_errors
    def start(*values):
        config = config_from_widgets(*values)
        status = train.start_run(studio, config)
        return gr.update(choices=_run_names(studio), value=status.name), status.line()

    @shows_errors
    def resume(run, epochs_value, max_steps_value):
        if not run:
            raise ValueError("`run` is empty: pick a run to resume")
        saved = train.run_status(studio, run).config
        # a resume continues the saved run; larger Epochs or Max steps here make it train longer
        config = replace(saved, epochs=max(saved.epochs, int(epochs_value or 0)),
                         max_steps=max(saved.max_steps, int(max_steps_value or 0)) if saved.max_steps else 0)
        return train.start_run(studio, config, resume=True).line()

    @shows_errors
    def cancel(run):
        if not run:
            raise ValueError("`run` is empty: pick a run to cancel")
        return train.cancel_run(studio, run).line()

    @shows_errors
    def status(run, last):
        if not run:
            return (NO_RUN, *[gr.skip()] * 5, last)
        current = train.run_status(studio, run)
        key = (run, current.state, current.step, len(current.validations), len(current.messages))
        if key == last:
            return (*[gr.skip()] * 6, last)
        text, loss, scores, grid_items, table, epochs_done = _status_views(current)
        return text, loss, scores, grid_items, table, gr.update(choices=epochs_done), key

    @shows_errors
    def export(run, epoch):
        if not run or not epoch:
            raise ValueError(f"pick a run and an epoch to export (run {run!r}, epoch {epoch!r})")
        files = train.export_epoch(studio.settings.runs_dir / run, int(epoch), studio.settings.models_dir)
        return "Exported: " + ", ".join(f"`{f}`" for f in files)

    def apply_preset(choice):
        chosen = replace(_DEFAULTS, **PRESETS[choice])
        model_value = gr.update(value=chosen.model) if chosen.model else gr.skip()  # a preset made for one base
        return ([gr.update(value=chosen.method), model_value, gr.update(value="\n".join(chosen.validation_prompts))]
                + [gr.update(value=getattr(chosen, k)) for k in _KNOBS])

    def dataset_chosen(chosen):
        return train.dataset_trigger(studio.settings, chosen) or gr.skip()

    first_row = [name, dataset, model, method, trigger, prompts]
    start_btn.click(start, first_row + knobs, [run_pick, status_md], api_name="train_start", **GPU_QUEUE)
    resume_btn.click(resume, [run_pick, epochs, max_steps], status_md, api_name="train_resume", **GPU_QUEUE)
    cancel_btn.click(cancel, run_pick, status_md, api_name="train_cancel")
    views = [status_md, loss_plot, score_plot, grids, epoch_table, epoch_pick, seen]
    run_pick.change(status, [run_pick, gr.State(None)], views, api_name="train_status")
    timer.tick(status, [run_pick, seen], views, api_name=False, show_progress="hidden")
    export_btn.click(export, [run_pick, epoch_pick], export_md, api_name="train_export_epoch")
    preset.change(apply_preset, preset, [method, model, prompts, *knobs], api_name=False, queue=False)
    dataset.change(dataset_chosen, dataset, trigger, api_name=False, queue=False)
    refresh_btn.click(lambda: (gr.update(choices=train.list_datasets(studio.settings)),
                               gr.update(choices=_model_choices(studio)), gr.update(choices=_run_names(studio))),
                      None, [dataset, model, run_pick], api_name=False, queue=False)
