"""Components from outside the package: import plugin modules, and name the code behind a run's components.

A plugin is a module that registers algorithms (or datasets, models, augmentations) with the same decorators as the
built-in ones, e.g. ``@ALGORITHMS.register("pseudo_label")``. Three ways in, each imported before a recipe is
resolved: a recipe's top-level ``plugins = ["my_pkg.my_algo"]``, ``ssl-bench ... --plugin MODULE``, and the
entry-point group ``ssl_bench.plugins`` of an installed package. The first two also take a file, ``my_algo.py``
(a recipe's relative to the recipe's folder): it is imported as the module ``my_algo`` with its folder put on the
import path, so that its records, its identity and the worker processes that rebuild its runs are the same as for
``--plugin my_algo`` with ``PYTHONPATH`` set. Code outside the package is part of the identity of every run that
uses it (``provenance``): its records name each module with the sha256 of its source, and an edited plugin gives a
new config hash.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from functools import partial
from importlib import metadata
from pathlib import Path

from ssl_bench.errors import ConfigError, SSLBenchError, one_line

ENTRY_POINT_GROUP = "ssl_bench.plugins"
PACKAGE = "ssl_bench"


def is_file(name: object) -> bool:
    """Whether a ``plugins`` entry names a file (``my_algo.py``, ``path/to/x.py``) rather than a module."""
    return isinstance(name, str) and name.endswith(".py")


def beside(names: object, folder: Path) -> object:
    """A recipe's ``plugins`` with each relative file name read from the recipe's ``folder``; module names, and
    anything that is not a list of names (refused later, with the usual message), unchanged."""
    if not isinstance(names, list):
        return names
    return [str(folder / n) if is_file(n) and not Path(n).is_absolute() else n for n in names]


def import_plugins(modules: Iterable[str]) -> None:
    """Import each plugin module or file (once per process), so that what it registers can be named in a recipe."""
    for name in modules:
        if is_file(name):
            _import_file(name)
            continue
        if not isinstance(name, str) or not name or any(not part.isidentifier() for part in name.split(".")):
            raise ConfigError(
                f"plugins: {name!r} is not a module name such as my_pkg.my_algo or a file such as my_algo.py"
            )
        _guarded(f"plugin module {name!r}", partial(importlib.import_module, name), name)


def _import_file(text: str) -> None:
    """Import the file ``text`` as the module named by its stem; a file already imported (the same path named by
    two recipes, or by ``--plugin`` and a recipe) is not run again, so its components register once."""
    path = Path(text)
    if not path.is_file():
        why = "is not a file" if path.exists() else "not found"
        raise ConfigError(f"plugin file {text} {why}: give the path of a .py file (a recipe's: from its folder)")
    module = path.stem
    if not module.isidentifier():
        raise ConfigError(f"plugin file {text}: name it like a Python module, e.g. my_algo.py")
    where = path.resolve()
    loaded = sys.modules.get(module)
    if loaded is not None:
        other = getattr(loaded, "__file__", None)
        if other and Path(other).resolve() == where:
            return
        raise ConfigError(
            f"plugin file {text}: a module named {module!r} is already loaded (from {other or 'the interpreter'}); "
            "rename the file"
        )
    folder = str(where.parent)
    # worker processes take the driver's import path and import the plugin by name; appended, not prepended, so
    # that another file in the plug-in's folder (a json.py, a torch.py) never shadows a library the suite imports
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(module, where)
    assert spec is not None and spec.loader is not None  # a .py file always has a source loader
    loader = spec.loader

    def run() -> None:
        sys.modules[module] = importlib.util.module_from_spec(spec)
        try:
            loader.exec_module(sys.modules[module])
        except BaseException:
            del sys.modules[module]  # as a failed import_module does: a later try runs the file again
            raise

    _guarded(f"plugin file {text}", run, None)


def _guarded(label: str, load: Callable[[], object], name: str | None) -> None:
    """Run ``load`` (an import), turning whatever it raises into one line that starts with ``label``."""
    try:
        load()
    except ModuleNotFoundError as exc:
        if name is not None and exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(
                f"{label} not found: put its folder on PYTHONPATH, install its package, or name its .py file instead"
            ) from None
        raise ConfigError(f"{label} failed to import ({one_line(exc, whole=True)})") from None
    except SSLBenchError:
        raise
    except SystemExit as exc:  # else `check` of its algorithm would exit 0, having checked nothing
        raise ConfigError(f"{label} called sys.exit({exc.code!r}) while being imported") from None
    except Exception as exc:  # a plugin's own bug (syntax error, duplicate name, ...): one line, no traceback
        raise ConfigError(f"{label} failed to import ({one_line(exc, whole=True)})") from None


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
