"""Sweeps: a grid of run settings (seed 001's lr x steps, or rank, alpha, repeats ...), planned as few runs as the
grid allows, and what each cell scored.

Cells that differ only in length share a run when the learning-rate schedule does not depend on the length
(constant, constant_with_warmup): "400, 2000, 4000, 8000 steps" is one run of 8000 steps validated at each, not four
runs. Every run validates, scores and keeps its weights at its cells' steps (RunConfig.validate_at_steps) and exports
nothing: the cell one picks is exported from its kept weights.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields, replace

from studio.fields import setting
from studio.names import check_name
from studio.train.config import RunConfig
from studio.train.presets import preset_name

LENGTH_KNOBS = ("max_steps", "epochs")
ALIASES = {"steps": "max_steps"}
LENGTH_FREE = ("constant", "constant_with_warmup")  # schedules whose step n is the same in a longer run
# What a sweep cannot vary: what names and places a run, and what the sweep itself sets
NOT_SWEPT = ("name", "dataset", "validation_prompts", "validate_at_steps", "export", "device", "model", "method")
# The run settings a sweep sets for each of its runs; the others are given once for every cell
SET_BY_SWEEP = ("name", "validate_at_steps", "export")
MAX_CELLS = 64
# A preset's grid, for presets made for a sweep: seed 001's hand-run grid
SWEEP_GRIDS = {"seed-001": {"lr": [1e-5, 1e-3], "max_steps": [400, 2000, 4000, 8000]}}
_TYPES = {f.name: f.type for f in fields(RunConfig)}


def knob_name(text: str) -> str:
    """A grid knob by RunConfig field name ("steps" is max_steps); ValueError for one a sweep cannot vary."""
    name = ALIASES.get(text.strip(), text.strip())
    if name not in _TYPES or name in NOT_SWEPT or _TYPES[name] not in ("int", "float", "str", "bool"):
        sweepable = sorted(k for k, t in _TYPES.items() if t in ("int", "float", "str", "bool") and k not in NOT_SWEPT)
        raise ValueError(f"`grid` knob {text.strip()!r} cannot be swept; the knobs are steps, "
                         f"{', '.join(sweepable)}")
    return name


def parse_value(name: str, text: str):
    kind, text = _TYPES[name], text.strip()
    try:
        if kind == "int":
            value = float(text)
            if value != int(value):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"`grid` value {text!r} of {name} is not a {'whole ' if kind == 'int' else ''}number") from None
    if kind == "bool":
        if text.lower() not in ("true", "false", "on", "off", "yes", "no", "1", "0"):
            raise ValueError(f"`grid` value {text!r} of {name} is not true or false")
        return text.lower() in ("true", "on", "yes", "1")
    return text


def parse_grid(lines: list[str]) -> dict[str, list]:
    """["lr=1e-5,1e-3", "steps=400,2000"] -> {"lr": [1e-05, 0.001], "max_steps": [400, 2000]}, in the order given."""
    grid: dict[str, list] = {}
    for line in lines:
        if not line.strip():
            continue
        if "=" not in line:
            raise ValueError(f"`grid` line {line.strip()!r} must read knob=value,value,... (e.g. lr=1e-5,1e-3)")
        key, values = line.split("=", 1)
        name = knob_name(key)
        if name in grid:
            raise ValueError(f"`grid` gives {name} twice")
        parsed = [parse_value(name, v) for v in values.split(",") if v.strip()]
        if not parsed:
            raise ValueError(f"`grid` knob {key.strip()!r} has no values")
        if len(set(map(repr, parsed))) != len(parsed):
            raise ValueError(f"`grid` knob {key.strip()!r} repeats a value: {values.strip()}")
        grid[name] = parsed
    if not grid:
        raise ValueError("`grid` is empty: give at least one knob=value,value (e.g. lr=1e-5,1e-3)")
    return grid


def grid_text(grid: dict[str, list]) -> str:
    """The grid as the lines parse_grid reads (steps for max_steps)."""
    back = {v: k for k, v in ALIASES.items()}
    return "\n".join(f"{back.get(k, k)}={','.join(format_value(v) for v in values)}" for k, values in grid.items())


def format_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def settings_label(settings: dict) -> str:
    back = {v: k for k, v in ALIASES.items()}
    return ", ".join(f"{back.get(k, k)}={format_value(v)}" for k, v in settings.items())


@dataclass
class Cell:
    id: str  # c01, c02, ... in the grid's order
    settings: dict  # knob -> value, as the grid gives them
    run: str  # the run that trains it (r01, ...)
    step: int  # the step it is scored at


@dataclass
class PlannedRun:
    id: str
    config: RunConfig  # validate_at_steps: its cells' steps; export off
    cells: list[str] = field(default_factory=list)


@dataclass
class SweepRequest:
    """What a sweep was asked: the settings every cell shares (`base`, a RunConfig whose settings the sweep's form,
    flags and endpoint take beside these; its name is the sweep's) and the grid."""

    name: str = setting(label="Sweep name", help="every cell shares the run settings; the grid varies the knobs")
    base: RunConfig  # not a setting of its own: RunConfig's settings are given beside the sweep's
    grid: dict[str, list] = setting(
        label="Grid (one knob a line)", lines=3, parse=lambda text: parse_grid(text.splitlines()), show=grid_text,
        help="knob=value,value: lr, steps, rank, alpha, repeats, batch_size, ... Cells that differ only in steps share "
             "one run (constant schedules)")
    preset: str = setting("", label="Preset", help="the preset the settings started from (its grid, for seed-001)")

    def check(self) -> "SweepRequest":
        self.name = check_name(self.name, "sweep")
        self.base = replace(self.base, name=self.name)
        self.grid = {knob_name(k): list(v) for k, v in self.grid.items()}
        cells = 1
        for values in self.grid.values():
            cells *= len(values)
        if cells > MAX_CELLS:
            raise ValueError(f"`grid` makes {cells} cells; a sweep takes at most {MAX_CELLS}")
        return self

    def cell_settings(self) -> list[dict]:
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]

    def to_json(self) -> dict:
        return {"name": self.name, "base": self.base.to_json(), "grid": self.grid, "preset": self.preset}

    @classmethod
    def from_json(cls, data: dict) -> "SweepRequest":
        return cls(data["name"], RunConfig.from_json(data["base"]), dict(data["grid"]), data.get("preset", ""))


