"""Saved styles, as A1111 keeps them: named prompt pieces in workspace/styles.csv (name, prompt, negative_prompt; an
A1111 styles.csv can be copied in as it is), applied to a prompt by name. A style's prompt holding `{prompt}` wraps
the prompt there; otherwise it is added after it, as A1111 does."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from studio import fileio

FILE = "styles.csv"
COLUMNS = ("name", "prompt", "negative_prompt")


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def styles_file(settings) -> Path:
    return Path(settings.workspace_dir) / FILE


def list_styles(settings) -> list[Style]:
    """The saved styles, in the file's order (none when there is no file)."""
    path = styles_file(settings)
    if not path.is_file():
        return []
    rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
    return [Style(r["name"].strip(), r.get("prompt") or "", r.get("negative_prompt") or "")
            for r in rows if (r.get("name") or "").strip()]


def save_style(settings, style: Style) -> list[Style]:
    """Add `style`, or replace the one of its name; returns every style."""
    name = (style.name or "").strip()
    if not name:
        raise ValueError("`name` is empty: name the style")
    if not (style.prompt.strip() or style.negative_prompt.strip()):
        raise ValueError(f"style {name!r} has neither a prompt nor a negative prompt: nothing to save")
    kept = [s for s in list_styles(settings) if s.name != name] + [Style(name, style.prompt, style.negative_prompt)]
    _write(settings, kept)
    return kept


def delete_style(settings, name: str) -> list[Style]:
    styles = list_styles(settings)
    if name not in {s.name for s in styles}:
        raise ValueError(f"`name` {name!r} is no saved style")
    kept = [s for s in styles if s.name != name]
    _write(settings, kept)
    return kept


def _write(settings, styles: list[Style]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((s.name, s.prompt, s.negative_prompt) for s in styles)
    fileio.write_text(styles_file(settings), out.getvalue())


def apply_styles(settings, names, prompt: str, negative_prompt: str) -> tuple[str, str]:
    """`prompt` and `negative_prompt` with the styles `names` applied in order; an unknown name is a ValueError."""
    saved = {s.name: s for s in list_styles(settings)}
    for name in names:
        if name not in saved:
            raise ValueError(f"`styles` names {name!r}, which is no saved style (saved: {', '.join(saved) or 'none'})")
        style = saved[name]
        prompt = _merged(style.prompt, prompt)
        negative_prompt = _merged(style.negative_prompt, negative_prompt)
    return prompt, negative_prompt


def _merged(piece: str, text: str) -> str:
    if not piece:
        return text
    if "{prompt}" in piece:
        return piece.replace("{prompt}", text)
    return f"{text}, {piece}" if text.strip() else piece
