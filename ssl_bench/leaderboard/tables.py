"""Records as a pandas frame and the tables of the leaderboard: mean ± std over seeds, with n, per budget."""

from __future__ import annotations

from typing import Any

import pandas as pd

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
                "minutes": float(r.get("wall_s") or 0.0) / 60.0,
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


def with_minutes(table: pd.DataFrame, part: pd.DataFrame) -> pd.DataFrame:
    """Append ``min/run``: the mean wall time of the row's runs, in minutes."""
    minutes = part.groupby(ROW_KEYS)["minutes"].mean()
    table = table.reset_index()
    keys = pd.MultiIndex.from_frame(table[ROW_KEYS])
    table["min/run"] = [round(float(minutes.loc[k]), 1) for k in keys]
    return table


def ssl_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One table per dataset: rows (algorithm, augmentation, model, steps, k), columns label budgets, and the mean
    minutes per run of the row."""
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
        out[str(dataset)] = with_minutes(table.fillna("—"), part)
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
    return with_minutes(table.fillna("—"), da)
