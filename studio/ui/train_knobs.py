"""The Train tab's form: RunConfig's declared settings as widgets (the first rows by hand, the Settings accordion one
row per group, every advanced setting in it), and the widgets' values back to a checked RunConfig (also the Sweep
accordion's)."""

from __future__ import annotations

from studio.fields import declared
from studio.train.config import RunConfig
from studio.ui.forms import Form, request_from_values
from studio.ui.names import check_listed

DEFAULTS = RunConfig(name="x", dataset="x")
# The settings in the Settings accordion: every advanced one, in RunConfig's order (rows by group)
KNOBS = tuple(name for name, s in declared(RunConfig).items() if s.advanced)


def knobs(form: Form) -> None:
    """The Settings accordion's widgets: one row per group of RunConfig's advanced settings."""
    form.rows(KNOBS)


def checked_subjects(studio, config: RunConfig) -> RunConfig:
    """`config`, once each extra subject's dataset is one the studio lists."""
    for subject in config.extra_subjects:
        check_listed(studio, "dataset", subject.dataset, "extra_subjects")
    return config


def config_from_widgets(values: dict) -> RunConfig:
    """/train_start's inputs (RunConfig's settings by name) -> a checked RunConfig: the conversion every form, flag
    and API call goes through (numbers from gradio may arrive as floats, a setting left out as None)."""
    return request_from_values(RunConfig, values).check()
