"""What every tab shares: the tab context (studio + stop flags), `bind` (module-level callbacks wired by input and
output names), the GPU queue, ValueError -> gr.Error, choice builders, number formatting, the progress adapter.

A tab module reads as layout + wiring: build(ctx) makes the widgets and binds callbacks defined at module level,

    inputs = {"prompt_text": prompt, "seed_value": seed}          # names -> widgets, declared once
    bind(ctx, button.click, run, inputs, {"gallery": gallery, "seed": last_seed}, api_name="generate", gpu=True)

    def run(ctx, v, request, progress):                          # v.prompt_text, v.seed_value
        ...
        return {"gallery": images, "seed": result.seed}          # outputs by name; a missing one is left as it is

and the API endpoint's parameters are the input names, so scripts can pass them by keyword.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Callable

import gradio as gr

from studio.gpu import device_turn
from studio.progress import Cancelled
from studio.ui.access import session_user
from studio.ui.names import check_listed, model_name, shown_text, shown_value

# Every event that runs a model uses these, so GPU work from all tabs and users goes through one queue slot.
GPU_QUEUE = dict(concurrency_id="gpu", concurrency_limit=1)
DEFAULT_MODEL = "(studio default)"  # the base-model choice that means "the studio's default base"


class SessionStops:
    """One stop flag per browser session and job: one user's Stop never stops another's job, and two apps in one
    process share nothing."""

    def __init__(self):
        self._flags: dict[tuple[str, str], threading.Event] = {}
        self._lock = threading.Lock()

    def _event(self, request: gr.Request | None, job: str) -> threading.Event:
        key = (request.session_hash if request is not None and request.session_hash else "", job)
        with self._lock:
            return self._flags.setdefault(key, threading.Event())

    def begin(self, request: gr.Request | None, job: str) -> Callable[[], bool]:
        """Clear this session's flag for `job` and return its should_stop()."""
        event = self._event(request, job)
        event.clear()
        return event.is_set

    def stop(self, request: gr.Request | None, job: str) -> None:
        self._event(request, job).set()


@dataclass
class TabContext:
    """What a tab's build() and callbacks get: the studio and the app's stop flags. A callback's studio is its
    session's user's view (for_session): their datasets, runs, models and pictures, no one else's."""

    studio: object  # studio.context.Studio: as built, the page's (no one's things on a studio of several users)
    stops: SessionStops = field(default_factory=SessionStops)
    # Widgets a tab offers to the rest of the app by name ("tabs", "train.run"...), for events that cross tabs
    widgets: dict = field(default_factory=dict)
    # Widgets whose value names something the studio lists (see `listed`): id(widget) -> (kind, values also taken)
    names: dict = field(default_factory=dict)
    # What a failed event leaves for its failure listener to show (a question to the user), by (session, job)
    questions: dict = field(default_factory=dict)
    # Wiring that needs widgets of tabs built later (Generate's "Send to Face to animal"): run once every tab exists
    later: list = field(default_factory=list)
    # The live preview of a generation under way, by session: (a count of previews, the newest picture)
    previews: dict = field(default_factory=dict)


    def for_session(self, request: gr.Request | None) -> "TabContext":
        """This context as the session making `request` uses it: the studio as its logged-in user sees it (the same
        stop flags, widgets and questions). A studio of one user is its own view."""
        if not self.studio.settings.several_users:
            return self
        user, admin = session_user(self.studio.settings, request)
        return replace(self, studio=self.studio.as_user(user, admin=admin))


@dataclass
class TabRefresh:
    """Returned by a tab's build(): `fn(ctx, v)` gives new values for `outputs` whenever the tab is opened."""

    fn: Callable
    outputs: dict
    inputs: dict = field(default_factory=dict)


