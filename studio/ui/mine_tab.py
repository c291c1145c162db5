"""Mine tab: grow a sim-group of one synthetic face from generated pictures (or a folder) in a child process, watch
it grow, stop and continue it, and turn the group into a dataset the Train tab takes as it is."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import mine
from studio.generate.request import parse_lora
from studio.mine.request import MiningRequest
from studio.ui import job_watch
from studio.ui.common import (DEFAULT_MODEL, FAMILY_SAMPLER, TabContext, TabRefresh, bind, chosen_model, chosen_sampler,
                              dataset_names, embedding_names, lora_names, model_choices, progress_fn, sampler_choices,
                              upscaler_choices)
from studio.ui.names import check_listed, listed
from studio.ui.serving import served

NO_JOB = "(no mining job yet)"
NO_UPSCALER = "(none)"
SOURCES = ("Generate", "Folder")
_D = MiningRequest("x", prompt="x")


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    jobs = job_names(studio)
    gr.Markdown("Mine Stable Diffusion for one consistent face that belongs to no one (seed 000's sim-group): each "
                "candidate's face is compared with the group; a mean face distance up to the tolerance joins it, "
                "near misses are kept apart, and members that drift away as the group grows are dropped.")
    # 1. Where candidates come from
    with gr.Row():
        with gr.Column(scale=3):
            source = gr.Radio(list(SOURCES), value="Generate", label="Candidates from")
            prompt = gr.Textbox("a photo of a young woman, portrait, natural light", label="Prompt", lines=2)
            negative = gr.Textbox("", label="Negative prompt")
            folder = listed(ctx, gr.Dropdown(dataset_names(studio), value=None,
                                             label="Or pictures from a dataset (a folder in workspace/datasets/)"),
                            "dataset")
        with gr.Column(scale=2):
            model = listed(ctx, gr.Dropdown(model_choices(studio), value=DEFAULT_MODEL, label="Base model"),
                           "base model", DEFAULT_MODEL)
            loras = gr.Dropdown(lora_names(studio), multiselect=True, allow_custom_value=True,
                                label="LoRAs (NAME or NAME:WEIGHT)")
            embeddings = listed(ctx, gr.Dropdown(embedding_names(studio), multiselect=True, label="Embeddings"),
                                "embedding")
            seed_face = gr.File(file_types=["image"], type="filepath",
                                label="Seed face (optional: else the first face found)")
    with gr.Accordion("Generation", open=False):
        with gr.Row():
            sampler = gr.Dropdown(sampler_choices(), value=FAMILY_SAMPLER, label="Sampler",
                                  info="the model's default: Euler a, or Euler for FLUX.1")
            steps = gr.Number(_D.steps, precision=0, label="Steps")
            cfg = gr.Number(0, label="CFG scale", info="0: the family's (7; 1 for FLUX.1)")
            width = gr.Number(0, precision=0, label="Width", info="0: the model's native size")
            height = gr.Number(0, precision=0, label="Height")
            seed_start = gr.Number(_D.seed_start, precision=0, label="First seed", info="candidate i: this + i")
            batch = gr.Number(_D.batch_size, precision=0, label="Batch size")
            upscaler = listed(ctx, gr.Dropdown([NO_UPSCALER, *upscaler_choices(studio)], value=NO_UPSCALER,
                                               label="Upscaler",
                                               info="4x before the face is looked for (models in models/upscale/)"),
                              "upscaler", NO_UPSCALER)

    # 2. The rules and the budget
    with gr.Row():
        tolerance = gr.Slider(0.2, 0.8, value=_D.tolerance, step=0.01, label="Tolerance",
                              info="admit a face whose mean distance to the group is at most this (seed 000: 0.40)")
        near_miss = gr.Slider(0.2, 1.0, value=_D.near_miss, step=0.01, label="Near miss up to",
                              info="kept apart, not thrown away")
        drop_tolerance = gr.Slider(0.0, 0.8, value=0.0, step=0.01, label="Drop above",
                                   info="a member's mean distance to the rest; 0: the tolerance")
    with gr.Row():
        recheck = gr.Checkbox(_D.recheck, label="Drop members that drift away")
        pin_seed = gr.Checkbox(_D.pin_seed, label="Never drop the seed face")
        target = gr.Number(_D.target, precision=0, label="Target group size")
        max_candidates = gr.Number(0, precision=0, label="Image budget", info="candidates; 0: no limit")
        max_minutes = gr.Number(0, label="Time budget (minutes)", info="0: no limit")
    with gr.Row():
        name = gr.Textbox(label="Job name", placeholder="e.g. amari")
        start_btn = gr.Button("Start", variant="primary")
        resume_btn = gr.Button("Continue")
        cancel_btn = gr.Button("Stop")
        job = gr.Dropdown(jobs, value=jobs[0] if jobs else None, label="Job", allow_custom_value=True)
        refresh_btn = gr.Button("Refresh lists", size="sm")

    # 3. What a job shows
    status_md = gr.Markdown(NO_JOB)
    with gr.Row():
        faces = gr.Gallery(label="The group's faces (newest last)", columns=10, height=280, scale=3)
        size_plot = gr.LinePlot(x="candidate", y="group size", title="Group size over candidates", height=280,
                                scale=2)
    with gr.Row():
        dataset = gr.Textbox(label="Dataset name", placeholder="e.g. amari")
        trigger = gr.Textbox(label="Trigger word", placeholder="e.g. amari")
        class_word = gr.Textbox("person", label="Class word")
        dataset_btn = gr.Button("Make a dataset of the group")
    dataset_md = gr.Markdown()

    # 4. Wiring: the API endpoints take these names
    inputs = {"name_": name, "source_": source, "prompt_": prompt, "negative_": negative, "folder_": folder,
              "model_": model, "loras_": loras, "embeddings_": embeddings, "seed_face_": seed_face,
              "sampler_": sampler, "steps_": steps, "cfg_": cfg, "width_": width, "height_": height,
              "seed_start_": seed_start, "batch_": batch, "upscaler_": upscaler, "tolerance_": tolerance,
              "near_miss_": near_miss, "drop_tolerance_": drop_tolerance, "recheck_": recheck, "pin_seed_": pin_seed,
              "target_": target, "max_candidates_": max_candidates, "max_minutes_": max_minutes}
    views = {"status": status_md, "faces": faces, "plot": size_plot, "job_target": target,
             "job_max_candidates": max_candidates, "job_max_minutes": max_minutes}
    timer = job_watch.follow(ctx, MINING_VIEW, job, "job", views, api_name="mine_status")
    bind(ctx, start_btn.click, start, inputs, {"job": job, "status": status_md}, api_name="mine_start").success(
        job_watch.timer_on, None, timer, api_name=False, queue=False)
    bind(ctx, resume_btn.click, resume, {"job": job, "target_": target, "max_candidates_": max_candidates,
                                         "max_minutes_": max_minutes}, {"status": status_md},
         api_name="mine_resume").success(job_watch.timer_on, None, timer, api_name=False, queue=False)
    bind(ctx, cancel_btn.click, cancel, {"job": job}, {"status": status_md}, api_name="mine_cancel")
    bind(ctx, dataset_btn.click, to_dataset, {"job": job, "dataset_": dataset, "trigger_": trigger,
                                              "class_word_": class_word}, {"message": dataset_md},
         api_name="mine_to_dataset", gpu=True)
    lists = {"job": job, "model": model, "loras": loras, "embeddings": embeddings, "folder": folder}
    bind(ctx, refresh_btn.click, refresh_lists, None, lists, api_name=False, queue=False)
    return TabRefresh(refresh_lists, lists)


def job_names(studio) -> list[str]:
    return [j.name for j in mine.list_mining(studio)]


def request_from_widgets(v) -> MiningRequest:
    """/mine_start's inputs (by name) -> a checked MiningRequest (numbers from gradio may arrive as floats)."""
    generated = v.source_ != "Folder"
    return MiningRequest(
        name=(v.name_ or "").strip(), prompt=(v.prompt_ or "") if generated else "",
        candidates=None if generated else (v.folder_ or "").strip() or None, negative_prompt=v.negative_ or "",
        model=chosen_model(v.model_), loras=tuple(parse_lora(x) for x in v.loras_ or []),
        embeddings=tuple(v.embeddings_ or []), seed_face=_path(v.seed_face_), sampler=chosen_sampler(v.sampler_),
        steps=int(v.steps_), cfg=float(v.cfg_ or 0) or None, width=int(v.width_ or 0) or None,
        height=int(v.height_ or 0) or None,
        seed_start=int(v.seed_start_ or 0), batch_size=int(v.batch_ or 1),
        upscaler="" if v.upscaler_ in (None, "", NO_UPSCALER) else v.upscaler_,
        tolerance=float(v.tolerance_), near_miss=float(v.near_miss_),
        drop_tolerance=float(v.drop_tolerance_) if v.drop_tolerance_ else None, recheck=bool(v.recheck_),
        pin_seed=bool(v.pin_seed_), target=int(v.target_), max_candidates=int(v.max_candidates_ or 0),
        max_seconds=float(v.max_minutes_ or 0) * 60,
    )


