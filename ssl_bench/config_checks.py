"""Config value checks: each value's type and choice (``from_dict``, ``check_value``) and each number's range.

A config dataclass declares its rules beside its fields, so that each lives once: a fixed set of choices is a
``Literal[...]`` type, and an interval is a ``Range`` in the field's ``Annotated`` type. This module reads them, for
the checks as a recipe is read and for anything that lists them (``field_range``, ``field_choices``: the docs).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from typing import Any

from ssl_bench.errors import ConfigError
from ssl_bench.registry import did_you_mean

# ----------------------------------------------------------------------------------------------------------
# ranges

# an interval as written: "[0, 1)", "(0, inf)", "[1, 1024]"
_INTERVAL = re.compile(r"^([\[(])\s*(-inf|-?[0-9.]+)\s*,\s*(inf|-?[0-9.]+)\s*([\])])$")


@dataclass(frozen=True)
class Range:
    """The interval a numeric config key must lie in, as it reads: ``Annotated[float, Range("[0, 1)")]``.

    ``note`` says what an end value means (``Range("[0, inf)", "0 = torch's default")``); it ends the error message.
    A malformed interval is the config author's bug, raised as the module that declares it is imported."""

    interval: str
    note: str = ""

    def __post_init__(self) -> None:
        if _INTERVAL.match(self.interval) is None:
            raise TypeError(f"Range({self.interval!r}): not an interval such as '[0, 1)' or '(0, inf)'")

    def __str__(self) -> str:
        return self.interval

    def contains(self, value: float) -> bool:
        m = _INTERVAL.match(self.interval)
        assert m is not None  # checked in __post_init__
        lo, hi = float(m[2]), float(m[3])
        return (value > lo if m[1] == "(" else value >= lo) and (value < hi if m[4] == ")" else value <= hi)

    def requirement(self) -> str:
        """``be >= 1`` or ``lie in [0, 1)``: what the error message says a value must do."""
        m = _INTERVAL.match(self.interval)
        assert m is not None
        if math.isinf(float(m[3])):
            return f"be {'>' if m[1] == '(' else '>='} {m[2]}"
        return f"lie in {self.interval}"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


@functools.cache
def _plain_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_range(cls: type, name: str) -> Range | None:
    """The ``Range`` that config dataclass ``cls`` declares for field ``name``, or None where it declares none.

    For the checks and for generated documentation, e.g. ``str(field_range(TrainConfig, "lr"))`` is ``"(0, inf)"``."""
    tp = _hints(cls).get(name)
    extras = getattr(tp, "__metadata__", ()) if typing.get_origin(tp) is typing.Annotated else ()
    return next((x for x in extras if isinstance(x, Range)), None)


def field_choices(cls: type, name: str) -> tuple[Any, ...] | None:
    """The values a ``Literal[...]`` field of ``cls`` admits (in declared order), or None for any other field."""
    tp = _plain_hints(cls).get(name)
    return typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else None


def check_ranges(cfg: Any, section: str, owner: str = "") -> None:
    """Every field of ``cfg`` with a ``Range`` lies in it, else a one-line ConfigError:
    ``section.key[ of owner] must be >= 1 (note), got 0`` or ``... must lie in [0, 1), got 2.0``.

    A Range on a field that holds no number, or a ``limits`` table (how ranges were once declared, now read by
    nothing), is the config author's bug (TypeError)."""
    cls = type(cfg)
    if hasattr(cls, "limits"):
        raise TypeError(f"{cls.__name__}.limits is not read: declare each range beside its field, "
                        "e.g. threshold: Annotated[float, Range('[0, 1]')] = 0.95")  # fmt: skip
    for f in dataclasses.fields(cfg):
        limit = field_range(cls, f.name)
        if limit is None:
            continue
        value = getattr(cfg, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{cls.__name__}.{f.name}: Range({limit.interval!r}) on a field that holds no number")
        if not limit.contains(value):
            note = f" ({limit.note})" if limit.note else ""
            where = f"{section}.{f.name}{f' of {owner}' if owner else ''}"
            raise ConfigError(f"{where} must {limit.requirement()}{note}, got {value}")


FLOAT32_MAX = 3.4028234663852886e38  # the numbers of a recipe meet float32 tensors (lr and decay in the optimizer)


def check_finite(cfg: Any, section: str) -> None:
    """No float of ``cfg`` is nan, infinite (TOML allows both) or beyond float32's range, where torch's in-place
    updates fail on it ("value cannot be converted to type float without overflow")."""
    for f in dataclasses.fields(cfg):
        value, where = getattr(cfg, f.name), f"{section}.{f.name}"
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value}")
        if isinstance(value, float) and abs(value) > FLOAT32_MAX:
            raise ConfigError(f"{where} must be within float32's range (±3.4e38), got {value:g}")