def bind(ctx: TabContext, event, fn: Callable, inputs: dict | None, outputs: dict | None, *, api_name: str | bool,
         gpu: bool = False, checked: bool = True, **event_kwargs):
    """Wire `fn(ctx, v[, request][, progress])` to a gradio `event` (e.g. button.click).

    `inputs` maps names to widgets; `fn` gets their values as `v.<name>`, and the API endpoint takes them by those
    names. `outputs` maps names to widgets; `fn` returns a dict by name (a missing name keeps its widget as it is).
    An input whose widget is `listed` is checked against the studio's lists before `fn` runs (`checked=False`: a
    preview that takes a name still being typed). A ValueError is shown as gr.Error, and every message and text
    output names the studio's folders as the user knows them, never by server path. `gpu` puts the event in the one
    GPU queue slot, and runs it holding the device's claim (studio.gpu.device_turn): while a job holds the device it
    waits in the queue, or runs on the CPU when the user chose so, and says which.
    """
    inputs, outputs = inputs or {}, outputs or {}
    checks = {name: ctx.names[id(w)] for name, w in inputs.items() if checked and id(w) in ctx.names}
    texts = {name for name, w in outputs.items() if isinstance(w, (gr.Markdown, gr.Textbox))}
    turn = (api_name if isinstance(api_name, str) else fn.__name__) if gpu else ""
    return event(_callback(ctx, fn, list(inputs), list(outputs), checks, texts, turn), list(inputs.values()),
                 list(outputs.values()), api_name=api_name, **(GPU_QUEUE if gpu else {}), **event_kwargs)


def _callback(ctx: TabContext, fn: Callable, names: list[str], out_names: list[str], checks: dict,
              texts: set[str], turn: str = "") -> Callable:
    wants = inspect.signature(fn).parameters

    def call(*args):
        # gradio passes the widget values, then the Request and the Progress its signature (below) asks for
        values, request, progress = args[:len(names)], *(list(args[len(names):]) + [None, gr.Progress()])[:2]
        extras = {k: x for k, x in (("request", request), ("progress", progress)) if k in wants}
        v = SimpleNamespace(**dict(zip(names, values)))
        now = ctx  # the session's context once its user is known (every name below is looked up as theirs)
        try:
            now = ctx.for_session(request)
            for name, (kind, also) in checks.items():
                check_listed(now.studio, kind, getattr(v, name), name, also)
            if turn:
                with device_turn(now.studio, turn, progress=progress_fn(progress)) as held:
                    result = fn(now, v, **extras)
                if held.note:
                    gr.Info(held.note)
            else:
                result = fn(now, v, **extras)
        except ValueError as e:  # bad input: the user sees why; the server log needs no stack trace for it
            raise gr.Error(shown_text(now.studio.settings, str(e)), print_exception=False) from e
        except Cancelled as e:  # the user pressed Stop: said as news, not as an error; the outputs stay as they were
            gr.Info(shown_text(now.studio.settings, str(e)))
            result = {}
        if not out_names:
            return None
        if not isinstance(result, dict) or set(result) - set(out_names):
            raise TypeError(f"{fn.__name__} must return a dict with keys among {out_names}, not {result!r:.200}")
        values = [shown_value(now.studio.settings, result[name]) if name in texts and name in result
                  else result.get(name, gr.skip()) for name in out_names]
        return values[0] if len(values) == 1 else values

    # gradio reads parameter names (the API's) and the Request/Progress parameters from the signature. Each defaults
    # to None, so an API call may leave out any of them (gradio_client sends the widget's starting value; the
    # callback takes None as the request's default).
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None) for n in names]
    params += [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                 annotation=gr.Request),
               inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())]
    call.__signature__ = inspect.Signature(params)
    call.__annotations__ = {"request": gr.Request}
    call.__name__ = call.__qualname__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


def progress_fn(progress) -> Callable[[float, str], None]:
    """The studio's progress(fraction, message) on a gradio Progress bar."""
    return lambda fraction, message: progress(fraction, desc=message)


# ---- choices every tab lists ---------------------------------------------------------------------------------------

