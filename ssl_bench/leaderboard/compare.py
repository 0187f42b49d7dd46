"""Paired comparison of two leaderboard rows: per-seed differences on the splits both rows ran on.

Two rows of one dataset and budget that ran on the same labeled splits (same ``split_hash``) are compared split by
split: d_i = acc_A(split i) − acc_B(split i). The split is by far the largest source of variance in a small-label
run (one bad draw of labeled images costs every algorithm alike), and pairing removes it, so a difference that
overlapping error bars hide can still be resolved — or shown not to be. Reported per budget: the number of pairs
n, the mean difference with its 95 % Student-t interval (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n), the paired t-test's two-sided
p-value (``scipy.stats.ttest_rel``) and the exact Wilcoxon signed-rank p-value (which cannot go below 2/2ⁿ: 0.0625
at n = 5), and a one-line verdict that reads "not distinguishable" whenever the interval contains 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ssl_bench.errors import ConfigError
from ssl_bench.leaderboard.tables import ROW_KEYS

CONFIDENCE = 0.95
KEY_SEP = "/"


def row_key(row: pd.Series | dict) -> str:
    """``algorithm/augment/model/pool/steps/k``: the one string that names a leaderboard row."""
    return KEY_SEP.join(str(row[k]) for k in ROW_KEYS)


@dataclass(frozen=True)
class Paired:
    """The paired comparison of rows A and B at one budget (accuracies in %)."""

    dataset: str
    n_labels: int
    a: str  # row keys
    b: str
    seeds: list[int]
    diffs: list[float]  # acc_A − acc_B per shared split, in seed order
    mean: float
    low: float  # the 95 % interval of the mean difference
    high: float
    p_t: float | None  # paired t-test (None when n < 2 or every difference is equal)
    p_wilcoxon: float | None

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def verdict(self) -> str:
        name_a, name_b = self.a.split(KEY_SEP)[0], self.b.split(KEY_SEP)[0]
        if self.n < 2:
            return f"not distinguishable: {self.n} shared split(s), at least 2 are needed"
        if self.low <= 0.0 <= self.high:
            return f"not distinguishable at {CONFIDENCE:.0%}: the interval contains 0"
        better, worse = (name_a, name_b) if self.mean > 0 else (name_b, name_a)
        lo, hi = sorted((abs(self.low), abs(self.high)))
        return f"{better} beats {worse} by {abs(self.mean):.2f} points ({CONFIDENCE:.0%} CI {lo:.2f} to {hi:.2f})"


def paired(dataset: str, n_labels: int, a: str, b: str, frame_a: pd.DataFrame, frame_b: pd.DataFrame) -> Paired:
    """Join two rows' runs at one budget on their split and compare them (``frame_*``: records_frame rows)."""
    left = frame_a.drop_duplicates("split_hash").set_index("split_hash")
    right = frame_b.drop_duplicates("split_hash").set_index("split_hash")
    shared = left.index.intersection(right.index)
    joined = pd.DataFrame(
        {"seed": left.loc[shared, "seed"], "a": left.loc[shared, "acc"], "b": right.loc[shared, "acc"]}
    )
    joined = joined.sort_values("seed")
    d = (joined["a"] - joined["b"]).to_numpy(dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    low = high = mean
    p_t = p_w = None
    if n >= 2:
        from scipy import stats  # here, not at import: ≈1 s that a leaderboard without paired rows does not need

        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * d.std(ddof=1) / np.sqrt(n))
        low, high = mean - half, mean + half
        if np.any(d != d[0]):
            p_t = float(stats.ttest_rel(joined["a"], joined["b"]).pvalue)
        if np.any(d != 0):
            p_w = float(stats.wilcoxon(d, method="exact" if n <= 25 else "auto").pvalue)
    return Paired(
        dataset, int(n_labels), a, b, [int(s) for s in joined["seed"]], [float(x) for x in d], mean, low, high, p_t, p_w
    )


def select_rows(frame: pd.DataFrame, spec: str) -> list[str]:
    """The row keys ``spec`` names: an algorithm name (every row of that algorithm, whatever its variant, as in
    ``softmatch[usb]``), an algorithm with its variant, or a whole row key."""
    keys = sorted({row_key(r) for _, r in frame.iterrows()})
    if KEY_SEP in spec:
        return [spec] if spec in keys else []
    return [k for k in keys if spec in (k.split(KEY_SEP)[0], k.split(KEY_SEP)[0].split("[")[0])]


