"""The evaluation's charts as PNGs, only those with something to show: seed 000's likeness charts (mean sim-score per
variant and per prompt, faces not found) when pictures had faces, CLIP score per variant, and for builtin:pocket
what the checker saw drawn and how often that was what the prompt asked for.

matplotlib's object API (Figure + the Agg canvas), imported when a chart is drawn: no pyplot, so no global backend
state and no display is needed, and charts drawn from two threads never share a figure.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from studio.evaluate.scoring import GroupSummary
from studio.fileio import atomic_path

SIM_PER_VARIANT = "chart_sim_per_variant.png"
SIM_PER_PROMPT = "chart_sim_per_prompt.png"
NO_FACE_PER_PROMPT = "chart_no_face_per_prompt.png"
CLIP_PER_VARIANT = "chart_clip_per_variant.png"
CHECKER_AS_ASKED = "chart_checker_as_asked.png"
CHECKER_DRAWN = "chart_checker_drawn.png"
TITLES = {SIM_PER_VARIANT: "mean sim-score per variant", SIM_PER_PROMPT: "mean sim-score per prompt",
          NO_FACE_PER_PROMPT: "faces not found per prompt", CLIP_PER_VARIANT: "CLIP score per variant",
          CHECKER_AS_ASKED: "drawn as the prompt asks (pocket checker)",
          CHECKER_DRAWN: "what was drawn (pocket checker)"}
DPI = 100
FONT = 11


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    # bbox "tight" grows the picture to every label and legend, so nothing is cut off whatever the text lengths.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.35)  # room for the viewer's buttons


def _short(text: str, limit: int = 22, lines: int = 3) -> str:
    wrapped = textwrap.wrap(text, limit)
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][:limit - 1] + "…"
    return "\n".join(wrapped)


def _bars(ax, labels: list[str], values: list[float | None], digits: int, missing: str) -> None:
    """One bar per label, its value written on it; a missing value is an empty slot marked `missing`."""
    heights = [v if v is not None else 0.0 for v in values]
    bars = ax.bar(range(len(labels)), heights, color=[f"C{i % 10}" for i in range(len(labels))])
    for bar, value in zip(bars, values):
        text = missing if value is None else f"{value:.{digits}f}"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=FONT - 1, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(labels)), [_short(v, 16, 2) for v in labels], fontsize=FONT)
    ax.margins(y=0.15)


def _grouped(ax, prompts: list[str], variants: list[str], value, text=None, prompt_label=None) -> None:
    """Bars grouped by prompt, one colour per variant; `value(prompt, variant)` gives the height (None: no bar) and
    `text(prompt, variant)` what is written on it."""
    width = 0.8 / len(variants)
    for j, variant in enumerate(variants):
        xs = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(prompts))]
        heights = [value(p, variant) for p in prompts]
        bars = ax.bar(xs, [h if h is not None else 0.0 for h in heights], width, label=variant, color=f"C{j % 10}")
        if text is not None:
            for bar, p in zip(bars, prompts):
                ax.annotate(text(p, variant), (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=FONT - 2, xytext=(0, 2), textcoords="offset points")
    labels = [prompt_label(p) if prompt_label else _short(p) for p in prompts]
    ax.set_xticks(range(len(prompts)), labels, fontsize=FONT - 1)
    ax.legend(fontsize=FONT - 1, title="variant", title_fontsize=FONT - 1, loc="upper left", bbox_to_anchor=(1.01, 1))


def _width(groups: int, per_group: int) -> float:
    """Inches: room for each group's bars and its wrapped label, never narrower than 7."""
    return max(7.0, min(16.0, 2.0 + groups * max(1.6, 0.45 * per_group)))


