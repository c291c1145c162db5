"""The one chart helper every tab's line charts go through: numbers plotted on numeric axes (what gradio's plot is
sent, read as the browser reads it), in order, and a colour for every line."""

from __future__ import annotations

import numpy as np


def _sent(chart, value):
    """What gradio sends the browser for `value` (a frame or an update holding one): columns, rows, axis types."""
    import gradio as gr

    frame = value["value"] if isinstance(value, dict) else value
    plot = gr.LinePlot(x=chart.x, y=chart.y, color=chart.color).postprocess(frame)
    return plot.columns, plot.data, plot.datatypes


def test_numbers_are_numeric_axes_in_order():
    from studio.ui.charts import LineChart

    chart = LineChart("candidate", "group size")
    # unsorted candidates, sizes as numpy ints and as text (a value read back from json or a table)
    columns, data, types = _sent(chart, chart.value([(12, "3"), (0, np.int64(1)), (5, 2), (1, 1)]))
    assert types == {"candidate": "quantitative", "group size": "quantitative"}
    assert data == [[0, 1], [1, 1], [5, 2], [12, 3]]


def test_an_empty_chart_already_has_numeric_axes():
    """gradio builds its chart from the first value it gets: an empty one must not fix categorical axes."""
    from studio.ui.charts import LineChart

    chart = LineChart("step", "loss", color="cell")
    _, data, types = _sent(chart, chart.value([]))
    assert data == [] and types["step"] == types["loss"] == "quantitative"
    assert chart.widget().value["datatypes"]["loss"] == "quantitative"  # the widget starts that way too


def test_lines_are_sorted_by_line_then_x_and_each_has_a_colour():
    from studio.ui.charts import PALETTE, LineChart

    chart = LineChart("step", "loss", color="cell")
    rows = [(2, 0.5, "c02"), (1, 0.9, "c01"), (3, "0.2", "c01"), (1, 0.8, "c02"), (2, None, "c01")]
    value = chart.value(rows)
    columns, data, types = _sent(chart, value)
    assert data == [[1, 0.9, "c01"], [3, 0.2, "c01"], [1, 0.8, "c02"], [2, 0.5, "c02"]]  # no loss: left out
    assert types == {"step": "quantitative", "loss": "quantitative", "cell": "nominal"}
    # a new line changes the colour map, which makes gradio build the chart (and its colours' domain) again
    assert value["color_map"] == {"c01": PALETTE[0], "c02": PALETTE[1]}
    assert chart.value([*rows, (1, 0.7, "c03")])["color_map"]["c03"] == PALETTE[2]
