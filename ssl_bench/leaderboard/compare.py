"""Paired comparison of two leaderboard rows: per-seed differences on the splits both rows ran on.

Two rows of one dataset and budget that ran on the same labeled splits (same ``split_hash``) are compared split by
split: d_i = acc_A(split i) − acc_B(split i). The split is by far the largest source of variance in a small-label
run (one bad draw of labeled images costs every algorithm alike), and pairing removes it, so a difference that
overlapping error bars hide can still be resolved — or shown not to be. Reported per budget: the number of pairs
n, the mean difference with its 95 % Student-t interval (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n), the paired t-test's two-sided
p-value (``scipy.stats.ttest_rel``) and the exact Wilcoxon signed-rank p-value (which cannot go below 2/2ⁿ: 0.0625
at n = 5), and a one-line verdict that reads "not distinguishable" whenever the interval contains 0.

Each side names the commits and devices its paired records came from, with a warning when a comparison mixes them or
when records do not name their host: the same digits run has moved by several points between two CPU models, so a
difference between commits or machines is not one between algorithms. B may come from a second results folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ssl_bench.errors import ConfigError
from ssl_bench.leaderboard.tables import ROW_KEYS, records_frame

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
    # provenance of the paired records of each side (empty when the frame has no "device" column)
    commits_a: list[str] = field(default_factory=list)
    commits_b: list[str] = field(default_factory=list)
    devices_a: list[str] = field(default_factory=list)
    devices_b: list[str] = field(default_factory=list)
    hostless: int = 0  # paired records that name no host

    @property
    def warnings(self) -> list[str]:
        out = []
        if len({*self.commits_a, *self.commits_b}) > 1:
            out.append("the pairs mix commits: a difference may come from the code, not the algorithm")
        if len({*self.devices_a, *self.devices_b}) > 1:
            out.append("the pairs mix devices: one run can move by several points between CPU models")
        if self.hostless:
            out.append(f"{self.hostless} of the {2 * self.n} paired records name no host: their CPUs may differ unseen")
        return out

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def verdict(self) -> str:
        name_a, name_b = self.a.split(KEY_SEP)[0], self.b.split(KEY_SEP)[0]
        if name_a == name_b:  # one algorithm from two results folders
            name_a, name_b = f"A ({name_a})", f"B ({name_b})"
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
    provenance: dict[str, Any] = {}
    if "device" in frame_a.columns and "device" in frame_b.columns:
        for side, rows in (("a", left.loc[shared]), ("b", right.loc[shared])):
            provenance[f"commits_{side}"] = sorted(set(rows["commit"]))
            provenance[f"devices_{side}"] = sorted(set(rows["device"]))
        provenance["hostless"] = int((~left.loc[shared, "has_host"]).sum() + (~right.loc[shared, "has_host"]).sum())
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
        dataset,
        int(n_labels),
        a,
        b,
        [int(s) for s in joined["seed"]],
        [float(x) for x in d],
        mean,
        low,
        high,
        p_t,
        p_w,
        **provenance,
    )


def select_rows(frame: pd.DataFrame, spec: str) -> list[str]:
    """The row keys ``spec`` names: an algorithm name (every row of that algorithm, whatever its variant, as in
    ``softmatch[usb]``), an algorithm with its variant, or a whole row key."""
    keys = sorted({row_key(r) for _, r in frame.iterrows()})
    if KEY_SEP in spec:
        return [spec] if spec in keys else []
    return [k for k in keys if spec in (k.split(KEY_SEP)[0], k.split(KEY_SEP)[0].split("[")[0])]


def device_label(record: dict[str, Any]) -> str:
    """``cpu: AMD EPYC (cpu family 25 model 17 stepping 1)`` or ``cuda: NVIDIA H100``: the kind of device a record ran
    on and its model (the host's CPU for a CPU run, else the record's devices), ``?`` for a model it does not name."""
    host = record.get("host") or {}
    kind = str(record.get("device") or "?")
    models = [host["cpu"]] if kind == "cpu" and host.get("cpu") else list(record.get("devices") or [])
    label = f"{kind}: {', '.join(sorted(set(map(str, models)))) or '?'}"
    # CPUs of one marketing name differ in family, model and stepping (other vector units, other numbers)
    return f"{label} ({host['cpu_id']})" if kind == "cpu" and host.get("cpu_id") else label


def provenance_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """``records_frame`` with each record's device and whether it names its host, for ``compare`` to report."""
    return records_frame(records).assign(
        device=[device_label(r) for r in records], has_host=[bool(r.get("host")) for r in records]
    )


