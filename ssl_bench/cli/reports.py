"""The ``ssl-bench`` commands that read recorded results: leaderboard, compare, exchange-rate."""

from __future__ import annotations

import argparse
from pathlib import Path

from ssl_bench.cli.args import path_arg, results_arg
from ssl_bench.errors import ConfigError, SSLBenchError


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from ssl_bench.leaderboard import export_only, read_only, warn, write_leaderboard
    from ssl_bench.results.layout import require_results_dir
    from ssl_bench.writable import check_output_file

    check_output_file(args.csv, "--csv")  # before the generation: no new leaderboard beside a failed export
    check_output_file(args.json, "--json")
    check_exports(args.results_dir, {"--csv": args.csv, "--json": args.json})
    require_results_dir(args.results_dir)
    why = read_only(args.results_dir) if args.csv is not None or args.json is not None else None
    if why is not None:  # a shared, read-only folder: its rows can still be exported
        text = export_only(args.results_dir, csv=args.csv, json_path=args.json)
        warn(f"{args.results_dir} cannot be written ({why}): rows exported, the leaderboard there left as it is")
        print(text)
        return 0
    print(write_leaderboard(args.results_dir, csv=args.csv, json_path=args.json))
    return 0


def check_exports(results_dir: Path, exports: dict[str, Path | None]) -> None:
    """Refuse an export that would overwrite a file of the generation (README.md, index.html, a plot) or the other
    export, before anything is written."""
    seen: dict[Path, str] = {}
    for option, path in exports.items():
        if path is None:
            continue
        where = Path(path).resolve()
        if where in seen:
            raise ConfigError(f"{option} and {seen[where]} name the same file {path}: give each its own")
        seen[where] = option
        if where.parent == Path(results_dir).resolve() and (
            where.name in ("README.md", "index.html") or where.suffix == ".png"
        ):
            raise ConfigError(f"{option} {path} would overwrite the leaderboard's {where.name}: choose another file")


def cmd_compare(args: argparse.Namespace) -> int:
    from ssl_bench.leaderboard import read_records
    from ssl_bench.leaderboard.compare import compare, format_paired, provenance_frame

    frame = provenance_frame(read_records(args.results_dir, "the comparison"))
    frame_b = folders = None
    if args.results_dir_b is not None:
        frame_b = provenance_frame(read_records(args.results_dir_b, "the comparison"))
        folders = (str(args.results_dir), str(args.results_dir_b))
    found = compare(frame, args.a, args.b, args.dataset, args.labels, frame_b=frame_b)
    print("\n\n".join(format_paired(p, folders) for p in found))
    return 0


def cmd_exchange_rate(args: argparse.Namespace) -> int:
    from ssl_bench.leaderboard import read_records
    from ssl_bench.leaderboard.active import exchange_rates
    from ssl_bench.leaderboard.plots import Plot, plot_exchange

    rates = exchange_rates(read_records(args.results_dir, "the exchange rates"))
    if rates.empty:
        raise SSLBenchError(
            f"no records with n_unlabeled under {args.results_dir}: run a recipe at several label budgets and "
            "unlabeled pool sizes (data.n_unlabeled) first, e.g. recipes/digits/exchange_rate.toml"
        )
    print(rates.to_markdown(index=False, floatfmt=".3g"))
    # drawn as the leaderboard draws it (its digest chunk included), so that the next generation keeps this file
    path = Plot(plot_exchange, (rates,)).write(args.results_dir / "exchange_rate.png")
    print(f"plot: {path}" if path else "no plot: no budget had two pool sizes with a gain from more unlabeled data")
    return 0


def add_report_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "exchange-rate",
        help="how many unlabeled images one label is worth, per budget, from recorded runs",
        description="Estimate, from records of runs at several label budgets and unlabeled pool sizes "
        "(data.n_unlabeled), how many unlabeled images one label is worth at each budget; print the table and "
        "draw RESULTS_DIR/exchange_rate.png.",
    )
    results_arg(p)
    p.set_defaults(func=cmd_exchange_rate)

    p = sub.add_parser(
        "compare",
        help="paired comparison of two rows on the splits both ran on: differences, 95%% CI, tests, verdict",
        description="Compare rows A and B (algorithm names, or row keys algorithm/augment/model/pool/steps/k as "
        "printed when a name is ambiguous) split by split: for each dataset and label budget both have, the "
        "per-seed differences A - B on the shared splits, their mean with a 95% Student-t interval, the paired "
        "t-test and Wilcoxon signed-rank p-values, and a verdict; with the commits and devices of each side, and a "
        "warning when they differ or records name no host. --results-dir-b takes B from a second results folder "
        "(A and B may then name the same row: one algorithm on two machines or commits).",
    )
    p.add_argument("a", help="row A: an algorithm name or a row key")
    p.add_argument("b", help="row B: an algorithm name or a row key")
    p.add_argument("--dataset", help="only this dataset")
    p.add_argument("--labels", type=int, nargs="+", metavar="N", help="only these label budgets")
    results_arg(p)
    p.add_argument(
        "--results-dir-b",
        type=path_arg,
        metavar="DIR",
        help="read row B's records from DIR (A's from --results-dir); default: both from --results-dir",
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "leaderboard",
        help="regenerate RESULTS_DIR/README.md, index.html and the plots from the run records; print the README",
        description="Regenerate the leaderboard of RESULTS_DIR from its run records in one generation: README.md "
        "(tables, published numbers, paired comparisons), index.html (the same, sortable and filterable, with the "
        "records behind every cell) and the PNG plots; print the README. --csv/--json export one row per record "
        "as well; from a RESULTS_DIR that cannot be written (a read-only mount) they export only, writing nothing "
        "there, where without them the command is refused.",
    )
    results_arg(p)
    p.add_argument(
        "--csv",
        type=path_arg,
        metavar="F",
        help="also write one row per record to the CSV file F (alone, from a read-only RESULTS_DIR)",
    )
    p.add_argument(
        "--json",
        type=path_arg,
        metavar="F",
        help="also write one row per record to the JSON file F (alone, from a read-only RESULTS_DIR)",
    )
    p.set_defaults(func=cmd_leaderboard)
