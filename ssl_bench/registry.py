"""One generic name -> object registry; every pluggable component (algorithm, dataset, model, ...) uses it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from ssl_bench.errors import ConfigError

T = TypeVar("T")


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
        if name in (".", "..") or any(c in name for c in "/\\\0"):
            # algorithm and dataset names become folders of the results directory (results.record_path)
            raise ValueError(f"invalid {self.kind} name {name!r}: names become file names, so no '/', '\\' or '..'")
        if name in self._items:
            raise ValueError(f"duplicate {self.kind} name {name!r}: already registered as {self._items[name]!r}")
        self._items[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}") from None

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
