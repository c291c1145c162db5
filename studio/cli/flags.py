"""A request's flags, made from its declared settings (studio.fields): one option per setting, under the setting's
flag, with its help and choices; what was given on the command line back as the request's settings by name."""

from __future__ import annotations

import argparse
from pathlib import Path

from studio.fields import declared, default, flag, kinds, value


def add_flags(parser: argparse.ArgumentParser, cls, *, skip: tuple = (), required: tuple = ()) -> None:
    """An option for every setting of request class `cls` but those in `skip` (a verb that offers them its own
    way). Each defaults to None: not given, the request's default holds. A bool is --name / --no-name; a list is
    repeatable and takes several values at once."""
    settings, types_ = declared(cls), kinds(cls)
    for name, s in settings.items():
        if name in skip:
            continue
        kind = types_[name]
        options = dict(dest=name, default=None, help=_help(cls, name, s))
        if kind.base is bool and not kind.many:
            options["action"] = argparse.BooleanOptionalAction
        elif kind.many and s.split != r"\n":  # written as one text ("1, 2 3"), split as a form's box is
            options["type"] = _whole(cls, name)
        else:
            options["type"] = _converter(name, s, kind.base)
            if s.choices:
                options["choices"] = s.choices
            if kind.many:
                options.update(nargs="+", action="extend")
            if s.names:
                options["metavar"] = s.names.upper().replace(" ", "_")
        if name in required:
            options["required"] = True
        parser.add_argument(flag(name, s), **options)


def _help(cls, name: str, s) -> str:
    """The setting's label and help, and its default where it is one plain value."""
    text = f"{s.label}: {s.help}" if s.help else s.label
    start = default(cls, name)
    if isinstance(start, (int, float, str)) and start not in ("",) and not isinstance(start, bool):
        text += f" (default {start})"
    return text.replace("%", "%%")  # argparse formats help with %


def _converter(name: str, s, base):
    """A type= for argparse: int and float as argparse knows them ("invalid int value"), a declared parse with its
    own message."""
    if s.parse is not None:
        def parse(text: str):
            try:
                return s.parse(text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None

        parse.__name__ = name
        return parse
    return {int: int, float: float, Path: Path}.get(base, str)


def _whole(cls, name: str):
    """A type= that reads a whole list from one argument, as studio.fields.value reads a form's text."""
    def parse(text: str):
        try:
            return value(cls, name, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name
    return parse


def given(args: argparse.Namespace, cls) -> dict:
    """The settings of `cls` given on the command line (left-out flags are None and not listed), by field name."""
    return {name: getattr(args, name) for name in declared(cls)
            if getattr(args, name, None) is not None}


def flags_given(args: argparse.Namespace, cls, names) -> list[str]:
    """The flags, among settings `names` of `cls`, that were given."""
    settings = declared(cls)
    return [flag(n, settings[n]) for n in names if getattr(args, n, None) is not None]