def _path(file) -> str:
    if not file:
        return ""
    return str(Path(file if isinstance(file, str) else file.name))


# ---- callbacks ---------------------------------------------------------------------------------------------------

def start(ctx: TabContext, v):
    request = request_from_widgets(v)
    for lora in request.loras:
        check_listed(ctx.studio, "LoRA", lora.name, "loras_")
    status = mine.start_mining(ctx.studio, request)
    return {"job": gr.update(choices=job_names(ctx.studio), value=status.name), "status": status.line()}


def resume(ctx: TabContext, v):
    if not v.job:
        raise ValueError("`job` is empty: pick a mining job to continue")
    minutes = None if v.max_minutes_ is None else float(v.max_minutes_)
    status = mine.resume_mining(ctx.studio, v.job, target=None if v.target_ is None else int(v.target_),
                                max_candidates=None if v.max_candidates_ is None else int(v.max_candidates_),
                                max_seconds=None if minutes is None else minutes * 60)
    return {"status": status.line()}


def cancel(ctx: TabContext, v):
    if not v.job:
        raise ValueError("`job` is empty: pick a mining job to stop")
    return {"status": mine.cancel_mining(ctx.studio, v.job).line()}


def status(ctx: TabContext, v):
    return MINING_VIEW.show(ctx, v.job, v.last)


