"""Seed 000's charts as PNGs: mean sim-score per variant and per prompt, faces not found, CLIP score per variant.

matplotlib's object API (Figure + the Agg canvas), imported when a chart is drawn: no pyplot, so no global backend
state and no display is needed, and charts drawn from two threads never share a figure.
"""

from __future__ import annotations

from pathlib import Path

from studio.evaluate.scoring import GroupSummary
from studio.fileio import atomic_path

SIM_PER_VARIANT = "chart_sim_per_variant.png"
SIM_PER_PROMPT = "chart_sim_per_prompt.png"
NO_FACE_PER_PROMPT = "chart_no_face_per_prompt.png"
CLIP_PER_VARIANT = "chart_clip_per_variant.png"


def _figure(width: float = 7.0, height: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _bars(ax, labels: list[str], values: list[float | None], digits: int) -> None:
    """One bar per label; a missing value (no face at all) is drawn as an empty slot marked 'no face'."""
    heights = [v if v is not None else 0.0 for v in values]
    bars = ax.bar(range(len(labels)), heights, color=[f"C{i % 10}" for i in range(len(labels))])
    for bar, value in zip(bars, values):
        text = "no face" if value is None else f"{value:.{digits}f}"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=9, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(labels)), labels, rotation=15 if len(labels) > 4 else 0)


def _grouped(ax, prompts: list[str], variants: list[str], value) -> None:
    """Bars grouped by prompt, one colour per variant; `value(prompt, variant)` gives the height (None: no bar)."""
    width = 0.8 / len(variants)
    for j, variant in enumerate(variants):
        xs = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(prompts))]
        heights = [value(p, variant) for p in prompts]
        ax.bar(xs, [h if h is not None else 0.0 for h in heights], width, label=variant, color=f"C{j % 10}")
    ax.set_xticks(range(len(prompts)), [_short(p) for p in prompts], fontsize=8)
    ax.legend(fontsize=8)


def _short(prompt: str, limit: int = 24) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(prompt, limit)[:3])


def write_charts(folder: Path, by_variant: list[GroupSummary], by_prompt: list[GroupSummary],
                 tolerance: float, with_clip: bool) -> list[str]:
    """Write the charts into `folder`; return their file names (the CLIP chart only when there are CLIP scores)."""
    variants = [s.variant for s in by_variant]
    prompts = list(dict.fromkeys(s.prompt for s in by_prompt))
    cell = {(s.prompt, s.variant): s for s in by_prompt}
    written = []

    # 1. Mean sim-score per variant, with the tolerance line (seed 000's "Group Sim Scores for all Prompts")
    fig = _figure()
    ax = fig.add_subplot()
    _bars(ax, variants, [s.mean_sim for s in by_variant], 4)
    ax.axhline(tolerance, color="0.3", linestyle="--", linewidth=1, label=f"same person at <= {tolerance:g}")
    ax.set_ylabel("mean sim-score (lower is more alike)")
    ax.set_title("Mean sim-score per variant (images with a face)")
    ax.legend(fontsize=8)
    _save(fig, folder / SIM_PER_VARIANT)
    written.append(SIM_PER_VARIANT)

    # 2. Mean sim-score per prompt per variant ("average sim score per prompt")
    fig = _figure(8.0)
    ax = fig.add_subplot()
    _grouped(ax, prompts, variants, lambda p, v: cell[(p, v)].mean_sim)
    ax.axhline(tolerance, color="0.3", linestyle="--", linewidth=1)
    ax.set_ylabel("mean sim-score (lower is more alike)")
    ax.set_title("Mean sim-score per prompt (a missing bar: no face found)")
    _save(fig, folder / SIM_PER_PROMPT)
    written.append(SIM_PER_PROMPT)

    # 3. Faces not found per prompt per variant ("Total Faces Not Found per Prompt")
    fig = _figure(8.0)
    ax = fig.add_subplot()
    _grouped(ax, prompts, variants, lambda p, v: cell[(p, v)].no_face)
    most = max((s.images for s in by_prompt), default=1)
    ax.set_ylim(0, max(most, 1))
    ax.set_ylabel(f"images with no face found (of {most})")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Faces not found per prompt")
    _save(fig, folder / NO_FACE_PER_PROMPT)
    written.append(NO_FACE_PER_PROMPT)

    # 4. Mean CLIP score per variant
    if with_clip:
        fig = _figure()
        ax = fig.add_subplot()
        _bars(ax, variants, [s.mean_clip for s in by_variant], 2)
        ax.set_ylabel("mean CLIP score (0-100, higher follows the prompt better)")
        ax.set_title("CLIP score per variant")
        _save(fig, folder / CLIP_PER_VARIANT)
        written.append(CLIP_PER_VARIANT)
    return written
