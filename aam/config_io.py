"""Stage configs to and from plain dicts and YAML: flattening dotted keys, typed coercion of
loaded values, merging overrides. The dataclasses themselves live in :mod:`aam.config`."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from aam.errors import InputError
from aam.validate import check_finite

# Values derived from the data (set before the model is built; no flag, never compared on resume).
DERIVED = frozenset({"data.max_bp", "model.max_bp", "fusion.cardinalities", "out_dim"})


def settable_fields(cls, prefix: str = "", documented_derived: bool = False
                    ) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Every dotted field of a stage config a user may set, with its resolved type hint:
    derived values left out, unless ``documented_derived`` and the field has a help text
    (``data.max_bp`` is both: 0 takes the longest ASV, and it has a flag)."""
    out: dict[str, tuple[dataclasses.Field, Any]] = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        path = f"{prefix}{f.name}"
        if is_dataclass(hints[f.name]):
            out.update(settable_fields(hints[f.name], f"{path}.", documented_derived))
        elif path not in DERIVED or (documented_derived and f.metadata.get("help")):
            out[path] = (f, hints[f.name])
    return out


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}} -> {"train.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def nest(flat: dict[str, Any]) -> dict:
    """Inverse of :func:`flatten`."""
    out: dict = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


# --- dict / YAML round trip ------------------------------------------------------------------


def to_dict(cfg) -> dict[str, Any]:
    """Plain nested dict (lists, not tuples) of a config dataclass."""
    out = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_dict(cls, data: dict[str, Any] | None, _where: str = ""):
    """Build ``cls`` from a nested dict, rejecting unknown keys by name."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(str(key) for key in set(data) - known)
    if unknown:
        where = f" in '{_where}'" if _where else ""
        raise InputError(
            f"Unknown config key(s){where}: {', '.join(unknown)}. "
            f"Known keys: {', '.join(sorted(known))}."
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{_where}.{name}" if _where else name)
    return cls(**kwargs)


def _coerce(hint, value, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise InputError(f"Config key '{where}' must be a mapping, got {value!r}.")
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) > 1:  # e.g. str | float | int: the value keeps its own type
            if isinstance(value, tuple(inner)) and not isinstance(value, bool):
                return value
            raise InputError(f"Config key '{where}' must be one of "
                             f"{', '.join(a.__name__ for a in inner)}, got {value!r}.")
        return _coerce(inner[0], value, where)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise InputError(f"Config key '{where}' must be a list, got {value!r}.")
        return tuple(_coerce(args[0], v, where) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"Config key '{where}' must be true or false, got {value!r}.")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"Config key '{where}' must be a number, got {value!r}.")
        check_finite(value, f"Config key '{where}'")
        if hint is int and float(value) != int(value):
            raise InputError(f"Config key '{where}' must be an integer, got {value!r}.")
        return hint(value)
    if hint is str and isinstance(value, os.PathLike):
        return os.fspath(value)  # a path flag (the output transaction stages it as a Path)
    if hint is str and not isinstance(value, str):
        raise InputError(f"Config key '{where}' must be a string, got {value!r}.")
    return value


def load_yaml(cls, path: str | Path):
    """Read a config of type ``cls`` from a YAML file (safe loader)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    with path.open(encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except UnicodeDecodeError as err:
            raise InputError(f"{path} is not UTF-8 text (byte {err.start}). Save the config as "
                             "UTF-8 YAML.") from None
        except yaml.YAMLError as err:
            # the safe loader refuses !!python/* tags (they could run code) as a ConstructorError
            problem = getattr(err, "problem", None) or type(err).__name__
            mark = getattr(err, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark is not None else ""
            raise InputError(f"{path} is not plain YAML{line}: {problem}. Fix the file (python "
                             "tags such as !!python/object are never loaded).") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the config must be a mapping of keys to values.")
    return from_dict(cls, data)


def dump_yaml(cfg) -> str:
    """YAML text of a config (for ``config.resolved.yaml``)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def merge(cfg, overrides: dict[str, Any]):
    """A copy of ``cfg`` with a nested dict of overrides applied (validated again)."""
    base = to_dict(cfg)
    deep_update(base, overrides)
    return from_dict(type(cfg), base)


def deep_update(base: dict, overrides: dict) -> None:
    """Update the nested dict ``base`` in place with ``overrides`` (mappings merged key by key)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value

