"""Every setting is one dataclass field carrying its metadata (help, choices, unit, flag name,
whether a resume may change it, whether it says where a run executes).

:func:`setting` declares such a field; :func:`settings_of` lists the settings of a config class,
nested sections included, as :class:`Setting` records. Every command's flags, the workflow
schema, ``config/README.md``'s key table and the resume rules are read from these records
(``aam.cli.options``, ``aam.cli.gen_docs``, ``aam.training.resume``), so a new setting is one
field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, is_dataclass
from typing import Any, Callable, Optional, Sequence

from aam.config_io import settable_fields

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()  # no default


def setting(default: Any = MISSING, help: str = "", *, choices: Optional[Sequence] = None,
            unit: str = "", schedule: bool = False, runtime: bool = False,
            flag: Optional[str] = None, parse: Optional[Callable] = None,
            commands: Optional[Sequence[str]] = None, default_factory: Any = MISSING) -> Any:
    """A dataclass field with its metadata.

    Parameters
    ----------
    default : the default value (leave out for a required setting)
    help : one phrase: what the setting does (the flag's help, the schema's description, the
        README's row)
    choices : allowed values (argparse choices and the schema's enum)
    unit : the unit of a number, shown in the help (e.g. ``minutes``)
    schedule : a resumed run may change it (a training-schedule setting)
    runtime : where or how long a run executes (device, parallel strategy): its own flag, never
        a workflow key and never inherited by a resumed run
    flag : the command-line flag when it is not ``--`` + the field name with dashes
    parse : turns the flag's text into the value (default: the field's type)
    commands : the commands that take it, when its section is shared by more (e.g.
        ``("train",)`` for a data setting only fine-tuning reads); default: every command whose
        config holds it
    """
    metadata = {"help": help, "choices": tuple(choices) if choices is not None else None,
                "unit": unit, "schedule": schedule, "runtime": runtime, "flag": flag,
                "parse": parse, "commands": tuple(commands) if commands else None}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Shorthand:
    """One flag that sets several fields of the same section (``--attention-layers``)."""

    fields: tuple[str, ...]
    help: str


@dataclass(frozen=True)
class Setting:
    """One setting of a config class, as every generated artefact reads it."""

    name: str  # dotted field (``train.lr``), or the shorthand's name
    fields: tuple[str, ...]  # dotted fields the flag sets (one, or a shorthand's several)
    type: Any  # int, float, str, bool; tuple[str, ...] is str (comma-separated)
    help: str = ""
    choices: Optional[tuple] = None
    unit: str = ""
    default: Any = REQUIRED  # a required setting: no default
    optional: bool = False  # None is a value (unset)
    is_list: bool = False
    schedule: bool = False
    runtime: bool = False
    flag: str = ""
    parse: Optional[Callable] = None
    commands: Optional[tuple[str, ...]] = None  # None: every command whose config holds it

    @property
    def key(self) -> str:
        """The last part of the dotted name: the workflow key and the flag without dashes."""
        return self.name.split(".")[-1]

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _base_type(hint) -> tuple[Any, bool, bool]:
    """(scalar type, None allowed, comma-separated list) of a field's type hint."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else str  # str | float | int: parsed by `parse`
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], optional, True
    return hint, optional, False


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return REQUIRED


def settings_of(cls, command: Optional[str] = None) -> list[Setting]:
    """Every setting of the config class ``cls`` a user may set, nested sections included
    (dotted names), derived values left out, then each section's shorthands; with ``command``,
    only those that command takes."""
    if command is not None:
        return [s for s in settings_of(cls) if s.commands is None or command in s.commands]
    out = []
    defaults = _defaults(cls)
    for path, (f, hint) in settable_fields(cls, documented_derived=True).items():
        meta = f.metadata
        base, optional, is_list = _base_type(hint)
        default = defaults.get(path, REQUIRED)
        out.append(Setting(
            name=path, fields=(path,), type=base, help=meta.get("help") or "",
            choices=meta.get("choices"), unit=meta.get("unit") or "",
            default=tuple(default) if is_list and default is not REQUIRED else default,
            optional=optional, is_list=is_list, schedule=bool(meta.get("schedule")),
            runtime=bool(meta.get("runtime")),
            flag=meta.get("flag") or "--" + path.split(".")[-1].replace("_", "-"),
            parse=meta.get("parse"), commands=meta.get("commands")))
    out += _shorthands(cls, out)
    return out


def _defaults(cls, prefix: str = "") -> dict[str, Any]:
    """Dotted field -> default, a nested section's defaults taken from the parent's instance
    of it (``FinetuneConfig.train.epochs`` is 20, ``TrainConfig.epochs`` 10)."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value = _default(f)
        if is_dataclass(hints[f.name]) and value is not REQUIRED:
            out.update({f"{prefix}{f.name}.{k}": v for k, v in
                        _flat_values(value).items()})
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def _flat_values(obj) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            out.update({f"{f.name}.{k}": v for k, v in _flat_values(value).items()})
        else:
            out[f.name] = value
    return out


def _shorthands(cls, found: list[Setting]) -> list[Setting]:
    """The :class:`Shorthand` settings of every section of ``cls`` (``SHORTHANDS`` class
    attributes), typed and defaulted like the first field they set."""
    by_name = {s.name: s for s in found}
    out = []
    sections = {"": cls}
    hints = typing.get_type_hints(cls)
    sections.update({f"{f.name}.": hints[f.name] for f in dataclasses.fields(cls)
                     if is_dataclass(hints[f.name])})
    for prefix, section in sections.items():
        for name, short in getattr(section, "SHORTHANDS", {}).items():
            targets = tuple(prefix + field for field in short.fields)
            first = by_name[targets[0]]
            out.append(dataclasses.replace(
                first, name=prefix + name, fields=targets, help=short.help,
                flag="--" + name.replace("_", "-"), schedule=False, runtime=False))
    return out


def schedule_settings(*classes) -> frozenset[str]:
    """Dotted fields a resumed run may change (``schedule=True``)."""
    return frozenset(s.name for cls in classes for s in settings_of(cls)
                     if s.schedule and len(s.fields) == 1)


def runtime_settings(*classes) -> frozenset[str]:
    """Dotted fields that say where or how long a run executes (``runtime=True``)."""
    return frozenset(s.name for cls in classes for s in settings_of(cls)
                     if s.runtime and len(s.fields) == 1)
