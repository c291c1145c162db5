"""The web studio: build_app() assembles one gradio Blocks from the tab modules; launch() serves it."""

from __future__ import annotations

import importlib

import gradio as gr

from studio.context import Studio
from studio.settings import Settings
from studio.ui import account_panel, queue_panel, start_here
from studio.ui.common import TabContext, TabRefresh, bind

# (tab title, module under studio/ui/ with build(ctx)); a tab is listed only once it works. build() may return
# a TabRefresh: what to re-read (model lists, runs...) each time the user opens the tab.
TABS = (
    ("Dataset", "dataset_tab"),
    ("Mine", "mine_tab"),
    ("Train", "train_tab"),
    ("Generate", "generate_tab"),
    ("Face to animal", "animal_tab"),
    ("Evaluate", "evaluate_tab"),
    ("Models", "models_tab"),
)


def build_app(studio: Studio | Settings | None = None) -> gr.Blocks:
    if not isinstance(studio, Studio):
        studio = Studio.open(studio)
    # As built, the page names no one's things on a studio of several users (its lists come from each session's user
    # when the page loads); a single-user studio's page is its owner's, as it always was.
    ctx = TabContext(studio.for_web().page())
    # Uploads and gradio's copies of what it showed are cleaned by the studio itself (launch: studio.ui.gate), by age
    # and size, including what an earlier run of the server left.
    with gr.Blocks(title="Likeness Studio") as app:
        gr.Markdown("## Likeness Studio\nMake a personal image model: dataset, training, generation, evaluation.")
        welcome = start_here.build(ctx)
        refreshes = [account_panel.build(ctx)]  # (on a studio of several users: who is logged in, sharing, users)
        queue_panel.build(ctx)  # above the tabs: reachable from every one
        with gr.Tabs() as tabs:
            ctx.widgets["tabs"] = tabs
            for title, module in TABS:
                with gr.Tab(title, id=module) as tab:
                    refresh = importlib.import_module(f"studio.ui.{module}").build(ctx)
                if isinstance(refresh, TabRefresh):
                    bind(ctx, tab.select, refresh.fn, refresh.inputs, refresh.outputs, api_name=False, queue=False,
                         checked=False)
                    refreshes.append(refresh)
        start_here.wire(ctx, welcome)
        for wiring in ctx.later:
            wiring()
        start_here.wire_visit(app, welcome)
        # A reload shows what is on disk now, not what was there when the server started: every tab's lists.
        for refresh in refreshes:
            bind(ctx, app.load, refresh.fn, refresh.inputs, refresh.outputs, api_name=False, queue=False, checked=False)
    app.queue(default_concurrency_limit=4)
    return app


# Validation grids are wide strips (one picture per prompt): in their gallery each takes its own height, not a square.
# Generate's pictures: rows of a fixed height, each picture whole inside (object-fit: contain), not a square crop.
# The identity check's gallery: as tall as its rows (up to most of the screen), captions wrapped, not cut.
# Evaluate's grid at its own size, narrowed to the column only (a fixed height made a tall grid's labels unreadable).
CSS = """
#train-grids .grid-container { grid-template-rows: none; grid-auto-rows: auto; }
#train-grids .thumbnail-item { aspect-ratio: auto; height: auto; }
#train-grids .thumbnail-lg > img { height: auto; }
#generate-gallery .grid-container { grid-template-rows: none; grid-auto-rows: 420px; }
#generate-gallery .thumbnail-item { aspect-ratio: auto; height: 420px; }
#dataset-check-gallery .grid-wrap { min-height: 0; max-height: 80vh; }
#dataset-check-gallery .caption-label { white-space: normal; }
"""


def launch(studio: Studio, *, share: bool = False, prevent_thread_lock: bool = False):
    """Serve the studio. Nothing of the workspace is reachable by URL but what a callback returns (studio.ui.serving);
    uploads are capped, and the web's copies cleaned by age and size; only the studio's own page (and
    --allow-origin's) may call it from a browser; a login, when asked for, waits longer after each wrong password
    from the same client (studio.ui.access, studio.ui.gate)."""
    import os

    from studio.copies import clean_copies
    from studio.fileio import clean_stale_files
    from studio.gpu import QueueWatcher
    from studio.ui.access import PasswordCheck
    from studio.ui.gate import cleaning, studio_app

    s = studio.for_web().settings
    clean_stale_files(s.workspace_dir)
    if s.several_users:  # whose each copy is lives in memory (studio.ui.serving): none from an earlier run is kept
        clean_copies(s, room=s.web_copies_mb * 1024**2)
    os.environ["GRADIO_TEMP_DIR"] = str(s.gradio_dir)  # gradio's cache is the studio's own folder, which it cleans
    app = build_app(studio)
    # The queue, once a second while the app serves: restart recovery first, then starting what waits, reaping
    # children, giving back the cached weights a job needs. (A blocking launch returns only when the server ends.)
    served = {"returned": False}
    QueueWatcher(studio, keep_going=lambda: app.is_running or not served["returned"]).start()
    login = PasswordCheck(s.auth_file or s.auth).login if s.auth or s.auth_file else None
    # `_frontend=False` skips gradio's second look at the local URL, one 3 s HEAD request, which said "localhost is
    # not accessible" on a CPU busy training: launch() has already waited, without a limit, for the server's answer
    # to its startup-events request, so the server is up when it returns.
    app.launch(server_name=s.host, server_port=s.port, auth=login, share=share,
               prevent_thread_lock=prevent_thread_lock, allowed_paths=[],
               blocked_paths=[str(s.models_dir), str(s.workspace_dir / ".cache")], max_file_size=f"{s.max_upload_mb}mb",
               css=CSS, app_kwargs={"lifespan": cleaning(s)}, _app=studio_app(s), _frontend=False)
    served["returned"] = True
    return app
