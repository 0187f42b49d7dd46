"""One generic name -> object registry; every pluggable component (algorithm, dataset, model, ...) uses it."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from ssl_bench.errors import ConfigError

T = TypeVar("T")


def is_file_name(name: str) -> bool:
    """Whether ``name`` can stand as one file or folder name below a folder: not empty, ``.`` or ``..``, and no
    ``/``, ``\\`` or NUL. Algorithm and dataset names become folders of a results directory."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def did_you_mean(name: str, choices: Iterable[str], shown: Callable[[str], str] = repr) -> str:
    """``" (did you mean 'steps'?)"`` for the choice closest to a mistyped ``name`` (difflib's ratio of at least 0.6),
    or ``""`` where none is close: the part of an unknown-name error that names the likely intended one.
    ``shown`` writes the choice as the message quotes it (``repr``, or e.g. ``"train.{}".format`` for a key)."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {shown(close[0])}?)" if close else ""


class Registry(Generic[T]):
    """Maps names to components; registering a name twice is a programming error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@ALGORITHMS.register("fixmatch")``."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        if not name or name != name.strip():
            raise ValueError(f"invalid {self.kind} name {name!r}")
        if not is_file_name(name):  # algorithm and dataset names become folders of results.layout.record_path
            raise ValueError(f"invalid {self.kind} name {name!r}: names become file names, so no '/', '\\' or '..'")
        if name in self._items:
            raise ValueError(f"duplicate {self.kind} name {name!r}: already registered as {self._items[name]!r}")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            hint = did_you_mean(name, self.names()) if isinstance(name, str) else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{hint}; valid choices: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


ALGORITHMS: Registry = Registry("algorithm")
DATASETS: Registry = Registry("dataset")
MODELS: Registry = Registry("model")
AUGMENTATIONS: Registry = Registry("augmentation")
