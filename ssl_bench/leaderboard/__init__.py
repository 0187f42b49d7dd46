"""The leaderboard: run records aggregated into tables, paired comparisons and plots that state their protocol,
beside the papers' published numbers, written as ``README.md``, ``index.html`` and PNGs in one generation."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ssl_bench.atomic_write import atomic_write_text, write_failed
from ssl_bench.errors import ResultsDirError
from ssl_bench.leaderboard.markdown import render_brief, render_markdown
from ssl_bench.leaderboard.page import render_page
from ssl_bench.leaderboard.report import Report, build_report, export_rows
from ssl_bench.locks import exclusive
from ssl_bench.results.layout import require_results_dir
from ssl_bench.results.store import scan_records
from ssl_bench.writable import creation_problem

# plots a generation writes: one of an older generation that this one does not redraw is removed
PLOT_PREFIXES = ("accuracy_vs_labels_", "learning_curves_", "active_learning_", "exchange_rate", "active.png")
STAGE_PREFIX = ".leaderboard-"


def render(results_dir: Path) -> str:
    """The README text of the leaderboard of ``results_dir`` (nothing is written)."""
    return render_markdown(build_report(results_dir))


def write_leaderboard(results_dir: Path, csv: Path | None = None, json_path: Path | None = None) -> str:
    """Regenerate the leaderboard of ``results_dir`` (``generate``) and return its README text."""
    return generate(results_dir, csv, json_path)[1]


def brief(results_dir: Path) -> str:
    """Regenerate the leaderboard of ``results_dir`` and return what ``ssl-bench run`` prints of it: the tables of
    the runs recorded there and where the whole leaderboard is (``markdown.render_brief``)."""
    return render_brief(generate(results_dir)[0], str(results_dir))


def generate(results_dir: Path, csv: Path | None = None, json_path: Path | None = None) -> tuple[Report, str]:
    """Regenerate ``README.md``, ``index.html`` and the PNGs of ``results_dir`` from one read of its records, and
    return the report and the README text. Everything is written into a staging folder first and then moved in
    (plots, page, README last), so each file is either the previous generation's or this one's, complete, and a
    failure leaves the previous one in place. Generations take turns (a lock in the results directory): concurrent
    ones never interleave, and the staging folders of killed ones are removed by the next."""
    results_dir = Path(results_dir)
    require_results_dir(results_dir)
    refuse_read_only(results_dir)
    with exclusive(results_dir, "leaderboard"):
        for stale in results_dir.glob(f"{STAGE_PREFIX}*"):  # left by a killed generation: no live one holds it
            shutil.rmtree(stale, ignore_errors=True)
        report = build_report(results_dir)
        for name, why in report.unreadable:
            warn_unreadable(results_dir / name, why, "the leaderboard")
        readme, page = render_markdown(report), render_page(report)
        try:
            _stage_and_move(report, readme, page, results_dir)
        except OSError as exc:  # disk full, no permission: one line, the previous generation stays
            raise write_failed(Path(exc.filename) if exc.filename else results_dir, exc) from exc
    if csv is not None or json_path is not None:
        export(report, csv, json_path)
    return report, readme


def read_only(results_dir: Path) -> str | None:
    """Why nothing can be written in ``results_dir`` (a read-only mount, no permission), or None when it can."""
    if hasattr(os, "statvfs") and os.statvfs(results_dir).f_flag & os.ST_RDONLY:  # else access() says "permission"
        return "read-only file system"
    problem = creation_problem(results_dir)
    return None if problem is None else problem[1]


def refuse_read_only(results_dir: Path) -> None:
    """One line, before the lock (its file would be the first write), when the page cannot be written there."""
    why = read_only(results_dir)
    if why is not None:
        raise ResultsDirError(
            f"{results_dir} cannot be written ({why}): the leaderboard is not regenerated there; "
            "export its rows with --csv F or --json F, or copy the folder somewhere writable"
        )


def export_only(results_dir: Path, csv: Path | None, json_path: Path | None) -> str:
    """Export the rows of ``results_dir`` and return its README text, writing nothing there and taking no lock: for
    a folder that cannot be written (a shared, read-only mount), whose records no generation can be rewriting."""
    results_dir = Path(results_dir)
    require_results_dir(results_dir)
    report = build_report(results_dir)
    for name, why in report.unreadable:
        warn_unreadable(results_dir / name, why, "the export")
    export(report, csv, json_path)
    return render_markdown(report)


def _stage_and_move(report: Report, readme: str, page: str, results_dir: Path) -> None:
    """Write one generation into a staging folder, move its files in (README last), drop plots it did not redraw.
    A plot whose inputs are those of the previous generation's PNG is copied from it, not redrawn (plots.Plot)."""
    for name in [*report.pngs, "index.html", "README.md"]:  # else some files would move in and the rest fail
        if (results_dir / name).is_dir():
            raise ResultsDirError(f"{results_dir / name} is a folder where the leaderboard writes its {name}; move it")
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=results_dir))
    try:
        written = [n for n, plot in report.pngs.items() if plot.write(stage / n, reuse=results_dir / n) is not None]
        (stage / "index.html").write_text(page)
        (stage / "README.md").write_text(readme)
        for name in [*written, "index.html", "README.md"]:
            os.replace(stage / name, results_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for old in results_dir.glob("*.png"):
        if old.name.startswith(PLOT_PREFIXES) and old.name not in written:
            old.unlink()


def warn(message: str) -> None:
    print(f"ssl-bench: warning: {message}", file=sys.stderr)


def warn_unreadable(path: Path, why: str, purpose: str) -> None:
    warn(f"{path}: unreadable record ({why}), left out of {purpose}")


def read_records(results_dir: Path, purpose: str) -> list[dict]:
    """The valid records of ``results_dir`` for a command other than the leaderboard; a file under ``runs/`` that is
    not one is named on stderr with its reason, as the leaderboard names it, never dropped in silence."""
    require_results_dir(results_dir)
    scan = scan_records(results_dir)
    for path, why in scan.unreadable:
        warn_unreadable(path, why, purpose)
    return [rec for _, rec in scan.records]


def export(report: Report, csv: Path | None, json_path: Path | None) -> None:
    """One row per record (row keys, budget, seed, metrics, provenance) as CSV and/or JSON, written atomically."""
    rows = export_rows(report)
    if csv is not None:
        atomic_write_text(Path(csv), rows.to_csv(index=False))
    if json_path is not None:
        atomic_write_text(Path(json_path), json.dumps(json.loads(rows.to_json(orient="records")), indent=1) + "\n")
