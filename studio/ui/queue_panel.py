"""The Queue panel above the tabs, reachable from every tab: what runs on the device and what waits, in order, with
about when each starts; move or remove a waiting entry, cancel a job; what a restart does with a job it finds dead;
and whether the studio's own GPU work waits for a job or runs on the CPU meanwhile (studio.gpu)."""

from __future__ import annotations

import gradio as gr

from studio import claims, jobs, queue
from studio.ui.common import TabContext, bind

HEADERS = ["", "entry", "device", "when", "what"]
CPU_LABEL = "While a job holds the GPU, run Generate, Evaluate, captions and upscaling on the CPU (else they wait)"


def build(ctx: TabContext) -> dict:
    studio = ctx.studio
    with gr.Accordion("Queue", open=False):
        table = gr.Dataframe(headers=HEADERS, label="Running, then waiting in order", interactive=False)
        with gr.Row():
            entry = gr.Dropdown([], label="Entry", allow_custom_value=True, info="run:NAME, sweep:NAME, mining:NAME")
            position = gr.Number(1, precision=0, label="Move to position", info="1: next to start")
            move_btn = gr.Button("Move")
            remove_btn = gr.Button("Remove from the queue")
            cancel_btn = gr.Button("Cancel job", variant="stop")
            refresh_btn = gr.Button("Refresh", size="sm")
        with gr.Row():
            on_restart = gr.Radio(list(queue.ON_RESTART), value=queue.lineup(_folder(ctx)).on_restart,
                                  label="A job found dead when the studio restarts",
                                  info="resume: it continues first, from its checkpoint; stop: it stays stopped")
            on_cpu = gr.Checkbox(studio.settings.when_busy == "cpu", label=CPU_LABEL)
        message = gr.Markdown()
    seen = gr.State(None)
    timer = gr.Timer(2.0)

    shown = {"table": table, "entry": entry, "seen": seen}
    bind(ctx, timer.tick, listing, {"last": seen}, shown, api_name=False, show_progress="hidden", queue=False)
    bind(ctx, move_btn.click, move, {"entry": entry, "position": position}, {**shown, "message": message},
         api_name="queue_move")
    bind(ctx, remove_btn.click, remove, {"entry": entry}, {**shown, "message": message}, api_name="queue_remove")
    bind(ctx, cancel_btn.click, cancel, {"entry": entry}, {**shown, "message": message}, api_name="queue_cancel")
    bind(ctx, on_restart.change, options, {"on_restart": on_restart, "cpu_when_busy": on_cpu}, {"message": message},
         api_name="queue_options")
    bind(ctx, on_cpu.change, options, {"on_restart": on_restart, "cpu_when_busy": on_cpu}, {"message": message},
         api_name=False)
    bind(ctx, refresh_btn.click, queue_list, None, {"table": table, "entry": entry}, api_name="queue_list",
         queue=False)
    return shown


def _folder(ctx: TabContext):
    return claims.queue_dir(ctx.studio.settings)


# ---- callbacks ---------------------------------------------------------------------------------------------------

def rows(ctx: TabContext) -> list[list]:
    """The entries this user may see (an admin: all), and a last line counting the others' (never what they are)."""
    view = jobs.queue_view(ctx.studio)
    table = [["running" if r.position == 0 else r.position, r.entry, ", ".join(r.devices), r.when(), r.line or r.needs]
             for r in view.rows]
    return table + ([["", "", "", "", view.says()]] if view.others else [])


def listing(ctx: TabContext, v):
    """The table and the entries one can act on, sent only when they changed."""
    table = rows(ctx)
    if table == v.last:
        return {}
    entries = [row[1] for row in table if row[1] and not row[1].startswith("event:")]
    return {"table": table, "entry": gr.update(choices=entries), "seen": table}


def queue_list(ctx: TabContext, v):
    """The table now, and the entries one can act on."""
    return {key: value for key, value in listing(ctx, _no_last()).items() if key != "seen"}


def _job(ctx: TabContext, entry: str | None):
    """(kind, name, the studio as the job's owner sees it, the queue's id) of an entry this user may act on."""
    kind, name, owner = jobs.find_job(ctx.studio, (entry or "").strip())
    return kind, name, jobs.owners_studio(ctx.studio, owner), queue.entry_id(kind.key, name, owner)


def move(ctx: TabContext, v):
    *_, entry = _job(ctx, v.entry)
    queue.move(_folder(ctx), entry, int(v.position or 0))
    return {**listing(ctx, _no_last()), "message": f"{entry} is now number {int(v.position)}"}


def remove(ctx: TabContext, v):
    kind, name, owners, entry = _job(ctx, v.entry)
    if any(e.id == entry for e in queue.lineup(_folder(ctx)).running):
        raise ValueError(f"`entry` {v.entry!r} is running: Cancel job stops it (Remove takes out a waiting one)")
    return {**listing(ctx, _no_last()), "message": jobs.cancel(owners, kind, name).line()}


def cancel(ctx: TabContext, v):
    kind, name, owners, entry = _job(ctx, v.entry)
    status = jobs.cancel(owners, kind, name)
    said = f"{entry}: asked to stop; it stops after its current step" if status.active else status.line()
    return {**listing(ctx, _no_last()), "message": said}


def options(ctx: TabContext, v):
    if not ctx.studio.settings.is_admin:
        raise ValueError("the queue's options are the studio's, for everyone: only an admin may change them")
    queue.set_on_restart(_folder(ctx), v.on_restart)
    ctx.studio.set_when_busy("cpu" if v.cpu_when_busy else "wait")
    busy = "run on the CPU" if v.cpu_when_busy else "wait for it"
    return {"message": f"A job found dead after a restart: {v.on_restart}. While a job holds the GPU, the studio's own "
                       f"work will {busy}."}


def _no_last():
    from types import SimpleNamespace

    return SimpleNamespace(last=None)
