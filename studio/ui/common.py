"""What every tab shares: the GPU queue, turning ValueError into gr.Error, and small widget helpers."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Callable

import gradio as gr

# Every event that runs a model uses these, so GPU work from all tabs and users goes through one queue slot.
GPU_QUEUE = dict(concurrency_id="gpu", concurrency_limit=1)


def shows_errors(fn):
    """Show a ValueError (bad input, with the argument and value) to the user as a gr.Error, not a stack trace."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except ValueError as e:
                raise gr.Error(str(e)) from e

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as e:
            raise gr.Error(str(e)) from e

    return wrapper


@dataclass
class TabRefresh:
    """Returned by a tab's build(): `fn(*inputs)` gives new values for `outputs` whenever the tab is opened."""

    fn: Callable
    outputs: list
    inputs: list = field(default_factory=list)