def preset_grid(preset: str) -> dict[str, list] | None:
    """The grid a preset made for a sweep brings (None for the others)."""
    return SWEEP_GRIDS.get(preset_name(preset)) if preset else None


def plan(request: SweepRequest, steps_per_epoch) -> tuple[list[PlannedRun], list[Cell], list[str]]:
    """The runs the sweep trains, its cells (which run, at which step) and notes in words. `steps_per_epoch(config)`
    gives the optimizer steps of one epoch for a cell's settings (a length in epochs becomes steps)."""
    # 1. Each cell's settings, checked, and its length in steps
    rows = []
    for settings in request.cell_settings():
        config = replace(request.base, **settings).check()
        if "epochs" in settings:  # a length by epochs, swept, rules over the base's steps
            config = replace(config, max_steps=0)
        length = config.max_steps or steps_per_epoch(config) * config.epochs
        rows.append((settings, config, length))
    # 2. Group cells that differ only in length, when the schedule allows it
    notes, groups = [], {}
    swept_length = [k for k in request.grid if k in LENGTH_KNOBS]
    for i, (settings, config, length) in enumerate(rows):
        shared = swept_length and config.lr_scheduler in LENGTH_FREE
        key = repr(sorted((k, v) for k, v in settings.items() if k not in LENGTH_KNOBS)) if shared else f"cell-{i}"
        groups.setdefault(key, []).append(i)
    if swept_length and len(groups) == len(rows) and len(rows) > 1:
        notes.append(f"each cell is its own run: lr_scheduler {request.base.lr_scheduler!r} depends on the run's "
                     f"length (only {', '.join(LENGTH_FREE)} let cells share their first steps)")
    # 3. One run per group, as long as its longest cell, validated at each cell's step
    runs, cells = [], [None] * len(rows)
    for n, members in enumerate(groups.values(), start=1):
        run_id = f"r{n:02d}"
        steps = sorted({rows[i][2] for i in members})
        settings = rows[members[0]][0]
        fixed = {k: v for k, v in settings.items() if k not in LENGTH_KNOBS}
        config = replace(request.base, **fixed, name=f"{request.name}-{run_id}", max_steps=steps[-1], epochs=0,
                         validate_at_steps=steps, export=False).check()
        runs.append(PlannedRun(run_id, config))
        for i in members:
            cells[i] = Cell(f"c{i + 1:02d}", rows[i][0], run_id, rows[i][2])
            runs[-1].cells.append(cells[i].id)
    steps_run, steps_separate = sum(r.config.max_steps for r in runs), sum(c.step for c in cells)
    if steps_run < steps_separate:
        notes.append(f"shared first steps: {len(runs)} runs train {steps_run} steps where {len(cells)} separate runs "
                     f"would train {steps_separate}")
    return runs, cells, notes
