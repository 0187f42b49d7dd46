"""Active-learning reports of the leaderboard: accuracy against labels per acquisition, and what one label is worth.

The exchange-rate analysis follows the question of MMA (arXiv 1912.00594, Section 5): how many unlabeled images buy the
accuracy that one more label buys. Here it is estimated by finite differences between recorded runs.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from ssl_bench.identity import NON_SEMANTIC
from ssl_bench.leaderboard.tables import mean_std_cell


def active_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "dataset": r["dataset"],
            "algorithm": r["algorithm"],
            "acquisition": str(r.get("acquisition")),
            "round": int(r["round"]),
            "n_labels": int(r["n_labels"]),
            "seed": r["seed"],
            "acc": 100.0 * float(r["acc_median"]),
        }
        for r in records
        if r.get("round") is not None
    ]
    return pd.DataFrame(rows)


def active_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per dataset: rows (algorithm, acquisition), columns label counts; mean ± std over seeds of each round."""
    out: dict[str, pd.DataFrame] = {}
    if df.empty:
        return out
    for dataset, part in df.groupby("dataset", sort=True):
        table = part.pivot_table(
            index=["algorithm", "acquisition"], columns="n_labels", values="acc", aggfunc=mean_std_cell
        )
        table.columns = [f"{c}" for c in table.columns]
        out[str(dataset)] = table.fillna("—").reset_index()
    return out


def pool_protocol(record: dict[str, Any]) -> str:
    """What a pool-size experiment holds fixed: the run's config without its seed, label budget and pool size (and
    without the keys that do not change what it computes)."""
    config = json.loads(json.dumps(record.get("config") or {}))
    config.pop("seed", None)
    for section, keys in {**NON_SEMANTIC, "data": (*NON_SEMANTIC["data"], "n_labels", "n_unlabeled")}.items():
        for key in keys:
            config.get(section, {}).pop(key, None)
    return json.dumps(config, sort_keys=True)


def exchange_rates(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Unlabeled images one label is worth, per (dataset, algorithm, budget), from non-active runs.

    label slope  = (acc(L_next, U_full) − acc(L, U_full)) / (L_next − L), at the largest unlabeled pool;
    pool slope   = (acc(L, U_b) − acc(L, U_a)) / (U_b − U_a), between the two largest pools recorded at L;
    worth        = label slope / pool slope (accuracies are means over seeds). Undefined where more unlabeled
    images did not raise accuracy.

    Only pool-size experiments count (runs with an explicit ``data.n_unlabeled`` subset), and only runs of one
    protocol (``pool_protocol``) are compared with each other: a full-pool run of another recipe never enters.
    """
    rows = [
        {
            "dataset": r["dataset"],
            "algorithm": r["algorithm"],
            "protocol": pool_protocol(r),
            "n_labels": int(r["n_labels"]),
            "n_unlabeled": int(r["n_unlabeled"]),
            "acc": 100.0 * float(r["acc_median"]),
        }
        for r in records
        if r.get("round") is None
        and r.get("n_unlabeled") is not None
        and ((r.get("config") or {}).get("data") or {}).get("n_unlabeled")
        and (r.get("setting") or "ssl") == "ssl"
    ]
    out: list[dict[str, Any]] = []
    if not rows:
        return pd.DataFrame(out)
    keys = ["dataset", "algorithm", "protocol", "n_labels", "n_unlabeled"]
    df = pd.DataFrame(rows).groupby(keys)["acc"].mean().reset_index()
    for (dataset, algo, _), part in df.groupby(["dataset", "algorithm", "protocol"]):
        budgets = sorted(part["n_labels"].unique())
        for i, budget in enumerate(budgets):
            at = part[part["n_labels"] == budget].sort_values("n_unlabeled")
            row = {"dataset": dataset, "algorithm": algo, "n_labels": budget, "pools": len(at)}
            label_slope = pool_slope = None
            if i + 1 < len(budgets):
                nxt = part[part["n_labels"] == budgets[i + 1]]
                u = min(at["n_unlabeled"].max(), nxt["n_unlabeled"].max())
                a0, a1 = at[at["n_unlabeled"] == u]["acc"], nxt[nxt["n_unlabeled"] == u]["acc"]
                if len(a0) and len(a1):
                    label_slope = (float(a1.iloc[0]) - float(a0.iloc[0])) / (budgets[i + 1] - budget)
            if len(at) >= 2:
                (ua, aa), (ub, ab) = at[["n_unlabeled", "acc"]].iloc[-2], at[["n_unlabeled", "acc"]].iloc[-1]
                pool_slope = (ab - aa) / (ub - ua)
            row["acc_per_label"] = label_slope
            row["acc_per_1k_unlabeled"] = None if pool_slope is None else 1000 * pool_slope
            row["label_worth_unlabeled"] = (
                label_slope / pool_slope if label_slope is not None and pool_slope and pool_slope > 0 else None
            )
            out.append(row)
    return pd.DataFrame(out)
