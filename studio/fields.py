"""A request's settings, declared once beside its fields: what the web form, the command line and the API need to
offer each one (label, help, flag, choices, group, basic or advanced), and the one way a value given by any of them
becomes the field's value.

    steps: int = setting(20, label="Steps", help="denoising steps", span=(1, 150, 1))

The forms (studio/ui/forms.py), the flags (studio/cli/flags.py) and the API (the forms' events, whose parameters are
the field names) are made from these declarations, so a setting added here is offered everywhere, under one name.
Nothing heavy is imported: the request modules use this at import.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from dataclasses import MISSING, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable

_KEY = "studio.setting"
NO_UNSET = type("NoUnset", (), {"__repr__": lambda self: "NO_UNSET"})()  # a setting whose default has no stand-in


@dataclass(frozen=True)
class Setting:
    """How one field is offered. Which widget and which flag follow from the field's type: a bool is a checkbox and
    --name/--no-name, choices a dropdown, a number a number box (a slider with `span`), a list a text box with one
    item a line (or a repeatable flag)."""

    label: str  # what the form calls it
    help: str = ""  # one line: what it does, what its special values mean (the form's info, the flag's help)
    flag: str = ""  # the command line's option; "" means --<field name, dashes for underscores>
    choices: tuple = ()  # the values it may take, when they are few and fixed
    group: str = ""  # the part of a form it sits in ("Schedule", "LoRA", ...)
    advanced: bool = False  # folded away in a form; the basic settings are shown first
    unset: Any = NO_UNSET  # a value a form or flag gives that stands for the field's default (0: "the native size")
    names: str = ""  # what the studio lists that the value names ("base model", "dataset", "LoRA", ...)
    parse: Callable | None = None  # one written item (a flag's value, a line of text) -> the value (or list item)
    show: Callable | None = None  # a value (or list item) -> how a form writes it; parse(show(x)) == x
    split: str = r"\n"  # a list written as one text: the pattern between its items
    span: tuple | None = None  # (minimum, maximum, step) of a slider
    lines: int = 1  # the height of a text box
    shown_with: str = ""  # a form gives it with another field's widget (a painter's paint is the mask of its picture)
    methods: tuple = ()  # a training setting that applies to these methods only (empty: every method)
    family_option: bool = False  # applies only to the model families that name it (ModelFamily.training_options)


def setting(default: Any = MISSING, *, default_factory: Any = MISSING, **declaration) -> Any:
    """A dataclass field with its Setting (see above): `x: int = setting(1, label="X", help="...")`."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={_KEY: Setting(**declaration)})


def declared(cls) -> dict[str, Setting]:
    """The settings of request class `cls` (or an instance of one), by field name, in the order of its fields."""
    return {f.name: f.metadata[_KEY] for f in dataclasses.fields(cls) if _KEY in f.metadata}


def flag(name: str, s: Setting) -> str:
    """The command-line option of setting `name`."""
    return s.flag or "--" + name.replace("_", "-")