def to_dataset(ctx: TabContext, v, progress):
    if not v.job:
        raise ValueError("`job` is empty: pick the mining job whose group becomes a dataset")
    result = mine.group_to_dataset(ctx.studio, mine.GroupDataset(v.job, (v.dataset_ or "").strip(),
                                                                 (v.trigger_ or "").strip(),
                                                                 (v.class_word_ or "person").strip()),
                                   progress_fn(progress))
    return {"message": f"Dataset **{result.dataset.name}** written ({len(result.dataset.images)} pictures, "
                       f"{len(result.flagged)} flagged); it is in the Dataset and Train tabs' lists.\n\n```\n"
                       f"{result.summary()}\n```"}


def refresh_lists(ctx: TabContext, v):
    studio = ctx.studio
    return {"job": gr.update(choices=job_names(studio)), "model": gr.update(choices=model_choices(studio)),
            "loras": gr.update(choices=lora_names(studio)), "embeddings": gr.update(choices=embedding_names(studio)),
            "folder": gr.update(choices=dataset_names(studio))}


def status_views(ctx: TabContext, status) -> dict:
    """MiningStatus -> the status text, the strip of the group's faces and the group-size chart."""
    import pandas as pd

    c = status.counts
    rate = f" ({status.per_minute:.1f} per minute)" if status.per_minute else ""
    mean = f", mean distance {status.group_mean:.3f}" if status.group_mean is not None else ""
    lines = [f"**{status.name}: {status.state}**" + (f" ({status.message})" if status.message else ""),
             f"{c['candidates']} candidates{rate}; faces found {c['faces']}; admitted {c['admitted'] + c['seed']}, "
             f"near misses {c['near_miss']}, rejected {c['rejected']}, no face {c['no_face']}, "
             f"dropped {c['dropped']}; **group {status.group_size} of {status.request.target}**{mean}"]
    if status.messages:
        lines.append("\n".join(f"- {m}" for m in status.messages[-4:]))
    if status.state in ("cancelled", "stopped", "failed", "done"):
        lines.append("Continue goes on after the last decided candidate.")
    points = [(x, size) for x, size, _ in status.history]
    last = c["candidates"] - 1
    if points and last > points[-1][0]:
        points.append((last, status.group_size))
    faces = [(served(ctx.studio.settings, path), caption) for path, caption in status.faces()]
    return {"status": "\n\n".join(lines), "faces": faces,
            "plot": pd.DataFrame(points, columns=["candidate", "group size"])}


MINING_VIEW = job_watch.JobView(
    read=mine.mining_status, key=lambda s: [s.step, len(s.messages), s.message], views=status_views,
    empty={"status": NO_JOB},
    # a job picked: Continue starts from its own target and budgets
    picked=lambda s: {"job_target": s.request.target, "job_max_candidates": s.request.max_candidates,
                      "job_max_minutes": s.request.max_seconds / 60})
