"""The ``ssl-bench`` command line: run recipes, list components, print splits, build the leaderboard."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from ssl_bench.cli.args import load_plugins, plugin_arg, results_arg
from ssl_bench.cli.bench import add_bench_parsers
from ssl_bench.cli.reports import add_report_parsers
from ssl_bench.errors import ConfigError, SSLBenchError


def cmd_run(args: argparse.Namespace) -> int:
    from ssl_bench.plan import load_recipe, plan
    from ssl_bench.results.layout import check_results_dir
    from ssl_bench.runner import run_planned

    check_results_dir(args.results_dir)
    load_plugins(args)
    overrides = list(args.set or [])
    if args.download:
        overrides.append("data.download=true")
    if args.device:
        overrides.append(f"train.device={json.dumps(args.device)}")
    if args.quiet:
        overrides.append("train.progress=false")
    from ssl_bench.executor import GridOptions, check_options, run_grid, summary
    from ssl_bench.train.distributed import Dist

    opts = GridOptions(
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
        retries=args.retries,
    )
    check_options(opts)
    if opts.executor == "local" and opts.workers == 1 and opts.cpus_per_run is not None:
        overrides.append(f"train.threads={opts.cpus_per_run}")  # the runs train in this process, with these threads
    recipes = [load_recipe(path, overrides) for path in args.recipe]
    dist = Dist.from_env()
    if dist.active:
        from ssl_bench.executor.torchrun import run_distributed

        return run_distributed(recipes, args.results_dir, opts, dist)
    here = opts.executor == "local" or opts.address is None  # local workers or a Ray started here: side by side
    at_once = opts.workers if here else 1
    planned = [p for recipe in recipes for p in plan(recipe, args.results_dir, at_once=at_once)]  # all validated first
    if opts.executor == "local" and opts.workers == 1:  # in this process, one run after another
        try:
            run_planned(planned, args.results_dir)
        finally:
            refresh_leaderboard(args.results_dir)
        return 0
    outcomes = run_grid(planned, args.results_dir, opts)
    refresh_leaderboard(args.results_dir)
    print(summary(outcomes), file=sys.stderr)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def refresh_leaderboard(results_dir: Path) -> None:
    """Regenerate the leaderboard once the results directory holds a record (a run that failed before its first
    record leaves no leaderboard behind) and print the tables of its runs (``ssl-bench leaderboard`` prints all)."""
    from ssl_bench.leaderboard import brief
    from ssl_bench.results.layout import RUNS_DIR

    if any((Path(results_dir) / RUNS_DIR).rglob("*.json")):
        print(brief(results_dir), end="")


def cmd_list(args: argparse.Namespace) -> int:
    load_plugins(args)
    import ssl_bench.algorithms  # noqa: F401
    import ssl_bench.augment  # noqa: F401
    import ssl_bench.data  # noqa: F401
    from ssl_bench.data.pairs import pair_choices
    from ssl_bench.models import model_names
    from ssl_bench.registry import ALGORITHMS, AUGMENTATIONS, DATASETS

    groups = {
        "algorithms": ALGORITHMS.names(),
        "datasets": DATASETS.names(),
        "pairs": pair_choices().split(", "),
        "models": model_names(),
        "augmentations": AUGMENTATIONS.names(),
    }
    for kind, names in groups.items():
        if args.kind in (None, kind):
            print(f"{kind}: {', '.join(names)}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    import numpy as np

    load_plugins(args)

    import ssl_bench.data  # noqa: F401
    from ssl_bench.config import DataConfig
    from ssl_bench.data.datasets import load_dataset
    from ssl_bench.data.split_ids import SplitId
    from ssl_bench.data.splits import check_budget, get_split, manifest_path
    from ssl_bench.results.layout import manifest_dir

    if "-" in args.split_id.split("@")[0].split(".")[0]:  # source-target.seed@...: dataset names have no "-"
        return _print_da_split(args)
    sid = SplitId.parse(args.split_id)
    if args.image_size:
        raise ConfigError("--image-size applies to domain-adaptation split ids (source-target.seed@uda|ssdaK) only")
    cfg = DataConfig(dataset=sid.dataset, download=args.download, class_balance=args.class_balance)
    if args.data_root:
        cfg.root = args.data_root
    ds = load_dataset(cfg)
    check_budget(sid.n_labels, ds.num_classes, ds.name, args.class_balance)  # the budgets a run accepts
    manifests = manifest_dir(args.results_dir)
    split = get_split(ds, sid, args.class_balance, manifests)
    labels = ds.train_labels.numpy()
    per_class = np.bincount(labels[split.labeled], minlength=ds.num_classes).tolist()
    n_unl = len(split.unlabeled(len(labels), include_labeled=True))
    print(f"split: {split.id}")
    print(f"dataset: {ds.name} ({len(labels)} train, {len(ds.test_labels)} test, {ds.num_classes} classes)")
    print(f"dataset_fingerprint: {split.fingerprint}")
    print(f"class_balance: {split.class_balance}")
    print(f"hash: {split.hash}")
    print(f"labeled ({len(split.labeled)}), per class {per_class}: {split.labeled.tolist()}")
    print(f"valid ({len(split.valid)}): {split.valid.tolist()}")
    print(f"unlabeled pool: {n_unl} images (labeled included) or {n_unl - len(split.labeled)} (excluded)")
    print(f"manifest: {manifest_path(manifests, sid, args.class_balance)}")
    return 0


def _print_da_split(args: argparse.Namespace) -> int:
    import numpy as np

    from ssl_bench.config import DataConfig
    from ssl_bench.data.checks import MAX_SIDE, MIN_SIDE
    from ssl_bench.data.pairs import load_pair
    from ssl_bench.data.split_ids import DASplitId
    from ssl_bench.data.splits import get_da_split, manifest_path
    from ssl_bench.results.layout import manifest_dir

    sid = DASplitId.parse(args.split_id)
    cfg = DataConfig(setting=sid.setting, source=sid.source, target=sid.target, download=args.download)
    if args.data_root:
        cfg.root = args.data_root
    if args.image_size:
        if not MIN_SIDE <= args.image_size <= MAX_SIDE:  # the sides a run accepts (data.image_size)
            raise ConfigError(f"--image-size must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {args.image_size}")
        cfg.image_size = args.image_size
    ds = load_pair(cfg)
    manifests = manifest_dir(args.results_dir)
    split = get_da_split(ds, sid, manifests)
    target_local = split.target_local
    assert target_local is not None  # a uda/ssda split always has one (Split.da), empty in uda
    target_labels = ds.train_labels[ds.n_source :].numpy()
    per_class = np.bincount(target_labels[target_local], minlength=ds.num_classes).tolist()
    n_target = len(target_labels)
    print(f"split: {split.id}")
    print(f"pair: {sid.source} -> {sid.target} ({ds.n_source} source train, {n_target} target train, ", end="")
    print(f"{len(ds.test_labels)} target test, {ds.num_classes} classes)")
    print(f"dataset_fingerprint: {split.fingerprint}")
    print(f"hash: {split.hash}")
    print(f"labeled source: all {ds.n_source} images")
    print(f"labeled target ({len(target_local)}), per class {per_class}: {target_local.tolist()}")
    print(f"unlabeled pool: the {n_target} target training images")
    print(f"manifest: {manifest_path(manifests, sid)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ssl_bench.algorithms import get_algorithm
    from ssl_bench.conformance import CHECKS, SLOW_CHECKS, run_checks

    load_plugins(args)
    try:
        cls = get_algorithm(args.algorithm)
    except ConfigError as exc:  # a name a plug-in registers is unknown until the plug-in is loaded
        raise ConfigError(
            f"{exc}; if {args.algorithm!r} comes from a plug-in, load it first: "
            f"ssl-bench check {args.algorithm} --plugin MODULE|FILE.py (docs/adding-an-algorithm.md#plug-ins)"
        ) from None
    checks = CHECKS + (SLOW_CHECKS if args.slow else [])
    print(f"conformance checks of algorithm {args.algorithm} ({cls.__module__}.{cls.__qualname__}):")
    failed = 0
    for check, error in run_checks(args.algorithm, checks):
        doc = (check.__doc__ or "").strip().splitlines()[0]
        print(f"  {'ok  ' if error is None else 'FAIL'} {check.__name__}: {doc if error is None else error}")
        failed += error is not None
    skipped = "" if args.slow else f", {len(SLOW_CHECKS)} slow check(s) not run (--slow)"
    print(f"{len(checks) - failed} passed, {failed} failed{skipped}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssl-bench", description="Semi-supervised learning benchmark suite.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "run",
        help="run recipes (every label budget x seed), skipping runs already recorded",
        description="Run TOML recipes: every label budget x seed of each grid. Runs already recorded with the "
        "same config hash are skipped; interrupted runs resume. Every recipe is validated before any training.",
    )
    p.add_argument("recipe", type=Path, nargs="+", help="recipe file(s), e.g. recipes/digits/supervised.toml")
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override a recipe value (TOML literal; repeatable), e.g. --set train.steps=500",
    )
    results_arg(p)
    p.add_argument("--download", action="store_true", help="download missing dataset files (needs a network)")
    p.add_argument("--device", help="training device: auto (default), cpu, cuda, cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    plugin_arg(p)
    g = p.add_argument_group("executing a grid (docs/grids.md#grids-ray-and-torchrun)")
    g.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local: worker processes on this machine (default); ray: Ray tasks on a local Ray or a cluster",
    )
    g.add_argument("--workers", type=int, default=1, help="runs at once (default 1: one after another in this process)")
    g.add_argument("--address", help="ray: address of an existing cluster (default: start a local Ray)")
    g.add_argument(
        "--cpus-per-run", type=int, default=None, help="CPU threads of each run (default: cores / workers; ray: 1)"
    )
    g.add_argument(
        "--gpus-per-run", type=float, default=0.0, help="ray: GPUs of each run, fractions allowed (default 0)"
    )
    g.add_argument(
        "--retries", type=int, default=1, help="extra attempts of a failed run, from its checkpoint (default 1)"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help="list registered algorithms, datasets, domain pairs, models and augmentations")
    p.add_argument("kind", nargs="?", choices=["algorithms", "datasets", "pairs", "models", "augmentations"])
    plugin_arg(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "check",
        help="run the conformance checks on an algorithm (built in or from a --plugin module or file)",
        description="Run the conformance checks every algorithm must pass (config defaults and citation, finite "
        "loss and gradients, unlabeled labels unused, determinism, state round-trip; with --slow also 'learns on "
        "tiny data') on ALGORITHM. Exit status 0 if all pass, 1 if any fails.",
    )
    p.add_argument("algorithm", metavar="ALGORITHM", help="registered algorithm name, e.g. fixmatch")
    p.add_argument("--slow", action="store_true", help="also run the slow checks (a few seconds per algorithm)")
    plugin_arg(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "split",
        help="print a split (e.g. digits.1@40-100 or digits-digits_m.1@ssda1) and save its manifest",
        description="Draw or read the split DATASET.SEED@LABELS-VALID, or the domain-adaptation split "
        "SOURCE-TARGET.SEED@uda / @ssdaK, verify it against the data, save its manifest under RESULTS_DIR/splits/ "
        "and print it.",
    )
    p.add_argument("split_id", metavar="ID", help="canonical split id, e.g. digits.1@40-100 or digits-digits_m.1@ssda1")
    results_arg(p)
    p.add_argument("--class-balance", default="balanced", choices=["balanced", "proportional"])
    p.add_argument("--data-root", help="dataset root folder (default: ~/.cache/ssl_bench/data)")
    p.add_argument("--image-size", type=int, default=0, help="domain pairs: the common side (default: the pair's)")
    p.add_argument("--download", action="store_true", help="download missing dataset files (needs a network)")
    plugin_arg(p)
    p.set_defaults(func=cmd_split)

    add_bench_parsers(sub)
    add_report_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SSLBenchError as exc:
        print(f"ssl-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ssl-bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of the command
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk where no write of ours maps it to a WriteError (torch, matplotlib, locks)
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f"could not write {exc.filename}" if exc.filename else "a write failed"
        print(f"ssl-bench: error: {where}: {os.strerror(exc.errno).lower()}", file=sys.stderr)
        return 2


def script() -> int:
    """The ``ssl-bench`` console script: ``main``, then the heap frozen (``gc.freeze``) before the interpreter
    exits. Otherwise its shutdown walks every object torch, scipy and matplotlib made: a rerun of a recorded smoke
    grid took 2.30 s instead of 1.86 s on this project's machine. Files are closed and records written before this
    point; only garbage cycles left at exit are not collected. Callers of ``main`` (the tests) keep their collector
    as it is."""
    import gc

    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(script())
