"""A request's form, made from its declared settings (studio.fields): each widget with the setting's label, help,
choices and default, named by its field, so the endpoint bound to the form takes the request's field names (the API by
keyword: a parameter left out takes the value the widget starts with, the request's default); and the widgets'
values back to the request, through the one conversion flags and API calls go through.

    form = Form(ctx, GenerationRequest)
    prompt = form.widget("prompt", lines=3)          # placed where the tab's layout wants it
    form.put("loras", table, read=rows_to_loras)     # a widget of the tab's own (a table), named by its field
    form.rest()                                      # every setting not placed yet, by group: a new one shows
    bind(ctx, button.click, run, form.inputs, ...)   # v.prompt, v.steps, ...; form.request(v) -> GenerationRequest
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from typing import Callable

import gradio as gr

from studio import fields
from studio.ui.common import DEFAULT_MODEL, dataset_names, embedding_names, lora_names, model_choices, upscaler_choices
from studio.ui.names import listed


@dataclass(frozen=True)
class NameChoices:
    """The dropdown of a setting that names something the studio lists: its choices now, and the choice (if any)
    that stands for the setting's default."""

    choices: Callable  # studio -> choices
    default_choice: str | None = None


def _run_names(studio) -> list[str]:
    from studio.train import list_runs

    return ["", *(r.name for r in list_runs(studio))]


NAME_CHOICES = {
    "base model": NameChoices(model_choices, DEFAULT_MODEL),
    "dataset": NameChoices(dataset_names),
    "LoRA": NameChoices(lora_names),
    "embedding": NameChoices(embedding_names),
    "upscaler": NameChoices(upscaler_choices),
    "run": NameChoices(_run_names),
}


class Form:
    """The widgets of one request class's settings, by field name, in the order they were made."""

    def __init__(self, ctx, cls, start=None):
        self.ctx, self.cls = ctx, cls
        self.settings = fields.declared(cls)
        self.kinds = fields.kinds(cls)
        self._start = start  # an instance whose values the widgets start with (default: the declared defaults)
        self.inputs: dict = {}
        self._readers: dict[str, Callable] = {}

    # ---- making widgets -----------------------------------------------------------------------------------------

    def start(self, name: str):
        """The value field `name`'s widget starts with, as the form writes it (None for a field with no default)."""
        x = getattr(self._start, name) if self._start is not None else fields.default(self.cls, name)
        return None if x is MISSING else fields.written(self.cls, name, x)

    def widget(self, name: str, component=None, **options):
        """Make field `name`'s widget from its setting (`component`: another gradio class than the one its type
        picks, such as gr.Radio for choices; `options` override what the setting says)."""
        s, kind = self.settings[name], self.kinds[name]
        options.setdefault("label", s.label)
        if s.help:
            options.setdefault("info", s.help)
        value = options.pop("value", self.start(name))
        if s.names in NAME_CHOICES and component is None:
            return self._named(name, s, value, options)
        if component is None:
            component = self._component(s, kind)
        if s.choices and "choices" not in options and component in (gr.Dropdown, gr.Radio):
            options["choices"] = list(s.choices)
        if component is gr.Slider and s.span:
            options.update(zip(("minimum", "maximum", "step"), s.span))
        if component is gr.Number and "precision" not in options:
            options["precision"] = 0 if kind.base is int else None
        if component is gr.Textbox and "lines" not in options:
            options["lines"] = max(s.lines, 2 if kind.many else 1)
        made = component(value=value, **options)
        if s.names:
            made = listed(self.ctx, made, s.names)
        return self.put(name, made)

    def _component(self, s, kind):
        if kind.base is bool and not kind.many:
            return gr.Checkbox
        if s.choices:
            return gr.Dropdown
        if kind.base in (int, float) and not kind.many:
            return gr.Slider if s.span else gr.Number
        return gr.Textbox

    def _named(self, name, s, value, options):
        """A dropdown of what the studio lists (several at once for a list field), checked by `listed`."""
        named = NAME_CHOICES[s.names]
        many = self.kinds[name].many
        if named.default_choice is not None and value in (None, "", fields.default(self.cls, name)):
            value = named.default_choice
        if many and isinstance(value, str):
            value = [x for x in value.splitlines() if x]
        options.setdefault("choices", named.choices(self.ctx.studio))
        made = gr.Dropdown(value=value, multiselect=many or None, **options)
        also = () if named.default_choice is None else (named.default_choice,)
        return self.put(name, listed(self.ctx, made, s.names, *also))

    def put(self, name: str, widget, read: Callable | None = None):
        """Use `widget` (made by the tab) for field `name`; `read` turns its value into what the field takes (a
        table's rows into LoRAs, a choice that stands for the default into None)."""
        if name not in self.settings:
            raise KeyError(f"{self.cls.__name__} has no setting {name!r}")
        self.inputs[name] = widget
        if read is not None:
            self._readers[name] = read
        return widget

    def rows(self, names, **options) -> None:
        """Make the widgets of `names` (not made yet) in rows, one row per group, in the order of the groups' first
        fields."""
        groups: dict[str, list[str]] = {}
        for name in names:
            if name not in self.inputs:
                groups.setdefault(self.settings[name].group, []).append(name)
        for group in groups.values():
            with gr.Row():
                for name in group:
                    self.widget(name, **options)

    def missing(self, skip=()) -> list[str]:
        """The settings with no widget yet (but `skip`)."""
        return [n for n in self.settings if n not in self.inputs and n not in skip]

    def rest(self, skip=(), title: str = "More settings") -> None:
        """Every setting not placed yet (but `skip`), in rows by group, in an accordion when there are any: a setting
        added to the request shows here (and in the endpoint) without a change to the tab."""
        names = self.missing(skip)
        if names:
            with gr.Accordion(title, open=False):
                self.rows(names)

    # ---- values back ----------------------------------------------------------------------------------------------

    def given(self, v, names=None) -> dict:
        """The widgets' values (a callback's `v`) by field name, as the field takes them; None keeps a default."""
        return read_values(self.cls, {name: getattr(v, name, None) for name in names or self.inputs}, self._readers)

    def request(self, v, names=None, **fixed):
        """The request the widgets' values make (see studio.fields.build); `fixed`: fields no widget gives."""
        return fields.build(self.cls, self.given(v, names), **fixed)



def read_values(cls, values: dict, readers: dict | None = None) -> dict:
    """Widget values by field name as the fields of `cls` take them: a choice that stands for a setting's default
    ("(studio default)") is None, a value of a tab's own widget goes through its reader (`readers`, by name)."""
    settings, readers = fields.declared(cls), readers or {}
    out = {}
    for name, raw in values.items():
        named = NAME_CHOICES.get(settings[name].names) if name in settings else None
        if named is not None and named.default_choice is not None and raw == named.default_choice:
            raw = None
        out[name] = readers[name](raw) if name in readers and raw is not None else raw
    return out


def request_from_values(cls, values: dict, readers: dict | None = None, **fixed):
    """The `cls` request that widget values by field name make (studio.fields.build)."""
    return fields.build(cls, read_values(cls, values, readers), **fixed)