def _ssl(frame: pd.DataFrame, dataset: str | None, option: str) -> pd.DataFrame:
    """The ssl records of ``frame`` (of ``dataset`` when given), each with its row key; refused when none."""
    ssl = frame[(frame["setting"] == "ssl") & (frame["round"].isna())] if not frame.empty else frame
    if ssl.empty:
        raise ConfigError(f"no ssl run records to compare (run some recipes first, or check {option})")
    if dataset is not None:
        if dataset not in set(ssl["dataset"]):
            raise ConfigError(f"--dataset {dataset!r}: no records; datasets recorded: {sorted(set(ssl['dataset']))}")
        ssl = ssl[ssl["dataset"] == dataset]
    return ssl.assign(row=[row_key(r) for _, r in ssl.iterrows()])


def compare(
    frame: pd.DataFrame,
    a: str,
    b: str,
    dataset: str | None = None,
    labels: list[int] | None = None,
    frame_b: pd.DataFrame | None = None,
) -> list[Paired]:
    """Paired comparisons of A and B (algorithm names or row keys) per dataset and budget of the ssl records; B's
    records come from ``frame_b`` (a second results folder) when given, else from ``frame`` too."""
    ssl_a = _ssl(frame, dataset, "--results-dir")
    ssl_b = ssl_a if frame_b is None else _ssl(frame_b, dataset, "--results-dir-b")
    for name, ssl in ((a, ssl_a), (b, ssl_b)):
        if not select_rows(ssl, name):
            algorithms = sorted({r.split(KEY_SEP)[0] for r in ssl["row"]})
            where = f" of {dataset}" if dataset else ""
            raise ConfigError(
                f"{name!r} names no recorded row{where}: algorithms recorded: {', '.join(algorithms)} "
                "(or give a whole row key, as the leaderboard prints it)"
            )
    out = []
    for ds in sorted(set(ssl_a["dataset"]) & set(ssl_b["dataset"])):
        part_a, part_b = ssl_a[ssl_a["dataset"] == ds], ssl_b[ssl_b["dataset"] == ds]
        rows_a, rows_b = select_rows(part_a, a), select_rows(part_b, b)
        if not rows_a or not rows_b:
            continue
        for name, rows in ((a, rows_a), (b, rows_b)):
            if len(rows) > 1:
                raise ConfigError(f"{name!r} names {len(rows)} rows of {ds}; give one row key: {', '.join(rows)}")
        if frame_b is None and rows_a == rows_b:
            raise ConfigError(f"{a!r} and {b!r} name the same row of {ds} ({rows_a[0]}): compare two different rows")
        in_a, in_b = part_a[part_a["row"] == rows_a[0]], part_b[part_b["row"] == rows_b[0]]
        budgets = sorted(set(in_a["n_labels"]) & set(in_b["n_labels"]))
        if labels:
            budgets = [n for n in budgets if n in labels]
        for n in budgets:
            out.append(
                paired(str(ds), n, rows_a[0], rows_b[0], in_a[in_a["n_labels"] == n], in_b[in_b["n_labels"] == n])
            )
    if not out:
        where = f" of {dataset}" if dataset else ""
        raise ConfigError(
            f"no budget{where} where both {a!r} and {b!r} have records"
            + (f" at --labels {' '.join(map(str, labels))}" if labels else "")
            + f"; rows recorded: {', '.join(sorted(set(ssl_a['row']) | set(ssl_b['row'])))}"
        )
    return out


def format_paired(p: Paired, folders: tuple[str, str] | None = None) -> str:
    """Several lines: the budget and rows, the commits and devices of each side (and the folder of each, when
    ``folders`` names two), the per-seed differences, the interval, the tests, the verdict and any warning."""
    pt = "—" if p.p_t is None else f"{p.p_t:.3g}"
    pw = "—" if p.p_wilcoxon is None else f"{p.p_wilcoxon:.3g}"
    per_seed = ", ".join(f"seed {s}: {d:+.2f}" for s, d in zip(p.seeds, p.diffs, strict=True))
    sides = []
    for side, commits, devices, folder in (
        ("A", p.commits_a, p.devices_a, folders[0] if folders else None),
        ("B", p.commits_b, p.devices_b, folders[1] if folders else None),
    ):
        if commits or devices:
            where = f" from {folder}" if folder else ""
            sides.append(f"  {side}{where}: commit {', '.join(commits)}; device {', '.join(devices)}")
    return "\n".join(
        [
            f"{p.dataset} @ {p.n_labels} labels: {p.a} − {p.b}, n = {p.n} shared splits",
            *sides,
            f"  per seed: {per_seed}",
            f"  mean difference {p.mean:+.2f} points, {CONFIDENCE:.0%} CI [{p.low:+.2f}, {p.high:+.2f}]; "
            f"paired t-test p = {pt}, Wilcoxon signed-rank p = {pw}",
            f"  verdict: {p.verdict}",
            *(f"  warning: {w}" for w in p.warnings),
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
