"""The Train tab's form: RunConfig's declared settings as widgets (the basic ones first, the advanced ones in an
accordion, one row per group), which of them apply to the method and model family picked, and the widgets' values
back to a checked RunConfig (also the Sweep accordion's)."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr

from studio.fields import declared
from studio.train.config import RunConfig
from studio.ui.forms import Form, request_from_values
from studio.ui.names import check_listed

DEFAULTS = RunConfig(name="x", dataset="x")
SETTINGS = declared(RunConfig)
# The first rows, laid out by the tab itself (what to train, and what to call it)
FIRST = ("dataset", "model", "method", "name", "trigger", "validation_prompts")
# The basic settings (shown under the first rows) and the advanced ones (the Advanced accordion), in RunConfig's order
BASIC = tuple(name for name, s in SETTINGS.items() if not s.advanced and name not in FIRST)
KNOBS = tuple(name for name, s in SETTINGS.items() if s.advanced)
# The settings that apply to some methods or model families only: shown when they apply
CONDITIONAL = tuple(name for name, s in SETTINGS.items() if s.methods or s.family_option)


ROW = 5  # widgets a row at most: more squeeze their labels


def rows() -> list[tuple[str, ...]]:
    """The Advanced accordion's rows: each group's settings, ROW a row at most, in RunConfig's order."""
    groups: dict[str, list[str]] = {}
    for name in KNOBS:
        groups.setdefault(SETTINGS[name].group, []).append(name)
    return [tuple(names[i:i + ROW]) for names in groups.values() for i in range(0, len(names), ROW)]


def knobs(form: Form, method: str | None, family) -> list:
    """The basic settings in one row, then the Advanced accordion: rows of the advanced settings by group; those
    that do not apply to `method` on `family` hidden (a row of none of them too). Returns the accordion's rows."""
    visible = shown(method, family)
    with gr.Row():
        for name in BASIC:
            form.widget(name, visible=visible.get(name, True))
    made = []
    with gr.Accordion("Advanced settings (only those that apply to the method and base model picked)", open=False):
        for names in rows():
            with gr.Row(visible=any(visible.get(name, True) for name in names)) as row:
                for name in names:
                    form.widget(name, visible=visible.get(name, True))
            made.append(row)
    return made


def applies(name: str, method: str | None, family) -> bool:
    """Whether setting `name` applies to a run of `method` on a model of `family` (None: not known yet, so every
    family's settings apply)."""
    s = SETTINGS[name]
    if s.methods and method and method not in s.methods:
        return False
    return not s.family_option or family is None or name in family.training_options


def shown(method: str | None, family) -> dict[str, bool]:
    """For each conditional setting: whether its widget shows for `method` on `family`."""
    return {name: applies(name, method, family) for name in CONDITIONAL}


def rows_shown(method: str | None, family) -> list[bool]:
    """For each of the Advanced accordion's rows: whether any of its settings shows."""
    return [any(applies(name, method, family) for name in names) for names in rows()]


def checked_subjects(studio, config: RunConfig) -> RunConfig:
    """`config`, once each extra subject's dataset is one the studio lists."""
    for subject in config.extra_subjects:
        check_listed(studio, "dataset", subject.dataset, "extra_subjects")
    return config


def planned_config(values: dict) -> RunConfig:
    """The form's settings as the memory plan takes them: a run name and dataset not chosen yet stand in."""
    config = request_from_values(RunConfig, values)
    return replace(config, name=config.name or "plan", dataset=config.dataset or "plan").check()


def config_from_widgets(values: dict) -> RunConfig:
    """/train_start's inputs (RunConfig's settings by name) -> a checked RunConfig: the conversion every form, flag
    and API call goes through (numbers from gradio may arrive as floats, a setting left out as None)."""
    return request_from_values(RunConfig, values).check()
