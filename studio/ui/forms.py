"""A request's form, made from its declared settings (studio.fields): each widget with the setting's label, help,
choices and default, named by its field, so the endpoint bound to the form takes the request's field names (the API by
keyword: a parameter left out takes the value the widget starts with, the request's default); and the widgets'
values back to the request, through the one conversion flags and API calls go through (a tab's own widgets, such as
a table of LoRAs or a painter, are turned into the field's value by its callback first).

    form = Form(ctx, GenerationRequest)
    prompt = form.widget("prompt", lines=3)          # placed where the tab's layout wants it
    form.put("loras", table)                         # a widget of the tab's own (a table), named by its field
    form.rest()                                      # every setting not placed yet, by group: a new one shows
    bind(ctx, button.click, run, form.inputs, ...)   # v.prompt, v.steps, ...; form.request(v) -> GenerationRequest
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from typing import Callable

import gradio as gr

from studio import fields
from studio.ui.common import (DEFAULT_MODEL, FAMILY_SAMPLER, dataset_names, embedding_names, lora_names, model_choices,
                              sampler_choices, upscaler_choices)
from studio.ui.names import listed


@dataclass(frozen=True)
class NameChoices:
    """The dropdown of a setting that names something the studio lists: its choices now, and the choice (if any)
    that stands for the setting's default."""

    choices: Callable  # studio -> choices
    default_choice: str | None = None
    listed: bool = True  # checked against the studio's lists for every event (studio.ui.names); samplers by name
    help: str = ""  # what the web form says of it in place of the setting's help (which may offer paths or hub ids)


def style_names(studio) -> list[str]:
    from studio.generate.styles import list_styles

    return [s.name for s in list_styles(studio.settings)]


def _run_names(studio) -> list[str]:
    from studio.train import list_runs

    return ["", *(r.name for r in list_runs(studio))]


NAME_CHOICES = {
    "base model": NameChoices(model_choices, DEFAULT_MODEL,
                              help="the builtin models and those in models/base/ (put a .safetensors file or a "
                                   "diffusers folder there, then Refresh)"),
    "dataset": NameChoices(dataset_names),
    "LoRA": NameChoices(lora_names),
    "embedding": NameChoices(embedding_names),
    "upscaler": NameChoices(upscaler_choices),
    "run": NameChoices(_run_names),
    "sampler": NameChoices(lambda studio: sampler_choices(), FAMILY_SAMPLER, listed=False),
    "style": NameChoices(style_names, listed=False),  # (generate says which name is no saved style)
}


class Form:
    """The widgets of one request class's settings, by field name, in the order they were made."""

    def __init__(self, ctx, cls, start=None, prefix: str = ""):
        self.ctx, self.cls, self.prefix = ctx, cls, prefix  # prefix: the endpoint names "<prefix><field>"
        self.settings = fields.declared(cls)
        self.kinds = fields.kinds(cls)
        self._start = start  # an instance whose values the widgets start with (default: the declared defaults)
        self.inputs: dict = {}

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
        named = NAME_CHOICES.get(s.names)
        if named is not None and named.help:
            options.setdefault("info", named.help)
        elif s.help:
            options.setdefault("info", s.help)
        value = options.pop("value", self.start(name))
        if s.names in NAME_CHOICES and component is None:
            return self._named(name, s, value, options)
        if component is None:
            component = self._component(s, kind)
        if s.choices and "choices" not in options and component in (gr.Dropdown, gr.Radio):
            options["choices"] = list(s.choices)
        if component is gr.Dropdown:  # any value reaches the conversion, whose error names the setting
            options.setdefault("allow_custom_value", True)
        if component is gr.Slider and s.span:
            options.update(zip(("minimum", "maximum", "step"), s.span))
        if component is gr.Number and kind.base is int:  # whole steps, but a fraction reaches the conversion, which
            options.setdefault("step", 1)               # names it (gradio's precision=0 would round it silently)
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
        value = _named_value(self.cls, name, value)
        options.setdefault("choices", named.choices(self.ctx.studio))
        options.setdefault("allow_custom_value", True)  # checked by the studio (listed), or by the request
        made = gr.Dropdown(value=value, multiselect=many or None, **options)
        if named.listed:
            also = () if named.default_choice is None else (named.default_choice,)
            made = listed(self.ctx, made, s.names, *also)
        return self.put(name, made)

    def put(self, name: str, widget):
        """Use `widget` (made by the tab: a table, a painter, a widget another form has) for field `name`."""
        if name not in self.settings:
            raise KeyError(f"{self.cls.__name__} has no setting {name!r}")
        self.inputs[self.prefix + name] = widget
        return widget

    def rows(self, names, **options) -> None:
        """Make the widgets of `names` (not made yet) in rows, one row per group, in the order of the groups' first
        fields."""
        groups: dict[str, list[str]] = {}
        for name in names:
            if self.prefix + name not in self.inputs:
                groups.setdefault(self.settings[name].group, []).append(name)
        for group in groups.values():
            with gr.Row():
                for name in group:
                    self.widget(name, **options)

    def missing(self, skip=()) -> list[str]:
        """The settings with no widget yet (but `skip`, and those given with another field's widget)."""
        return [n for n, s in self.settings.items()
                if self.prefix + n not in self.inputs and n not in skip and not s.shown_with]

    def values(self, given: dict) -> dict:
        """This form's settings by field name, out of an endpoint's values by parameter name."""
        return {n: given[self.prefix + n] for n in self.settings if self.prefix + n in given}

    def rest(self, skip=(), title: str = "More settings") -> None:
        """Every setting not placed yet (but `skip`), in rows by group, in an accordion when there are any: a setting
        added to the request shows here (and in the endpoint) without a change to the tab."""
        names = self.missing(skip)
        if names:
            with gr.Accordion(title, open=False):
                self.rows(names)



def _named_value(cls, name: str, value):
    """A written value of a setting that names what the studio lists, as its dropdown holds it: the choice that
    stands for the default, and a list for a list field."""
    named = NAME_CHOICES[fields.declared(cls)[name].names]
    if named.default_choice is not None and value in (None, "", fields.default(cls, name)):
        value = named.default_choice
    if fields.kinds(cls)[name].many and isinstance(value, str):
        value = [x for x in value.splitlines() if x]
    return value


def widget_values(cls, request, names) -> dict:
    """The widget values that show `request` (a run picked, a configuration loaded) in a form of `cls`: by field
    name, for `names` (settings given with another field's widget are left out)."""
    settings, out = fields.declared(cls), {}
    for name in names:
        if settings[name].shown_with:
            continue
        written = fields.written(cls, name, getattr(request, name))
        out[name] = _named_value(cls, name, written) if settings[name].names in NAME_CHOICES else written
    return out


def read_values(cls, values: dict) -> dict:
    """Widget values as the settings of `cls` take them: only its settings (an endpoint's other inputs are left
    out), and a choice that stands for a setting's default ("(studio default)") as None."""
    settings = fields.declared(cls)
    out = {}
    for name, raw in values.items():
        if name not in settings:
            continue
        named = NAME_CHOICES.get(settings[name].names)
        stands_for_default = named is not None and named.default_choice is not None and raw == named.default_choice
        out[name] = None if stands_for_default else raw
    return out


def request_from_values(cls, values: dict, **fixed):
    """The `cls` request that widget values by field name make (a callback's vars(v), once its own widgets' values
    are the fields' values): the one conversion of studio.fields, which flags and API calls go through too."""
    return fields.build(cls, read_values(cls, values), **fixed)
