"""One leaderboard generation: every table, comparison and plot computed once from one read of the records.

The README, the page, the PNGs and the exports are all rendered from the same ``Report``, so they can never disagree
about which records they show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import ssl_bench.leaderboard.plots as plots
from ssl_bench.leaderboard.active import active_frame, active_tables, exchange_rates
from ssl_bench.leaderboard.compare import comparison_table, row_key
from ssl_bench.leaderboard.published import load_published
from ssl_bench.leaderboard.tables import (
    ROW_KEYS,
    da_table,
    protocol_differences,
    published_table,
    records_frame,
    ssl_tables,
)
from ssl_bench.results.store import scan_records

BASELINE = "supervised"


@dataclass
class Section:
    """The tables of one dataset: our rows, the published rows, how their protocols differ, the comparisons."""

    dataset: str
    ours: pd.DataFrame | None  # the leaderboard table of our rows (None: no runs of ours)
    published: pd.DataFrame | None
    differences: str
    comparisons: pd.DataFrame
    plots: list[tuple[str, str]] = field(default_factory=list)  # (file name, alt text)
    frame: pd.DataFrame | None = None  # the records behind ``ours``, one row per record

    def recipes(self) -> list[tuple[str, str]]:
        """(name, description) of every named recipe behind ``ours``, sorted: record files are named by config hash,
        so their order is no order for a reader, and would change with the hash."""
        f = self.frame
        if f is None or f.empty:
            return []
        named = f[f["recipe"] != ""].drop_duplicates(["recipe", "description"])
        return sorted(zip(named["recipe"], named["description"], strict=True))


@dataclass
class Report:
    records: list[dict[str, Any]]
    frame: pd.DataFrame
    sections: list[Section]
    published_only: list[Section]  # datasets with published numbers and no runs of ours
    published_da: pd.DataFrame | None
    da: pd.DataFrame | None
    active: dict[str, pd.DataFrame]
    active_plots: dict[str, str]
    rates: pd.DataFrame
    rate_plot: str | None
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file under the results dir, why)
    pngs: dict[str, plots.Plot] = field(default_factory=dict)  # file name -> what draws it


def main_job_pairs(part: pd.DataFrame) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(each SSL row vs the supervised row of its protocol, every pair of SSL rows of one protocol).

    Two rows share a protocol when model, pool, steps and k agree (the algorithm and its augmentation differ)."""
    keys = sorted({row_key(r) for _, r in part.iterrows()})
    by_protocol: dict[tuple, list[str]] = {}
    for key in keys:
        algo, _augment, *rest = key.split("/")
        by_protocol.setdefault(tuple(rest), []).append(key)
    vs_baseline, among = [], []
    for rows in by_protocol.values():
        base = [r for r in rows if r.split("/")[0] == BASELINE]
        ssl = [r for r in rows if r.split("/")[0] != BASELINE]
        if len(base) == 1:
            vs_baseline += [(r, base[0]) for r in ssl]
        among += [(a, b) for i, a in enumerate(ssl) for b in ssl[i + 1 :]]
    return vs_baseline, among


def comparisons(part: pd.DataFrame) -> pd.DataFrame:
    vs_baseline, among = main_job_pairs(part)
    smallest = [int(part["n_labels"].min())] if not part.empty else None
    table = pd.concat(
        [comparison_table(part, vs_baseline), comparison_table(part, among, labels=smallest)], ignore_index=True
    )
    if not table.empty:  # row keys are long: within one protocol the algorithm names say it
        table["A vs B"] = [" vs ".join(k.split("/")[0] for k in ab.split(" vs ")) for ab in table["A vs B"]]
    return table


def build_report(results_dir: Path) -> Report:
    results_dir = Path(results_dir)
    scan = scan_records(results_dir)
    found = scan.records
    records = [r for _, r in found]
    frame = records_frame(records, [p.relative_to(results_dir).as_posix() for p, _ in found])
    published = load_published()
    pub_ssl = published[published["setting"] == "ssl"]
    tables = ssl_tables(frame)
    report = Report(records, frame, [], [], None, da_table(frame), {}, {}, exchange_rates(records), None)
    report.unreadable = [(p.relative_to(results_dir).as_posix(), why) for p, why in scan.unreadable]
    ssl = frame[(frame["setting"] == "ssl") & frame["round"].isna()] if not frame.empty else frame
    for dataset in sorted(set(tables) | set(pub_ssl["dataset"])):
        ours = ssl[ssl["dataset"] == dataset] if not ssl.empty else ssl
        pub = pub_ssl[pub_ssl["dataset"] == dataset]
        section = Section(
            dataset,
            tables.get(dataset),
            published_table(pub) if not pub.empty else None,
            protocol_differences(ours, pub),
            comparisons(ours) if not ours.empty else pd.DataFrame(),
            frame=ours,
        )
        name = f"accuracy_vs_labels_{plots.slug(dataset)}.png"
        report.pngs[name] = plots.Plot(plots.plot_budgets, (ours, pub, dataset), shared=ours.empty)
        section.plots.append((name, f"{dataset}: accuracy against label budget"))
        if not ours.empty and ours["history"].map(len).gt(0).any():
            name = f"learning_curves_{plots.slug(dataset)}.png"
            report.pngs[name] = plots.Plot(plots.plot_curves, (ours, dataset))
            section.plots.append((name, f"{dataset}: learning curves"))
        (report.sections if section.ours is not None else report.published_only).append(section)
    pub_da = published[published["setting"] != "ssl"]
    if not pub_da.empty:
        columns = ["method", "dataset", "setting", "metric", "value", "std", "backbone", "seeds", "evaluation"]
        columns += ["paper", "table", "arxiv"]
        report.published_da = pub_da[[*columns, "verified"]].reset_index(drop=True)
    active = active_frame(records)
    report.active = active_tables(active)
    for dataset in report.active:
        name = f"active_learning_{plots.slug(dataset)}.png"
        report.pngs[name] = plots.Plot(plots.plot_active, (active, dataset))
        report.active_plots[dataset] = name
    if not report.rates.empty and report.rates["label_worth_unlabeled"].notna().any():
        report.rate_plot = "exchange_rate.png"
        report.pngs[report.rate_plot] = plots.Plot(plots.plot_exchange, (report.rates,))
    return report


def export_rows(report: Report) -> pd.DataFrame:
    """One row per record: the dataset, the row keys, the budget, split and seed, metrics and provenance."""
    f = report.frame
    if f.empty:
        return pd.DataFrame(columns=["dataset", "setting", *ROW_KEYS, "n_labels", "seed", "acc"])
    out = f[["dataset", "setting", "column", "round", *ROW_KEYS, "n_labels", "seed", "split_hash", "acc", "minutes"]]
    out = out.rename(columns={"column": "da_column", "acc": "acc_median_pct"})
    extra = pd.DataFrame(
        {
            "acc_final_pct": [100.0 * float(r.get("acc_final", float("nan"))) for r in report.records],
            "acquisition": [r.get("acquisition") for r in report.records],
            "config_hash": [r.get("config_hash") for r in report.records],
            "git_commit": [r.get("git_commit") for r in report.records],
            "recipe": f["recipe"].to_numpy(),
            "record_file": f["file"].to_numpy(),
        }
    )
    return pd.concat([out.reset_index(drop=True), extra], axis=1)
