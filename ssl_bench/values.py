"""Config values checked as a recipe is read: the type of every value (``check_value``, ``from_dict``) and the
range of every number (``check_limits``, from the ``limits`` table each section and algorithm config declares)."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

from ssl_bench.errors import ConfigError

# ----------------------------------------------------------------------------------------------------------
# ranges

# an interval, then an optional note for the error message: "[0, 1)", "(0, inf)", "[0, inf) 0 = torch's default"
_INTERVAL = re.compile(r"^([\[(])\s*(-inf|-?[0-9.]+)\s*,\s*(inf|-?[0-9.]+)\s*([\])])(?:\s+(\S.*))?$")


def check_limits(cfg: Any, section: str, owner: str = "") -> None:
    """Every numeric field named in ``type(cfg).limits`` lies in its interval, else a one-line ConfigError:
    ``section.key[ of owner] must be >= 1 (note), got 0`` or ``... must lie in [0, 1), got 2.0``.

    ``limits`` is a class-level table of every section config and algorithm config; a limit that names no
    numeric field, or no interval, is the config author's bug (TypeError)."""
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, interval in getattr(cfg, "limits", {}).items():
        m = _INTERVAL.match(interval)
        value = getattr(cfg, key, None)
        if m is None or key not in names or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{type(cfg).__name__}.limits[{key!r}] = {interval!r}: not a numeric field and an interval")
        lo_open, lo, hi, hi_open = m[1] == "(", float(m[2]), float(m[3]), m[4] == ")"
        if (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi):
            continue
        need = f"be {'>' if lo_open else '>='} {m[2]}" if math.isinf(hi) else f"lie in {m[1]}{m[2]}, {m[3]}{m[4]}"
        note = f" ({m[5]})" if m[5] else ""
        raise ConfigError(f"{section}.{key}{f' of {owner}' if owner else ''} must {need}{note}, got {value}")


# ----------------------------------------------------------------------------------------------------------
# type checking


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def check_value(value: Any, tp: Any, where: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless (int -> float), else raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return check_value(value, arm, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is Any:
        return value
    if origin is typing.Literal:  # a choice: one of the listed values, of the listed type
        choices = typing.get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}; got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(value, list):
            return [check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config type {tp!r} at {where}")
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a plain dict, rejecting unknown keys and values of the wrong type."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])}; valid keys in [{where}]: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for key, value in values.items():
        tp, meta = hints[key], known[key].metadata
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, _join(where, key))
            continue
        if isinstance(value, bool) and value in meta.get("aliases", {}):
            value = meta["aliases"][value]
        kwargs[key] = check_value(value, tp, _join(where, key))
        choices = meta.get("choices")
        if choices is not None and kwargs[key] not in choices:
            aliases = "".join(f", {str(k).lower()} (= {v})" for k, v in meta.get("aliases", {}).items())
            raise ConfigError(f"{_join(where, key)} must be one of {', '.join(choices)}{aliases}; got {value!r}")
    return cls(**kwargs)
