"""Turning YAML values and ``--set key=value`` overrides into the config dataclasses.

The parsing half of :mod:`avssl.config`: each value is coerced to the type its dataclass field
is annotated with, and every mistake (an unknown key, a value of the wrong type, text that is not
YAML) is a one-line :class:`~avssl.errors.ConfigError` naming the dotted key. The functions
work on any nested config dataclass, so this module does not import the configs themselves.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import reprlib
import types
import typing
from pathlib import Path

import yaml

from avssl.config_decided import file_error
from avssl.errors import ConfigError

# how much of a refused value an error shows: a YAML alias can stand for a list nested nine deep
# ("billion laughs"), whose whole repr took 100 s and 12 GB and printed gigabytes as one line
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 1, 6, 4, 60, 60


def short_repr(value) -> str:
    """A short ``repr`` of ``value`` for an error (long or deeply nested values cut, ``...``)."""
    return _SHORT.repr(value)


def _field_types(cls) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls)


def _coerce(value, tp, key: str):
    """Convert a YAML value to the annotated type, with a one-line error."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return None if value is None else _coerce(value, _unoptional(tp), key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {short_repr(value)}")
        return from_dict(tp, value, prefix=key + ".")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, str):
            value = _parse_yaml(value, key)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {short_repr(value)}")
        return [_coerce(v, inner, key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true/false, got {short_repr(value)}")
    if tp is str and (value is None or isinstance(value, list | dict | bool)):
        # str() takes anything
        raise ConfigError(f"{key}: expected a string, got {short_repr(value)}")
    if tp is str and isinstance(value, int | float):  # YAML read 010 as 8 and 0.10 as 0.1
        number = short_repr(value)
        raise ConfigError(f"{key}: expected a string, got the number {number} (quote it)")
    try:
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        if tp in (int, float) and isinstance(value, bool):  # bool is an int to Python
            raise ValueError
        out = tp(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {short_repr(value)}") from None
    if tp is float and not math.isfinite(out):  # nan > 0 and nan < 0 are both false
        raise ConfigError(f"{key}: must be a finite number, got {out}")
    return out


def _unknown(key: str, valid) -> ConfigError:
    # the hint is the whole key, as --set takes it: 'runs_dir' alone is unknown at the top
    section, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, list(valid), n=1)
    full = [f"{section}.{k}" if section else k for k in close]
    hint = f" (did you mean {full[0]!r}?)" if full else f" (valid: {', '.join(valid)})"
    return ConfigError(f"unknown config key {short_repr(key)}{hint}")


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from a nested dict; unknown keys are an error naming the nearest."""
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in (data or {}).items():
        if key not in types_:
            raise _unknown(f"{prefix}{key}", types_)  # a key may be no string
        kwargs[key] = _coerce(value, types_[key], prefix + key)
    return cls(**kwargs)


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing a key given twice in one mapping (YAML keeps the last one
    silently, so the first setting would be lost without a word)."""

    def construct_mapping(self, node, deep=False):
        """As SafeLoader's, after refusing a key the mapping ``node`` gives twice.

        Raises:
            ConfigError: ``key K given twice (line N)``.
        """
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *defaults": SafeLoader's
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # SafeLoader refuses it below, as YAML
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"key {short_repr(key)} given twice (line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str, key: str):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        reason = f"is not valid YAML ({err.__class__.__name__})"
        raise ConfigError(f"{key}: {short_repr(text)} {reason}") from None


def apply_override(cfg, assignment: str) -> None:
    """Apply one ``dotted.key=value`` override in place.

    The value is parsed as YAML, except for a text setting given a number (``name=010`` stays
    ``"010"``). A mapping given to a section sets the keys it names and leaves the others.
    """
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {short_repr(assignment)}")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    obj = cfg
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(obj):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i])} is a value, not a section")
        types_ = _field_types(type(obj))
        if part not in types_:
            raise _unknown(".".join(parts[: i + 1]), types_)
        if i == len(parts) - 1:
            value = _parse_yaml(raw, f"--set {key}") if raw.strip() else None
            tp, current = _unoptional(types_[part]), getattr(obj, part)
            if tp is str and isinstance(value, int | float | bool):
                value = raw.strip()  # text as typed: name=010 is "010", not 8
            if isinstance(value, dict) and dataclasses.is_dataclass(current):
                _merge(current, value, key)  # the keys not named keep their values
            else:
                setattr(obj, part, _coerce(value, types_[part], key))
        else:
            obj = getattr(obj, part)


def _unoptional(tp):
    """``T`` of ``T | None`` (the first of a union's other members), else ``tp``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _merge(obj, mapping: dict, key: str) -> None:
    """Set the keys of ``mapping`` on the config section ``obj``, leaving the others as they are
    (``--set model.audio={n_mels: 64}`` changes n_mels only)."""
    types_ = _field_types(type(obj))
    for name, value in mapping.items():
        if name not in types_:
            raise _unknown(f"{key}.{name}", types_)
        current = getattr(obj, name)
        if isinstance(value, dict) and dataclasses.is_dataclass(current):
            _merge(current, value, f"{key}.{name}")
        else:
            setattr(obj, name, _coerce(value, types_[name], f"{key}.{name}"))


def read_config_file(path: str | os.PathLike) -> dict:
    """The mapping a YAML config file holds, as written (not checked against :class:`Config`).

    Raises:
        ConfigError: ``PATH: reason``: no such file, a folder, not UTF-8, not YAML (or a key
            given twice), or not a mapping at the top level.
    """
    path = Path(path)
    if path.is_dir():
        raise file_error(path, "is a directory, not a config file")
    if path.exists() and not path.is_file():  # /dev/null, a named pipe: not "no such file"
        raise file_error(path, "not a regular file")
    if not path.is_file():
        raise file_error(path, "no such config file")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), UniqueKeyLoader) or {}
    except ConfigError as err:
        raise file_error(path, str(err)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)  # where the parser stopped, 0-based
        at = f", line {mark.line + 1}" if mark is not None else ""
        raise file_error(path, f"not valid YAML ({err.__class__.__name__}{at})") from None
    except UnicodeDecodeError:
        raise file_error(path, "not UTF-8 text") from None
    except OSError as err:
        raise file_error(path, f"cannot be read ({err.strerror})") from None
    if not isinstance(data, dict):
        raise file_error(path, "top level must be a mapping")
    return data