def default(cls, name: str) -> Any:
    """Field `name`'s default value in `cls`."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


@dataclass(frozen=True)
class Kind:
    """The Python type behind a field: `base` (int, float, bool, str, Path, or a class such as LoraChoice), whether
    None is allowed, and whether it holds several (`container` list or tuple)."""

    base: Any
    optional: bool = False
    container: type | None = None

    @property
    def many(self) -> bool:
        return self.container is not None


@cache
def kinds(cls) -> dict[str, Kind]:
    """Every field's Kind, read from its annotation (evaluated in its module: `from __future__ import annotations`
    leaves them as text). A type that cannot be resolved is `object` (only a declared setting needs its kind)."""
    out = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        names = vars(sys.modules[klass.__module__])
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            try:
                hint = eval(annotation, names) if isinstance(annotation, str) else annotation  # noqa: S307
            except (NameError, AttributeError, TypeError):
                hint = object
            out[name] = _kind(hint)
    return out


def _kind(hint) -> Kind:
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, (args[0] if len(args) == 1 else object)
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return Kind(args[0] if args else object, optional, origin)
    return Kind(hint, optional)


def value(cls, name: str, raw: Any) -> Any:
    """What `raw` (from a form, a flag or the API) is as field `name` of `cls`: converted to the field's type, or
    MISSING where it stands for the default (None, or the setting's `unset`). A ValueError names the field."""
    s, kind = declared(cls)[name], kinds(cls)[name]
    if raw is None or (s.unset is not NO_UNSET and _same(raw, s.unset)):
        return MISSING
    if not kind.many:
        return _one(name, s, kind.base, raw)
    if isinstance(raw, str):
        items = [piece.strip() for piece in re.split(s.split, raw)]
        raw = [piece for piece in items if piece]
    if not isinstance(raw, (list, tuple)):
        raw = [raw]
    return kind.container(_one(name, s, kind.base, item) for item in raw)


def _same(raw, unset) -> bool:
    if isinstance(unset, (int, float)) and not isinstance(unset, bool):
        return isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw == unset
    return raw == unset


def _one(name: str, s: Setting, base, raw) -> Any:
    x = _typed(name, s, base, raw)
    if s.choices and x not in s.choices:
        raise ValueError(f"`{name}` must be one of {', '.join(map(str, s.choices))} but is {raw!r}")
    return x


def _typed(name: str, s: Setting, base, raw) -> Any:
    if s.parse is not None and isinstance(raw, str):
        return s.parse(raw)
    if base is bool:
        return _bool(name, raw)
    if base is int:
        return _number(name, raw, whole=True)
    if base is float:
        return _number(name, raw, whole=False)
    if base is str:
        if not isinstance(raw, str):
            raise ValueError(f"`{name}` must be text but is {raw!r}")
        return raw
    if base is Path:
        if not isinstance(raw, (str, Path)):
            raise ValueError(f"`{name}` must be a path but is {raw!r}")
        return Path(raw)
    if isinstance(base, type) and dataclasses.is_dataclass(base) and isinstance(raw, dict):
        try:
            return base(**raw)
        except TypeError as e:
            raise ValueError(f"`{name}` holds {raw!r}, which is no {base.__name__}: {e}") from None
    if isinstance(base, type) and base is not object and not isinstance(raw, base):
        raise ValueError(f"`{name}` must be a {base.__name__} but is {raw!r}")
    return raw


def _bool(name: str, raw) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "on", "yes", "1"):
        return True
    if text in ("false", "off", "no", "0", ""):
        return False
    raise ValueError(f"`{name}` must be true or false but is {raw!r}")


def _number(name: str, raw, whole: bool):
    what = "a whole number" if whole else "a number"
    if isinstance(raw, bool):
        raise ValueError(f"`{name}` must be {what} but is {raw!r}")
    try:
        number = float(raw.strip()) if isinstance(raw, str) else float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be {what} but is {raw!r}") from None
    if not whole:
        return number
    if number != int(number):
        raise ValueError(f"`{name}` must be {what} but is {raw!r}")
    return int(number)


def values(cls, given: dict) -> dict:
    """`given` (setting name -> what a form, flags or the API gave) as field values; the names left out, and those
    given as None or `unset`, keep their defaults. A name that is no setting of `cls` is a ValueError naming it."""
    settings = declared(cls)
    unknown = [name for name in given if name not in settings]
    if unknown:
        raise ValueError(f"{', '.join(f'`{n}`' for n in unknown)} {'is' if len(unknown) == 1 else 'are'} no setting "
                         f"of {cls.__name__}; the settings are {', '.join(settings)}")
    out = {}
    for name, raw in given.items():
        converted = value(cls, name, raw)
        if converted is not MISSING:
            out[name] = converted
    return out


def build(cls, given: dict, **fixed):
    """A `cls` request from settings by name (see values) and `fixed`: fields no form offers (a picture, save). A
    field with no default that is not given is a ValueError naming it."""
    made = {**values(cls, given), **fixed}
    for f in dataclasses.fields(cls):
        if f.init and f.name not in made and f.default is MISSING and f.default_factory is MISSING:
            raise ValueError(f"`{f.name}` is required but not given")
    return cls(**made)


def written(cls, name: str, x: Any) -> Any:
    """How a form shows value `x` of field `name`: a list as text (one item a line, or split by `, ` where items are
    split by spaces and commas), an item through `show`, None as the setting's `unset`."""
    s, kind = declared(cls)[name], kinds(cls)[name]
    if x is None:
        return None if s.unset is NO_UNSET else s.unset
    if kind.many:
        items = [s.show(item) if s.show else str(item) for item in x]
        return ("\n" if "\\n" in s.split else ", ").join(items)
    return s.show(x) if s.show else x
