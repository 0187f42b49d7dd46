"""Records as a pandas frame and the tables of the leaderboard: mean ± std over seeds, with n, per budget."""

from __future__ import annotations

from typing import Any

import pandas as pd

# one protocol per row: runs that differ in any of these are never averaged together
ROW_KEYS = ["algorithm", "augment", "model", "pool", "steps", "k"]


def records_frame(records: list[dict[str, Any]], files: list[str] | None = None) -> pd.DataFrame:
    """One row per record: the row keys, the budget and split, the headline accuracy (%) and its provenance
    (``file``: the record's path relative to the results directory, when ``files`` gives them)."""
    rows = []
    for i, r in enumerate(records):
        recipe = r.get("recipe") or {}
        rows.append(
            {
                "dataset": r["dataset"],
                "setting": r.get("setting") or "ssl",
                "round": r.get("round"),
                "algorithm": algorithm_label(r),
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
                "split_hash": r.get("split_hash") or r.get("split"),
                "commit": (r.get("git_commit") or "?")[:10] + ("+dirty" if r.get("git_dirty") else ""),
                "file": files[i] if files is not None else "",
                "history": [tuple(h) for h in r.get("acc_history") or []],
                "recipe": recipe.get("name", ""),
                "description": recipe.get("description", ""),
            }
        )
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


FRAME_COLUMNS = [
    "dataset", "setting", "round", "algorithm", "augment", "model", "pool", "steps", "k", "n_labels", "column",
    "target_k", "seed", "acc", "minutes", "split_hash", "commit", "file", "history", "recipe", "description",
]  # fmt: skip


def da_column(record: dict[str, Any]) -> str | None:
    """``source → target · uda`` or ``· ssda-k`` for a domain-adaptation record; None in the ssl setting."""
    setting = record.get("setting") or "ssl"
    if setting == "ssl":
        return None
    k = record.get("target_labels_per_class") or 0
    return f"{record.get('source')} → {record.get('target')} · {setting if setting == 'uda' else f'ssda-{k}'}"


def algorithm_label(record: dict[str, Any]) -> str:
    """The algorithm's name, with the variant its config names where it has one (``softmatch[torchssl]``,
    ``dash[usb]``): runs that follow two code bases' semantics never share a row."""
    variant = (record.get("config") or {}).get("algorithm", {}).get("variant")
    return record["algorithm"] if not isinstance(variant, str) or not variant else f"{record['algorithm']}[{variant}]"


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
    out: dict[str, pd.DataFrame] = {}
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


def published_cell(value: float, std: float | None, verified: bool) -> str:
    """``94.93 ± 0.65 (published)``; an unverified number is marked with ``?``."""
    spread = "" if std is None or pd.isna(std) else f" ± {std:.2f}"
    return f"{value:.2f}{spread} (published{'' if verified else ', unverified'})"


PUBLISHED_KEYS = ["algorithm", "source", "model", "schedule", "seeds", "evaluation"]


def published_table(published: pd.DataFrame) -> pd.DataFrame:
    """Published rows of one dataset as leaderboard rows: method, source, protocol (seeds and the evaluation rule
    beside them, so a best-during-training number is never read as a median of the last evaluations), one column
    per budget. Rows of one method and source under two rules never share a line."""
    rows: dict[tuple[str, ...], dict[str, str]] = {}  # row key -> {"<budget> labels": cell}
    for _, r in published.sort_values(["paper", "method", "n_labels"]).iterrows():
        source = f"{r['paper']}, {r['table']} (arXiv {r['arxiv']})"
        key = (r["method"], source, r["backbone"], r["schedule"], r["seeds"], r.get("evaluation", "not stated"))
        row = rows.setdefault(key, {})
        row[f"{int(r['n_labels'])} labels"] = published_cell(r["acc"], r["acc_std"], bool(r["verified"]))
    table = pd.DataFrame([{**dict(zip(PUBLISHED_KEYS, key, strict=True)), **cells} for key, cells in rows.items()])
    budgets = sorted({int(c.split()[0]) for c in table.columns if c.endswith(" labels")})
    return table[[*PUBLISHED_KEYS, *[f"{b} labels" for b in budgets]]].fillna("—")


def protocol_differences(ours: pd.DataFrame, published: pd.DataFrame) -> str:
    """One sentence naming what our rows of a dataset do differently from its published rows (empty if nothing)."""
    if ours.empty or published.empty:
        return ""
    diffs = []
    our_models, their_models = sorted(set(ours["model"])), sorted(set(published["backbone"]))
    if set(our_models) != set(their_models):
        diffs.append(f"backbone {', '.join(our_models)} (ours) vs {', '.join(their_models)} (published)")
    our_steps = sorted({int(s) for s in ours["steps"]})
    theirs = "; ".join(sorted(set(published["schedule"])))
    diffs.append(f"schedule {', '.join(f'{s:,} steps' for s in our_steps)} (ours) vs {theirs} (published)")
    our_k = sorted({int(k) for k in ours["k"]})
    rules = sorted(set(published["evaluation"])) if "evaluation" in published else ["median of last 20"]
    if rules != ["median of last 20"] or our_k != [20]:
        ours_rule = f"median of the last {', '.join(map(str, our_k))} evaluations"
        diffs.append(f"{ours_rule} (ours) vs {', '.join(rules)} (published)")
    return "Protocol differences from the published rows: " + "; ".join(diffs) + "."