def check_fields(cfg: Any, section: str) -> None:
    """Every field of ``cfg`` holds a value of its declared type and choice, and is finite (``check_finite``). A
    recipe's values passed ``from_dict`` already; a config built in Python meets the same declarations here."""
    check_finite(cfg, section)
    cls: type = type(cfg)
    hints = _plain_hints(cls)
    for f in dataclasses.fields(cfg):
        if not dataclasses.is_dataclass(hints[f.name]):
            check_value(getattr(cfg, f.name), hints[f.name], f"{section}.{f.name}", f.metadata)


# ----------------------------------------------------------------------------------------------------------
# choices and types

# the message for a value outside a Literal's choices; a field may keep an older wording (``choice``)
ONE_OF = "{where} must be one of {choices}{aliases}; got {value!r}"
ONE_OF_GOT = "{where} must be one of {choices}, got {value!r}"
EITHER = "{where} must be {either}, got {value!r}"


def choice(default: str, error: str = ONE_OF, aliases: dict[Any, str] | None = None) -> Any:
    """A ``Literal[...]`` field's default, with the wording of its error message (placeholders ``where``,
    ``value``, ``choices`` (comma-separated), ``either`` (joined by "or") and ``aliases``) and, where old recipes
    wrote another value, the ``aliases`` that still read as a choice (``{True: "dataset"}``)."""
    return dataclasses.field(default=default, metadata={"error": error, "aliases": aliases or {}})


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def check_value(value: Any, tp: Any, where: str, meta: typing.Mapping[str, Any] | None = None) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless (int -> float), else raise ConfigError.

    ``meta``: the field's metadata, where a ``choice`` keeps its error message and aliases."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return check_value(value, arm, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}{_list_hint(value, tp, where)}")
    if tp is Any:
        return value
    if origin is typing.Literal:  # a choice: one of the listed values, of the listed type
        choices, aliases = typing.get_args(tp), (meta or {}).get("aliases", {})
        if isinstance(value, bool) and value in aliases:
            return aliases[value]
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        error = (meta or {}).get("error", ONE_OF)
        listed = "".join(f", {str(k).lower()} (= {v})" for k, v in aliases.items())
        names = [str(c) for c in choices]
        either = f"{', '.join(names[:-1])} or {names[-1]}"
        raise ConfigError(error.format(where=where, value=value, choices=", ".join(names), either=either,
                                       aliases=listed))  # fmt: skip
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
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}{_list_hint(value, tp, where)}")


def _expects_list(tp: Any) -> bool:
    return typing.get_origin(tp) is list or any(_expects_list(arm) for arm in typing.get_args(tp))


def _list_hint(value: Any, tp: Any, where: str) -> str:
    """``"; write a list in brackets: grid.seeds=[1,2]"`` where ``tp`` takes a list and ``value`` is one item or
    comma-separated items (``--set grid.seeds=1,2`` reads as the string "1,2"); a word that is no TOML literal is
    quoted, as TOML wants (``["a","b"]``)."""
    if isinstance(value, list) or not _expects_list(tp) or isinstance(value, dict):
        return ""
    items = [p.strip() for p in value.split(",")] if isinstance(value, str) else [value]
    written = [_toml_literal(item) for item in items if item != ""]
    return f"; write a list in brackets: {where}=[{','.join(written)}]"


def _toml_literal(item: Any) -> str:
    if isinstance(item, bool):
        return str(item).lower()
    if not isinstance(item, str):
        return str(item)
    try:
        tomllib.loads(f"v = {item}")
    except tomllib.TOMLDecodeError:
        return json.dumps(item)
    return item


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from a plain dict, rejecting unknown keys, values of the wrong type and choices
    outside a ``Literal``'s (ranges are checked on the built config: ``check_ranges``)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table of keys, got {values!r}")
    hints = _plain_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        hint = did_you_mean(unknown[0], known, lambda k: _join(where, k))
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])}{hint}; valid keys in [{where}]: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for key, value in values.items():
        tp = hints[key]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, _join(where, key))
        else:
            kwargs[key] = check_value(value, tp, _join(where, key), known[key].metadata)
    return cls(**kwargs)
