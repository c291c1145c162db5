"""The studio's line charts, made one way for every tab: numbers plotted as numbers (a quantitative axis, not one
label per value), points in order, and every line its own colour.

    LOSS = LineChart("step", "loss", color="cell", title="Loss per cell")
    plot = LOSS.widget(height=300)                    # in the layout; starts as an empty chart with numeric axes
    return {"loss": LOSS.value(rows)}                 # rows: (step, loss, cell) tuples, from a callback

Why a helper: gradio's plot builds its chart (axis types, the colours' domain) from the first value it receives and
afterwards only swaps the data. A first value with an untyped column (an empty frame: object dtype) or numbers as
text fixes a categorical axis for good (a growing count drawn upside down, ticks evenly spaced), and lines whose
colour value was not in the first value are not drawn. So the data are typed before they are sent, and a chart with
colours is sent with a colour for each line: a new line changes that map, which makes gradio build the chart again.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

# Distinct colours for a chart's lines, in order of their first appearance (then repeated)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


@dataclass(frozen=True)
class LineChart:
    """A line chart of `y` against `x` (both numbers), one line per value of `color` when given."""

    x: str
    y: str
    color: str | None = None
    title: str = ""

    @property
    def columns(self) -> list[str]:
        return [self.x, self.y, *([self.color] if self.color else [])]

    def widget(self, **options) -> gr.LinePlot:
        """The chart's widget (`options`: height, scale, visible...), starting empty with numeric axes."""
        return gr.LinePlot(self.data([]), x=self.x, y=self.y, color=self.color, title=self.title or None, **options)

    def data(self, rows):
        """`rows` (tuples in the order x, y[, color]) as the frame the chart plots: x and y as numbers (a row whose x
        or y is not a number is left out), colours as text, sorted by line then x."""
        import pandas as pd

        frame = pd.DataFrame(list(rows), columns=self.columns)
        for name in (self.x, self.y):
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
        frame = frame.dropna(subset=[self.x, self.y])
        if self.color:
            frame[self.color] = frame[self.color].astype(str)
        by = [self.color, self.x] if self.color else [self.x]
        return frame.sort_values(by, kind="stable").reset_index(drop=True)

    def colors(self, frame) -> dict[str, str]:
        """A colour for each line, in order of first appearance."""
        names = list(dict.fromkeys(frame[self.color])) if self.color else []
        return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}

    def value(self, rows, **update):
        """What a callback returns for the chart: the frame, or (with colours, or `update`: visible=...) an update
        holding it and the colour of each line."""
        frame = self.data(rows)
        if not self.color and not update:
            return frame
        if self.color:
            update["color_map"] = self.colors(frame)
        return gr.update(value=frame, **update)