def compare(
    frame: pd.DataFrame, a: str, b: str, dataset: str | None = None, labels: list[int] | None = None
) -> list[Paired]:
    """Paired comparisons of A and B (algorithm names or row keys) per dataset and budget of the ssl records."""
    ssl = frame[(frame["setting"] == "ssl") & (frame["round"].isna())] if not frame.empty else frame
    if ssl.empty:
        raise ConfigError("no ssl run records to compare (run some recipes first, or check --results-dir)")
    if dataset is not None:
        if dataset not in set(ssl["dataset"]):
            raise ConfigError(f"--dataset {dataset!r}: no records; datasets recorded: {sorted(set(ssl['dataset']))}")
        ssl = ssl[ssl["dataset"] == dataset]
    ssl = ssl.assign(row=[row_key(r) for _, r in ssl.iterrows()])
    for name in (a, b):
        if not select_rows(ssl, name):
            algorithms = sorted({r.split(KEY_SEP)[0] for r in ssl["row"]})
            where = f" of {dataset}" if dataset else ""
            raise ConfigError(
                f"{name!r} names no recorded row{where}: algorithms recorded: {', '.join(algorithms)} "
                "(or give a whole row key, as the leaderboard prints it)"
            )
    out = []
    for ds, part in ssl.groupby("dataset", sort=True):
        rows_a, rows_b = select_rows(part, a), select_rows(part, b)
        if not rows_a or not rows_b:
            continue
        for name, rows in ((a, rows_a), (b, rows_b)):
            if len(rows) > 1:
                raise ConfigError(f"{name!r} names {len(rows)} rows of {ds}; give one row key: {', '.join(rows)}")
        if rows_a == rows_b:
            raise ConfigError(f"{a!r} and {b!r} name the same row of {ds} ({rows_a[0]}): compare two different rows")
        in_a, in_b = part[part["row"] == rows_a[0]], part[part["row"] == rows_b[0]]
        budgets = sorted(set(in_a["n_labels"]) & set(in_b["n_labels"]))
        if labels:
            budgets = [n for n in budgets if n in labels]
        for n in budgets:
            at = part[part["n_labels"] == n]
            out.append(paired(str(ds), n, rows_a[0], rows_b[0], at[at["row"] == rows_a[0]], at[at["row"] == rows_b[0]]))
    if not out:
        where = f" of {dataset}" if dataset else ""
        raise ConfigError(
            f"no budget{where} where both {a!r} and {b!r} have records"
            + (f" at --labels {' '.join(map(str, labels))}" if labels else "")
            + f"; rows recorded: {', '.join(sorted(set(ssl['row'])))}"
        )
    return out


def format_paired(p: Paired) -> str:
    """Several lines: the budget and rows, the per-seed differences, the interval, the tests and the verdict."""
    pt = "—" if p.p_t is None else f"{p.p_t:.3g}"
    pw = "—" if p.p_wilcoxon is None else f"{p.p_wilcoxon:.3g}"
    per_seed = ", ".join(f"seed {s}: {d:+.2f}" for s, d in zip(p.seeds, p.diffs, strict=True))
    return "\n".join(
        [
            f"{p.dataset} @ {p.n_labels} labels: {p.a} − {p.b}, n = {p.n} shared splits",
            f"  per seed: {per_seed}",
            f"  mean difference {p.mean:+.2f} points, {CONFIDENCE:.0%} CI [{p.low:+.2f}, {p.high:+.2f}]; "
            f"paired t-test p = {pt}, Wilcoxon signed-rank p = {pw}",
            f"  verdict: {p.verdict}",
        ]
    )


def comparison_table(
    frame: pd.DataFrame, pairs: list[tuple[str, str]], labels: list[int] | None = None
) -> pd.DataFrame:
    """The leaderboard's compact "A vs B" table: one line per (pair, budget) that both rows have."""
    rows = []
    for a, b in pairs:
        try:
            found = compare(frame, a, b, labels=labels)
        except ConfigError:
            continue
        for p in found:
            rows.append(
                {
                    "dataset": p.dataset,
                    "labels": p.n_labels,
                    "A vs B": f"{a} vs {b}",
                    "n": p.n,
                    "mean A − B": f"{p.mean:+.2f}",
                    "95 % CI": f"[{p.low:+.2f}, {p.high:+.2f}]",
                    "p (paired t)": "—" if p.p_t is None else f"{p.p_t:.3g}",
                    "verdict": p.verdict,
                }
            )
    return pd.DataFrame(rows)
