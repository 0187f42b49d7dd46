"""Components from outside the package: import plugin modules, and name the code behind a run's components.

A plugin is a module that registers algorithms (or datasets, models, augmentations) with the same decorators as the
built-in ones, e.g. ``@ALGORITHMS.register("pseudo_label")``. Three ways in, each imported before a recipe is
resolved: a recipe's top-level ``plugins = ["my_pkg.my_algo"]``, ``ssl-bench ... --plugin MODULE``, and the
entry-point group ``ssl_bench.plugins`` of an installed package. Code outside the package is part of the identity
of every run that uses it (``provenance``): its records name each module with the sha256 of its source, and an
edited plugin gives a new config hash.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from ssl_bench.errors import ConfigError, SSLBenchError, one_line

ENTRY_POINT_GROUP = "ssl_bench.plugins"
PACKAGE = "ssl_bench"


def import_plugins(modules: Iterable[str]) -> None:
    """Import each plugin module (once per process), so that what it registers can be named in a recipe."""
    for name in modules:
        if not isinstance(name, str) or not name or any(not part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"plugins: {name!r} is not a module name such as my_pkg.my_algo")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                raise ConfigError(
                    f"plugin module {name!r} not found: put its folder on PYTHONPATH or install its package"
                ) from None
            raise ConfigError(f"plugin module {name!r} failed to import ({one_line(exc, whole=True)})") from None
        except SSLBenchError:
            raise
        except SystemExit as exc:  # else `check` of its algorithm would exit 0, having checked nothing
            raise ConfigError(f"plugin module {name!r} called sys.exit({exc.code!r}) while being imported") from None
        except Exception as exc:  # a plugin's own bug (syntax error, duplicate name, ...): one line, no traceback
            raise ConfigError(f"plugin module {name!r} failed to import ({one_line(exc, whole=True)})") from None


_ENTRY_POINTS_LOADED = False


def load_entry_points() -> None:
    """Import every installed package's ``ssl_bench.plugins`` entry points (once per process)."""
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = f" of {ep.dist.name}" if ep.dist is not None else ""
        try:
            ep.load()
        except (Exception, SystemExit) as exc:
            where = f"entry point {ep.name} = {ep.value}{dist} (group {ENTRY_POINT_GROUP})"
            raise ConfigError(f"{where} failed to load ({one_line(exc, whole=True)})") from None
    _ENTRY_POINTS_LOADED = True


def source_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def provenance(components: Iterable[object]) -> list[dict[str, str]]:
    """``[{"module": name, "sha256": hex}]`` of the outside code behind ``components`` (registered classes or
    functions), sorted by module name; empty when every component is built in.

    For each component defined outside ``ssl_bench``, every module of its top-level package that is loaded now
    is listed (a single-file plugin: just that file), so helpers imported by the registering module count too.
    """
    tops = set()
    for obj in components:
        module = getattr(obj, "__module__", None) or ""
        if module and module != PACKAGE and not module.startswith(PACKAGE + "."):
            tops.add(module.split(".")[0])
    out = []
    for name in sorted(sys.modules):
        if name.split(".")[0] not in tops:
            continue
        path = getattr(sys.modules[name], "__file__", None)
        if path and Path(path).is_file():
            out.append({"module": name, "sha256": source_sha256(path)})
    return out
