"""The one way a tab follows a long job (a run, a sweep, a mining job): picking a job shows it at once, and a timer
reads it again while it waits in the queue or runs, sending the views only when what they show has changed; the
timer stops once the job shown has ended, and starts again when a job is started or picked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import gradio as gr

from studio.joblog import ACTIVE
from studio.ui.common import TabContext, bind


@dataclass
class JobView:
    read: Callable  # (studio, name) -> the job's status
    key: Callable  # status -> what has to change for the views to be sent again (its state aside)
    views: Callable  # (ctx, status) -> outputs by name
    empty: dict  # the outputs when no job is picked
    picked: Callable = field(default=lambda status: {})  # outputs set only when a job is picked (Resume's values)

    def show(self, ctx: TabContext, name: str | None, last) -> dict:
        """The views of job `name`, or {} when nothing changed since `last` (the "seen" of the last views sent)."""
        if not name:
            return {**self.empty, "seen": last}
        current = self.read(ctx.studio, name)
        key = [name, current.state, *self.key(current)]
        if key == last:
            return {}
        views = {**self.views(ctx, current), "seen": key}
        if last is None or last[0] != name:
            views.update(self.picked(current))
        return views


def follow(ctx: TabContext, view: JobView, pick, input_name: str, outputs: dict, *, api_name: str,
           period_s: float = 1.0) -> gr.Timer:
    """Show the job `pick` names in `outputs` (by name, as view.views gives them) when it is picked (endpoint
    `api_name`, taking `input_name`) and while it is queued or running. Returns the timer: an event that starts a
    job turns it on with `timer_on`."""
    seen = gr.State(None)  # the key of the views last sent, so unchanged views are not sent every tick
    timer = gr.Timer(period_s)  # its first tick shows the job picked when the page was built, then it rests

    def show(ctx, v):
        return view.show(ctx, getattr(v, input_name), v.last)

    def tick(ctx, v):
        views = view.show(ctx, getattr(v, input_name), v.last)
        if not getattr(v, input_name):
            return {**views, "timer": gr.Timer(active=False)}
        if views and views["seen"] != v.last:
            views["timer"] = gr.Timer(active=views["seen"][1] in ACTIVE)
        return views

    def timer_for(name):
        return gr.Timer(active=bool(name) and view.read(ctx.studio, name).state in ACTIVE)

    shown = {**outputs, "seen": seen}
    bind(ctx, pick.change, show, {input_name: pick, "last": gr.State(None)}, shown, api_name=api_name).success(
        timer_for, pick, timer, api_name=False, queue=False)
    bind(ctx, timer.tick, tick, {input_name: pick, "last": seen}, {**shown, "timer": timer}, api_name=False,
         show_progress="hidden")
    return timer


def shown_job(names: list[str], shown: str | None):
    """A job list as it is on disk now (`names`, newest first): the job shown stays, or (none shown, or it is gone)
    the newest is shown, so a reload comes back to where the user was."""
    return gr.update(choices=names, value=shown if shown in names else (names[0] if names else None))


def timer_on():
    """For `.success(timer_on, None, timer)` after an event that started or queued a job."""
    return gr.Timer(active=True)