def model_choices(studio) -> list:
    """Base models to pick from: the studio's default first (shown by its name, chosen as DEFAULT_MODEL), then what
    the store lists."""
    return [(f"{model_name(studio, studio.store.default_model)} {DEFAULT_MODEL}", DEFAULT_MODEL),
            *studio.store.list_models().base]



def model_hints(studio, value: str | None) -> dict:
    """Per-model starting values where the family's do not fit ("prompt", "cfg", "animal_prompt"), e.g.
    builtin:pocket's shape prompts at CFG 4; {} for the rest."""
    from studio.models.builtin import HINTS

    model = chosen_model(value) or studio.store.default_model
    return dict(HINTS.get(model.split(":", 1)[1], {})) if model.startswith("builtin:") else {}


def chosen_model(value: str | None) -> str:
    """A model picked in a dropdown as a model id ("" for the studio's default)."""
    value = (value or "").strip()
    return "" if value == DEFAULT_MODEL else value


FAMILY_SAMPLER = "(the model's default)"  # a sampler choice meaning: Euler a, or Euler for FLUX.1


def sampler_choices() -> list[str]:
    """Every sampler name of every family, after FAMILY_SAMPLER, for forms whose models are not known yet."""
    from studio.generate.samplers import all_samplers

    return [FAMILY_SAMPLER, *all_samplers()]


def picked_model(studio, value: str | None):
    """The ModelRef of the model picked in a dropdown, or None when it cannot be told yet (an unknown name is said
    when a job runs, not while the user is still typing)."""
    try:
        return studio.store.resolve(chosen_model(value) or studio.store.default_model)
    except (ValueError, OSError):
        return None


def sampling_updates(studio, value: str | None, sampler: str | None) -> dict:
    """The sampling widgets for the picked model: its family's samplers (after FAMILY_SAMPLER), keeping the chosen
    one where the family has it, else the family's default; its CFG scale (FLUX.1 1, SD 7, builtin:pocket 4) and
    steps (a step-distilled model's: Z-Image Turbo 9, FLUX.2 klein 4);
    "guidance" is "dev" for a model with a distilled-guidance input (FLUX.1-dev), "schnell" for one of such a family
    without, else None."""
    ref = picked_model(studio, value)
    if ref is None or ref.family is None:
        return {}
    family = ref.family
    names = [FAMILY_SAMPLER, *family.samplers]
    guidance = None
    if family.guidance == "distilled":
        guidance = "dev" if studio.store.takes_distilled_guidance(ref) else "schnell"
    defaults = family.generation_defaults(studio.store, ref)
    updates = {"sampler": gr.update(choices=names), "guidance": guidance, "steps": defaults["steps"],
               "cfg": model_hints(studio, value).get("cfg", defaults["cfg"])}
    if sampler not in names:
        updates.update(sampler=gr.update(choices=names, value=FAMILY_SAMPLER))
    return updates


def lora_names(studio) -> list[str]:
    return [p.stem for p in studio.store.list_models().lora]


def embedding_names(studio) -> list[str]:
    return [p.stem for p in studio.store.list_models().embeddings]


def upscaler_choices(studio) -> list[str]:
    """Upscalers to pick from: Lanczos (always), then the models in models/upscale/ by file stem."""
    from studio.generate.upscale import LANCZOS

    return list(dict.fromkeys([LANCZOS, *(p.stem for p in studio.store.list_models().upscale)]))


def dataset_names(studio) -> list[str]:
    """Every dataset under workspace/datasets/ (prepared ones and plain folders of pictures), as each tab lists them."""
    from studio.data import list_datasets

    return [d.name for d in list_datasets(studio.settings)]


def table_rows(table) -> list[list]:
    """A gr.Dataframe's value (a pandas DataFrame, or a list of rows from the API) as a list of rows."""
    if table is None:
        return []
    return table.values.tolist() if hasattr(table, "values") else list(table)


def number(value: float | None, digits: int = 3):
    """A number for a table cell: rounded, or "" when there is none."""
    return "" if value is None else round(value, digits)
