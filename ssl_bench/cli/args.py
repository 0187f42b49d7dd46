"""Arguments several ``ssl-bench`` commands share."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_RESULTS = "leaderboard"


def path_arg(text: str) -> Path:
    """A path flag's value; an empty one is refused (``Path("")`` is the current folder, where a results directory
    would write its README.md over whatever README.md is there)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: give a path")
    return Path(text)


def results_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--results-dir",
        default=DEFAULT_RESULTS,
        type=path_arg,
        help=f"where run records and split manifests live (default: {DEFAULT_RESULTS}/)",
    )


def plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE|FILE",
        help="import this module or .py file first, so that what it registers can be used (repeatable), "
        "e.g. my_pkg.my_algo or plugins/my_algo.py",
    )


def load_plugins(args: argparse.Namespace) -> None:
    """Installed packages' ssl_bench.plugins entry points, then every --plugin module or file, after the built-in
    components: a plugin that registers a built-in name is then the one refused (duplicate name), in one line."""
    import ssl_bench.algorithms
    import ssl_bench.augment
    import ssl_bench.data
    import ssl_bench.models  # noqa: F401
    from ssl_bench.plugins import import_plugins, load_entry_points

    load_entry_points()
    import_plugins(args.plugin)
