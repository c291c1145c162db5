"""Mine tab: grow a sim-group of one synthetic face from generated pictures (or a folder) in a child process, watch
it grow, stop and continue it, and turn the group into a dataset the Train tab takes as it is."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from studio import mine
from studio.mine.request import RESUME_CHANGES, MiningRequest
from studio.mine.uploads import keep_uploads
from studio.names import check_name
from studio.remote.address import where_jobs_run
from studio.ui import glossary, job_watch
from studio.ui.charts import LineChart
from studio.ui.dataset_prepare import paths
from studio.ui.common import (TabContext, TabRefresh, bind, dataset_names, embedding_names, lora_names, model_choices,
                              progress_fn, upscaler_choices)
from studio.ui.forms import Form, request_from_values
from studio.ui.names import check_listed, listed
from studio.ui.serving import served

NO_JOB = "(no mining job yet)"
GROUP_SIZE = LineChart("candidate", "group size", title="Group size over candidates")
NO_UPSCALER = "(none)"


def build(ctx: TabContext) -> TabRefresh:
    studio = ctx.studio
    jobs = job_names(studio)
    form = Form(ctx, MiningRequest)  # every widget named by its field: /mine_start's parameters
    gr.Markdown("Mine Stable Diffusion for one consistent face that belongs to no one (seed 000's sim-group): each "
                "candidate's face is compared with the group; a mean face distance up to the tolerance joins it, "
                "near misses are kept apart, and members that drift away as the group grows are dropped.")
    # 1. Where candidates come from: a prompt, or a folder
    with gr.Row():
        with gr.Column(scale=3):
            form.widget("prompt", placeholder="e.g. a photo of a young woman, portrait, natural light")
            form.widget("negative_prompt")
            folder = form.widget("candidates", value=None)
            uploads = gr.File(file_count="multiple", file_types=["image", ".zip"], type="filepath", height=170,
                              label="Or upload pictures (or a .zip) to mine from: kept as dataset "
                                    "<job name>-candidates")
        with gr.Column(scale=2):
            model = form.widget("model")
            loras = form.put("loras", gr.Dropdown(lora_names(studio), multiselect=True, allow_custom_value=True,
                                                  label=form.settings["loras"].label))
            embeddings = form.widget("embeddings")
            form.put("seed_face", gr.File(file_types=["image"], type="filepath",
                                          label=f"{form.settings['seed_face'].label} (optional: else the first face "
                                                f"found)"))
    with gr.Accordion("Generation", open=False):
        with gr.Row():
            form.widget("sampler")
            for name in ("steps", "cfg", "width", "height", "seed_start", "batch_size"):
                form.widget(name)
            upscaler = listed(ctx, form.put("upscaler", gr.Dropdown(
                [NO_UPSCALER, *upscaler_choices(studio)], value=NO_UPSCALER, label=form.settings["upscaler"].label,
                info="4x before the face is looked for (models in models/upscale/)")), "upscaler", NO_UPSCALER)

    # 2. The rules and the budget
    with gr.Row():
        for name in ("tolerance", "near_miss", "drop_tolerance"):
            form.widget(name)
    with gr.Row():
        for name in ("recheck", "pin_seed", "target", "max_candidates", "max_minutes"):
            form.widget(name)
    form.rest()  # a setting declared since, not yet placed: shown, and /mine_start takes it
    glossary.words("sim-group", "sim-score", "tolerance", "near miss", "seed", "trigger word")
    with gr.Row():
        form.widget("name", placeholder="e.g. amari")
        start_btn = gr.Button("Start", variant="primary")
        resume_btn = gr.Button("Continue")
        cancel_btn = gr.Button("Stop")
        job = gr.Dropdown(jobs, value=jobs[0] if jobs else None, label="Job", allow_custom_value=True)
        refresh_btn = gr.Button("Refresh lists", size="sm")

    # 3. What a job shows
    gr.Markdown(where_jobs_run(studio.settings), elem_id="mine-where")
    status_md = gr.Markdown(NO_JOB)
    with gr.Row():
        faces = gr.Gallery(label="The group's faces (newest last)", columns=10, height=280, scale=3)
        size_plot = GROUP_SIZE.widget(height=280, scale=2)
    with gr.Row():
        dataset = gr.Textbox(label="Dataset name", placeholder="e.g. amari")
        trigger = gr.Textbox(label="Trigger word", placeholder="e.g. amari")
        class_word = gr.Textbox("person", label="Class word")
        dataset_btn = gr.Button("Make a dataset of the group")
    dataset_md = gr.Markdown()

    # 4. Wiring: the API endpoints take these names (/mine_start: MiningRequest's fields)
    budget = {k: form.inputs[k] for k in RESUME_CHANGES}
    views = {"status": status_md, "faces": faces, "plot": size_plot, "job_target": budget["target"],
             "job_max_candidates": budget["max_candidates"], "job_max_minutes": budget["max_minutes"]}
    timer = job_watch.follow(ctx, MINING_VIEW, job, "job", views, api_name="mine_status")
    bind(ctx, start_btn.click, start, {**form.inputs, "uploads": uploads}, {"job": job, "status": status_md},
         api_name="mine_start").success(
        job_watch.timer_on, None, timer, api_name=False, queue=False)
    bind(ctx, resume_btn.click, resume, {"job": job, **budget}, {"status": status_md},
         api_name="mine_resume").success(job_watch.timer_on, None, timer, api_name=False, queue=False)
    bind(ctx, cancel_btn.click, cancel, {"job": job}, {"status": status_md}, api_name="mine_cancel")
    bind(ctx, dataset_btn.click, to_dataset, {"job": job, "dataset": dataset, "trigger": trigger,
                                              "class_word": class_word}, {"message": dataset_md},
         api_name="mine_to_dataset", gpu=True)
    lists = {"job": job, "model": model, "loras": loras, "embeddings": embeddings, "folder": folder,
             "upscaler": upscaler}
    bind(ctx, refresh_btn.click, refresh_lists, {"shown": job}, lists, api_name=False, queue=False, checked=False)
    return TabRefresh(refresh_lists, lists, inputs={"shown": job})


def job_names(studio) -> list[str]:
    return [j.name for j in mine.list_mining(studio)]


def request_from_widgets(values: dict) -> MiningRequest:
    """/mine_start's inputs (MiningRequest's fields, by name) -> a checked MiningRequest: the seed face's upload as
    its path, "(none)" as no upscaler, then the one conversion flags and API calls go through."""
    upscaler = values.get("upscaler")
    values = {**values, "seed_face": _path(values.get("seed_face")), "upscaler": "" if upscaler == NO_UPSCALER
              else upscaler}
    return request_from_values(MiningRequest, values)


def _path(file) -> str:
    if not file:
        return ""
    return str(Path(file if isinstance(file, str) else file.name))


# ---- callbacks ---------------------------------------------------------------------------------------------------

def start(ctx: TabContext, v):
    """/mine_start: MiningRequest's settings by name, and `uploads` (pictures or .zips to mine from instead of a
    dataset: kept first as the dataset folder <name>-candidates)."""
    values, kept = vars(v), None
    files = paths(values.pop("uploads", None))
    if files:
        if (v.prompt or "").strip() or v.candidates:
            raise ValueError("`uploads` are candidates of their own: leave the prompt and the dataset empty to mine "
                             "them (or remove the uploads)")
        name = check_name(v.name)
        if name in job_names(ctx.studio):
            raise ValueError(f"`name` {name!r} is taken by an earlier mining job; continue it or choose another name")
        kept = keep_uploads(ctx.studio.settings, f"{name}-candidates", files)
        values["candidates"] = kept.name
    request = request_from_widgets(values)
    for lora in request.loras:
        check_listed(ctx.studio, "LoRA", lora.name, "loras")
    status = mine.start_mining(ctx.studio, request)
    said = f"{status.line()}\n\n{kept.line()}" if kept else status.line()
    return {"job": gr.update(choices=job_names(ctx.studio), value=status.name), "status": said}


def resume(ctx: TabContext, v):
    if not v.job:
        raise ValueError("`job` is empty: pick a mining job to continue")
    status = mine.resume_mining(ctx.studio, v.job, target=None if v.target is None else int(v.target),
                                max_candidates=None if v.max_candidates is None else int(v.max_candidates),
                                max_minutes=None if v.max_minutes is None else float(v.max_minutes))
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
    result = mine.group_to_dataset(ctx.studio, mine.GroupDataset(v.job, (v.dataset or "").strip(),
                                                                 (v.trigger or "").strip(),
                                                                 (v.class_word or "person").strip()),
                                   progress_fn(progress))
    return {"message": f"Dataset **{result.dataset.name}** written ({len(result.dataset.images)} pictures, "
                       f"{len(result.flagged)} flagged); it is in the Dataset and Train tabs' lists.\n\n```\n"
                       f"{result.summary()}\n```"}


def refresh_lists(ctx: TabContext, v):
    """What is on disk now; the job shown stays, or (none shown, or it is gone) the newest is."""
    studio = ctx.studio
    return {"job": job_watch.shown_job(job_names(studio), v.shown), "model": gr.update(choices=model_choices(studio)),
            "loras": gr.update(choices=lora_names(studio)), "embeddings": gr.update(choices=embedding_names(studio)),
            "folder": gr.update(choices=dataset_names(studio)),
            "upscaler": gr.update(choices=[NO_UPSCALER, *upscaler_choices(studio)])}


def status_views(ctx: TabContext, status) -> dict:
    """MiningStatus -> the status text, the strip of the group's faces and the group-size chart."""
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
    return {"status": "\n\n".join(lines), "faces": faces, "plot": GROUP_SIZE.value(points)}


MINING_VIEW = job_watch.JobView(
    read=mine.mining_status, key=lambda s: [s.step, len(s.messages), s.message], views=status_views,
    empty={"status": NO_JOB},
    # a job picked: Continue starts from its own target and budgets
    picked=lambda s: {"job_target": s.request.target, "job_max_candidates": s.request.max_candidates,
                      "job_max_minutes": s.request.max_minutes})