def write_charts(folder: Path, by_variant: list[GroupSummary], by_prompt: list[GroupSummary], tolerance: float, *,
                 likeness: bool = True, clip: bool = False, checker: bool = False,
                 asked: dict[str, str] | None = None, label_order: tuple[str, ...] = ()) -> list[str]:
    """Write the charts that have data into `folder`; return their file names. `asked` maps a prompt to what it asks
    the checker for ("red star"), written under the prompt; `label_order`: every label the checker knows, so a label
    keeps its colour from one evaluation to the next."""
    variants = [s.variant for s in by_variant]
    prompts = list(dict.fromkeys(s.prompt for s in by_prompt))
    cell = {(s.prompt, s.variant): s for s in by_prompt}
    faces = sum(s.faces for s in by_variant)
    written = []

    def draw(name: str, width: float, height: float, paint) -> None:
        fig = _figure(width, height)
        paint(fig)
        _save(fig, folder / name)
        written.append(name)

    # 1. Likeness (seed 000's three charts), only when some picture had a face to score
    if likeness and faces:
        def sim_per_variant(fig):
            ax = fig.add_subplot()
            _bars(ax, variants, [s.mean_sim for s in by_variant], 4, "no face")
            ax.axhline(tolerance, color="0.3", linestyle="--", linewidth=1, label=f"same person at <= {tolerance:g}")
            ax.set_ylabel("mean sim-score (lower is more alike)", fontsize=FONT)
            ax.set_title("Mean sim-score per variant (pictures with a face)", fontsize=FONT + 1)
            ax.legend(fontsize=FONT - 1)

        def sim_per_prompt(fig):
            ax = fig.add_subplot()
            _grouped(ax, prompts, variants, lambda p, v: cell[(p, v)].mean_sim,
                     lambda p, v: "no face" if cell[(p, v)].mean_sim is None else f"{cell[(p, v)].mean_sim:.3f}")
            ax.axhline(tolerance, color="0.3", linestyle="--", linewidth=1)
            ax.set_ylabel("mean sim-score (lower is more alike)", fontsize=FONT)
            ax.set_title("Mean sim-score per prompt", fontsize=FONT + 1)
            ax.margins(y=0.15)

        def no_face_per_prompt(fig):
            ax = fig.add_subplot()
            _grouped(ax, prompts, variants, lambda p, v: cell[(p, v)].no_face)
            most = max((s.images for s in by_prompt), default=1)
            ax.set_ylim(0, max(most, 1) * 1.05)
            ax.set_ylabel(f"pictures with no face found (of {most})", fontsize=FONT)
            ax.yaxis.get_major_locator().set_params(integer=True)
            ax.set_title("Faces not found per prompt", fontsize=FONT + 1)

        draw(SIM_PER_VARIANT, _width(len(variants), 1), 4.5, sim_per_variant)
        draw(SIM_PER_PROMPT, _width(len(prompts), len(variants)), 4.8, sim_per_prompt)
        draw(NO_FACE_PER_PROMPT, _width(len(prompts), len(variants)), 4.8, no_face_per_prompt)

    # 2. The pocket checker: how often the picture is what the prompt asks, then every label it saw
    if checker:
        scored = [p for p in prompts if any(cell[(p, v)].asked for v in variants)]

        def label(p: str) -> str:
            return f"{_short(p)}\n(asks: {asked[p]})" if asked and asked.get(p) else _short(p)

        def as_asked(fig):
            ax = fig.add_subplot()
            _grouped(ax, scored, variants, lambda p, v: cell[(p, v)].as_asked / cell[(p, v)].asked,
                     lambda p, v: f"{cell[(p, v)].as_asked}/{cell[(p, v)].asked}", label)
            ax.set_ylim(0, 1.12)
            ax.set_ylabel("share of pictures drawn as asked", fontsize=FONT)
            ax.set_title("Drawn as the prompt asks: the shape (and colour, where named), by the pocket checker",
                         fontsize=FONT + 1)

        if scored:
            draw(CHECKER_AS_ASKED, _width(len(scored), len(variants)), 4.8, as_asked)
        draw(CHECKER_DRAWN, *_drawn_size(len(prompts), len(variants)),
             lambda fig: _drawn_chart(fig, prompts, variants, cell, label, label_order))

    # 3. CLIP score per variant
    if clip:
        def clip_per_variant(fig):
            ax = fig.add_subplot()
            _bars(ax, variants, [s.mean_clip for s in by_variant], 2, "-")
            ax.set_ylabel("mean CLIP score (0-100, higher follows the prompt)", fontsize=FONT)
            ax.set_title("CLIP score per variant", fontsize=FONT + 1)

        draw(CLIP_PER_VARIANT, _width(len(variants), 1), 4.5, clip_per_variant)
    return written


_PER_ROW = 4  # prompts side by side in the "what was drawn" chart


def _drawn_size(prompts: int, variants: int) -> tuple[float, float]:
    columns = min(prompts, _PER_ROW)
    return max(7.0, 1.2 + columns * max(2.4, 0.7 * variants)), 3.6 * math.ceil(prompts / _PER_ROW) + 1.2


def _drawn_chart(fig, prompts: list[str], variants: list[str], cell: dict, label, label_order: tuple[str, ...]) -> None:
    """One panel per prompt: a stacked bar per variant of how many pictures the checker saw as each label."""
    order = {name: i for i, name in enumerate(label_order)}  # one colour per label in every evaluation
    labels = sorted({name for s in cell.values() for name in s.drawn}, key=lambda n: (order.get(n, len(order)), n))
    colors = {name: f"C{order.get(name, len(order) + i) % 10}" for i, name in enumerate(labels)}
    most = max((s.images for s in cell.values()), default=1)
    axes = fig.subplots(math.ceil(len(prompts) / _PER_ROW), min(len(prompts), _PER_ROW), squeeze=False,
                        sharey=True)
    for k, ax in enumerate(axes.flat):
        if k >= len(prompts):
            ax.set_visible(False)
            continue
        prompt = prompts[k]
        bottoms = [0] * len(variants)
        for name in labels:
            counts = [cell[(prompt, v)].drawn.get(name, 0) for v in variants]
            ax.bar(range(len(variants)), counts, 0.6, bottom=bottoms, color=colors[name],
                   label=name if k == 0 else None)
            for j, n in enumerate(counts):
                if n:
                    ax.text(j, bottoms[j] + n / 2, str(n), ha="center", va="center", fontsize=FONT - 2, color="white")
            bottoms = [b + n for b, n in zip(bottoms, counts)]
        ax.set_xticks(range(len(variants)), [_short(v, 12, 2) for v in variants], fontsize=FONT - 1)
        ax.set_title(label(prompt), fontsize=FONT - 1)
        ax.set_ylim(0, most)
        ax.yaxis.get_major_locator().set_params(integer=True)
    axes.flat[0].set_ylabel(f"pictures (of {most})", fontsize=FONT)
    fig.suptitle("What was drawn, per prompt and variant (pocket checker)", fontsize=FONT + 1)
    fig.legend(title="the checker sees", fontsize=FONT - 1, title_fontsize=FONT - 1, loc="outside lower center",
               ncols=min(len(labels), 6))
