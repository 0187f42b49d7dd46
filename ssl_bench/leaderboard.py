"""Aggregate run records into tables that state their protocol: mean ± std over seeds, with n, per budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ssl_bench.results import load_records
from ssl_bench.utils import atomic_write_text

PROTOCOL = (
    "Metric: test accuracy (%) of the EMA model, median of the last k evaluations of each run (k per row below; "
    "the papers use k = 20), never the best value seen. Cells: mean ± sample std over seeds (n = number of seeds). "
    "Rows are split by augmentation, backbone (with its width), unlabeled pool (all, or a subset of that size) and "
    "step budget so that only runs of one protocol are averaged together."
)


# one protocol per row: runs that differ in any of these are never averaged together
ROW_KEYS = ["algorithm", "augment", "model", "pool", "steps", "k"]


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in records:
        rows.append(
            {
                "dataset": r["dataset"],
                "setting": r.get("setting") or "ssl",
                "round": r.get("round"),
                "algorithm": r["algorithm"],
                "augment": r.get("augmentation", "?"),
                "model": model_label(r),
                "pool": pool_label(r),
                "steps": int(r.get("steps", 0)),
                "k": int(r.get("median_k", 0)),
                "n_labels": int(r["n_labels"]),
                "column": da_column(r),
                "target_k": int(r.get("target_labels_per_class") or 0),
                "seed": r["seed"],
                "acc": 100.0 * float(r["acc_median"]),
            }
        )
    return pd.DataFrame(rows)


def da_column(record: dict[str, Any]) -> str | None:
    """``source → target · uda`` or ``· ssda-k`` for a domain-adaptation record; None in the ssl setting."""
    setting = record.get("setting") or "ssl"
    if setting == "ssl":
        return None
    k = record.get("target_labels_per_class") or 0
    return f"{record.get('source')} → {record.get('target')} · {setting if setting == 'uda' else f'ssda-{k}'}"


def model_label(record: dict[str, Any]) -> str:
    """Backbone name with its width where it has one (wrn28-2, small_cnn-2), so backbones never mix in a row."""
    name = record.get("model", "?")
    width = (record.get("config") or {}).get("model", {}).get("width")
    return name if width is None or str(name).startswith("timm:") else f"{name}-{width}"


def pool_label(record: dict[str, Any]) -> str:
    """``all``, or the size of the unlabeled subset the run used (data.n_unlabeled), so pools never mix."""
    n = (record.get("config") or {}).get("data", {}).get("n_unlabeled", 0)
    return "all" if not n else str(n)


def mean_std_cell(group: pd.Series) -> str:
    n = len(group)
    std = group.std(ddof=1) if n > 1 else 0.0
    return f"{group.mean():.2f} ± {std:.2f} (n={n})"


def ssl_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One table per dataset: rows (algorithm, augmentation, model, steps, k), columns label budgets."""
    out = {}
    if df.empty:
        return out
    ssl = df[(df["setting"] == "ssl") & (df["round"].isna())]
    for dataset, part in ssl.groupby("dataset", sort=True):
        table = part.pivot_table(
            index=ROW_KEYS,
            columns="n_labels",
            values="acc",
            aggfunc=mean_std_cell,
        )
        table.columns = [f"{c} labels" for c in table.columns]
        out[str(dataset)] = table.fillna("—").reset_index()
    return out


def da_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """Domain adaptation: rows (method, augmentation, model, pool, steps, k), columns pair × setting."""
    if df.empty:
        return None
    da = df[df["setting"].isin(["uda", "ssda"])]
    if da.empty:
        return None
    table = da.pivot_table(
        index=ROW_KEYS,
        columns="column",
        values="acc",
        aggfunc=mean_std_cell,
    )
    order = da.drop_duplicates("column").sort_values(["dataset", "target_k"])["column"]  # per pair: uda, ssda-1, ...
    table = table[list(order)]
    table.columns = list(table.columns)
    return table.fillna("—").reset_index()


DA_PROTOCOL = (
    "Domain adaptation (AdaMatch's settings, reference-algorithms.md §6): accuracy on the target domain's test set. "
    "uda: every source image labeled, target images unlabeled; ssda-k: plus k labeled target images per class. "
    "`supervised` trains on the labeled images only (source only in uda): the baseline the other rows of a column "
    "must beat."
)

ACTIVE_PROTOCOL = (
    "Active learning (MMA): one row per acquisition function; columns are the labels at each round; a cell is the "
    "mean ± std over seeds of the median of the last k evaluations inside that round. `random` is the baseline: the "
    "same label growth with uniformly drawn images."
)


def render(results_dir: Path) -> str:
    from ssl_bench.active.report import active_frame, active_tables, exchange_rates, plot_active, plot_exchange

    records = load_records(results_dir)
    frame = records_frame(records)
    tables = ssl_tables(frame)
    da = da_table(frame)
    lines = [
        "# Leaderboard",
        "",
        "Generated by `ssl-bench leaderboard` from the run records under this folder; do not edit by hand.",
        "",
        PROTOCOL,
        "",
    ]
    if not tables and da is None:
        lines.append("No run records yet.")
    for dataset, table in tables.items():
        lines += [f"## {dataset}", "", table.to_markdown(index=False), ""]
    if da is not None:
        lines += ["## Domain adaptation", "", DA_PROTOCOL, "", da.to_markdown(index=False), ""]
    active = active_frame(records)
    for dataset, table in active_tables(active).items():
        lines += [f"## {dataset}: active learning", "", ACTIVE_PROTOCOL, "", table.to_markdown(index=False), ""]
    if plot_active(active, Path(results_dir) / "active.png"):
        lines += ["![accuracy against labels per acquisition function](active.png)", ""]
    rates = exchange_rates(records)
    if not rates.empty and rates["label_worth_unlabeled"].notna().any():
        lines += [
            "## What a label is worth",
            "",
            "Unlabeled images one label is worth (`ssl-bench exchange-rate`).",
            "",
            rates.to_markdown(index=False, floatfmt=".3g"),
            "",
        ]
        if plot_exchange(rates, Path(results_dir) / "exchange_rate.png"):
            lines += ["![unlabeled images one label is worth](exchange_rate.png)", ""]
    lines.append(f"{len(records)} record(s).")
    return "\n".join(lines) + "\n"


def write_leaderboard(results_dir: Path) -> str:
    """Regenerate ``<results_dir>/README.md`` and return its text."""
    text = render(results_dir)
    atomic_write_text(Path(results_dir) / "README.md", text)
    return text
