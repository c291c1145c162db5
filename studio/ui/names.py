"""Names on the web: what a web input may name (a model file or something the studio made, by the names the studio
lists when the call comes, never a server path), and the studio's names in place of server paths in what the web
shows (messages, text outputs, model names)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable

import gradio as gr

# ---- what web inputs may name --------------------------------------------------------------------------------------
# Every web input that names a model file or something the studio made (a dataset, a run, an evaluation...) must be
# a name from the studio's lists as they are when the call comes: what was made after start-up is taken, and no
# server path ever is. One check for all: a widget is `listed` once where it is made, and `bind` checks it for every
# event; names inside text (LoRA tables, Evaluate's variants, extra subjects) go through check_listed directly. The
# value is compared with the lists and never looked up on disk, so the answer tells nothing of the server's files.

@dataclass(frozen=True)
class Listing:
    names: Callable  # studio -> the names the studio lists now
    hub_ids: bool = False  # an owner/name hub id is taken too: it names no file on this machine
    key: Callable = str  # how two names compare (upscalers: Lanczos in any case)


def _model_ids(studio) -> list[str]:
    return [studio.store.default_model, *studio.store.list_models().base]


def _file_names(folder, files) -> list[str]:
    """The ways a model file under `folder` is named: stem (A1111's), file name, and its place below the folder."""
    out = []
    for p in files:
        below = p.relative_to(folder) if p.is_relative_to(folder) else None
        out += [p.stem, p.name, *([below.as_posix(), below.with_suffix("").as_posix()] if below else [])]
    return list(dict.fromkeys(out))


def _named_files(studio, sub: str, files) -> list[str]:
    """The names of a user's LoRAs or embeddings, each below the folder it was found in (their own, everyone's, or
    one another user shares)."""
    folders = studio.store.model_folders(sub)
    return list(dict.fromkeys(n for p in files for n in _file_names(
        next((f for f in folders if p.is_relative_to(f)), p.parent), [p])))


def _lora_files(studio) -> list[str]:
    return _named_files(studio, "lora", studio.store.list_models().lora)


def _embedding_files(studio) -> list[str]:
    return _named_files(studio, "embeddings", studio.store.list_models().embeddings)


def _upscaler_names(studio) -> list[str]:
    from studio.ui.common import upscaler_choices

    return [*upscaler_choices(studio), *(p.name for p in studio.store.list_models().upscale)]


def _clip_ids(studio) -> list[str]:
    from studio.models.clip import HUB_CLIP, TINY_CLIP, real_clip_models

    return [TINY_CLIP, *real_clip_models(studio.settings), HUB_CLIP]


def _dataset_names(studio) -> list[str]:
    from studio.ui.common import dataset_names

    return dataset_names(studio)


def _run_names(studio) -> list[str]:
    from studio.train import list_runs

    return [r.name for r in list_runs(studio)]


def _sweep_names(studio) -> list[str]:
    from studio.train.sweep_jobs import list_sweeps

    return [s.name for s in list_sweeps(studio)]


def _evaluation_names(studio) -> list[str]:
    from studio.evaluate import list_evaluations

    return [e.name for e in list_evaluations(studio.settings)]


def _mining_names(studio) -> list[str]:
    from studio.mine import list_mining

    return [j.name for j in list_mining(studio)]


LISTS = {
    "base model": Listing(_model_ids, hub_ids=True),
    "ControlNet": Listing(lambda studio: studio.store.list_models().controlnet, hub_ids=True),
    "LoRA": Listing(_lora_files),
    "embedding": Listing(_embedding_files),
    "upscaler": Listing(_upscaler_names, key=str.lower),
    "CLIP model": Listing(_clip_ids, hub_ids=True),
    "dataset": Listing(_dataset_names),
    "run": Listing(_run_names),
    "sweep": Listing(_sweep_names),
    "evaluation": Listing(_evaluation_names),
    "mining job": Listing(_mining_names),
}


def listed(ctx, widget, kind: str, *also: str):
    """Mark `widget` as naming a `kind` from LISTS (`also`: the widget's own choices that name none, such as
    "(studio default)"); every event bound with it checks its value first. A dropdown takes values beyond the
    choices it was built with, so an API call may name what was made since; the check is the studio's."""
    if kind not in LISTS:
        raise KeyError(f"no list of {kind!r}: one of {', '.join(LISTS)}")
    if isinstance(widget, gr.Dropdown):
        widget.allow_custom_value = True
    ctx.names[id(widget)] = (kind, also)
    return widget


def check_listed(studio, kind: str, value, argument: str, also=()) -> None:
    """ValueError unless `value` (each one, for a list of them) is empty, one of `also`, a name the studio lists as
    `kind` now or, for models, a hub id."""
    listing = LISTS[kind]
    values = [x for x in (value if isinstance(value, (list, tuple)) else [value]) if x not in (None, "")]
    values = [x for x in values if x not in also]
    if not values:
        return
    names = [n for n in listing.names(studio) if n]
    known = {listing.key(n) for n in names}
    for x in values:
        if not isinstance(x, str):
            raise ValueError(f"`{argument}` must be a name but is {type(x).__name__}")
        if listing.key(x.strip()) in known or (listing.hub_ids and _is_hub_id(x.strip())):
            continue
        shown = ", ".join(list(dict.fromkeys(names))[:12]) or "none yet"
        hub = " nor a hub id (owner/name)" if listing.hub_ids else ""
        article = "an" if kind[0] in "aeiou" else "a"
        raise ValueError(f"`{argument}` {x!r} not found: it is not {article} {kind} the studio lists ({shown}){hub}")


def is_listed(studio, kind: str, name: str) -> bool:
    """Whether `name` passes check_listed (for choices the studio makes itself, such as Evaluate's starting values)."""
    try:
        check_listed(studio, kind, name, kind)
    except ValueError:
        return False
    return True


def _is_hub_id(text: str) -> bool:
    from studio.models.hub import is_hub_id

    return is_hub_id(text) and not {".", ".."} & set(text.split("/"))


# ---- server paths out of what the web shows ------------------------------------------------------------------------

def shown_text(settings, text: str) -> str:
    """`text` with the studio's folders named as the user knows them (workspace/..., models/...), uploads and the
    web's copies by their file names, and a default model given as a path by its name: the web studio's messages
    never carry a server path."""
    from studio.copies import copy_folders

    if not text:
        return text
    for folder in copy_folders(settings):  # <folder>/<hash or key>/<name> -> <name>
        for form in sorted({str(folder), os.path.realpath(folder)}, key=len, reverse=True):
            text = re.sub(re.escape(form) + r"/(?:[0-9a-f]{12,}/)+", "", text)
    # (a user's own workspace is their "workspace"; the studio's, where the queue is, is named alike)
    named = {str(settings.studio_workspace): "workspace", str(settings.workspace_dir): "workspace",
             str(settings.models_dir): "models"}
    default = settings.default_model
    if default and not default.startswith("builtin:") and ("/" in default or "\\" in default) and os.path.isabs(
            os.path.expanduser(default)):
        named[default] = os.path.basename(default.rstrip("/\\"))
    for path in sorted(named, key=len, reverse=True):
        text = text.replace(path, named[path])
    return text


def model_name(studio, model_id: str) -> str:
    """A model id as the web shows it: builtin and hub ids and names in models/base/ as they are, a path (a default
    given on the command line) by its name."""
    return shown_text(studio.settings, model_id)


def shown_value(settings, value):
    """A text output (a string, or a gr.update holding one) through shown_text."""
    if isinstance(value, str):
        return shown_text(settings, value)
    if isinstance(value, dict) and isinstance(value.get("value"), str):
        return {**value, "value": shown_text(settings, value["value"])}
    return value
