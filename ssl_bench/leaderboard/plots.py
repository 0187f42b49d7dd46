"""The leaderboard's plots, each a PNG named after what it shows, with a title and labeled axes.

- ``accuracy_vs_labels_<dataset>.png``: accuracy against label budget, one line per row of our runs (mean ± std
  over seeds as error bars), published numbers as hollow diamonds;
- ``learning_curves_<dataset>.png``: test accuracy against training step, one panel per budget, one line per row
  (mean over seeds of ``acc_history``);
- ``active_learning_<dataset>.png``: accuracy against labels per acquisition function;
- ``exchange_rate.png``: unlabeled images one label is worth, against label budget.

Every function returns the path it wrote, or None when there is nothing to draw. A generation draws each through
a ``Plot``, which copies the previous generation's PNG instead when that one was drawn from the same inputs by
the same code: a rerun that adds no record redraws nothing and never imports matplotlib. A plot of published
numbers alone (a dataset with no runs of ours) is the same in every results directory, so it is also kept in
``shared_dir()`` and copied from there into the next new results directory instead of being drawn again.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib.metadata
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ssl_bench.atomic_write import temp_beside
from ssl_bench.leaderboard.tables import ROW_KEYS

ACC_LABEL = "test accuracy (%), median of the last k evaluations"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def slug(text: str) -> str:
    """A file-name-safe form of a dataset name (``digits-digits_m`` stays, ``/`` and spaces do not)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._") or "dataset"


DIGEST_KEY = "ssl_bench inputs"  # the PNG text chunk that names what a plot was drawn from (Plot.digest)
_METADATA: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("png_metadata", default=None)


def shared_dir() -> Path | None:
    """Where plots drawn from published numbers alone are kept for every results directory:
    ``$XDG_CACHE_HOME/ssl_bench/plots``, by default ``~/.cache/ssl_bench/plots`` (None without a home directory).
    One PNG per dataset, code and matplotlib version, named by its digest; nothing depends on it being there or
    writable."""
    try:
        return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "ssl_bench" / "plots"
    except RuntimeError:  # no HOME and no passwd entry
        return None


@dataclass
class Plot:
    """One PNG of a generation: a plot function of this module and its inputs (all but the path). ``shared``: its
    inputs hold no record of ours (published numbers only), so every results directory has the same PNG."""

    draw: Callable[..., Path | None]
    args: tuple
    shared: bool = False

    def digest(self) -> str:
        """sha256 of the function's name, this module's source, matplotlib's version and the inputs."""
        h = hashlib.sha256(self.draw.__name__.encode())
        h.update(Path(__file__).read_bytes())
        h.update(importlib.metadata.version("matplotlib").encode())
        for a in self.args:
            text = a.to_json(orient="split", default_handler=str) if isinstance(a, pd.DataFrame) else repr(a)
            h.update(hashlib.sha256(text.encode()).digest())
        return h.hexdigest()

    def write(self, path: Path, reuse: Path | None = None) -> Path | None:
        """Draw into ``path``, or copy there ``reuse`` or (a shared plot) the kept copy, whichever carries this
        plot's digest; the path, or None."""
        digest = self.digest()
        cache = shared_dir() if self.shared else None
        kept = cache / f"{digest}.png" if cache is not None else None
        for source in (reuse, kept):
            if source is not None and stored_digest(source) == digest:
                shutil.copyfile(source, path)
                return path
        token = _METADATA.set({DIGEST_KEY: digest})
        try:
            out = self.draw(*self.args, path)
        finally:
            _METADATA.reset(token)
        if out is not None and kept is not None:
            _keep(out, kept)
        return out


def _keep(drawn: Path, kept: Path) -> None:
    """Copy ``drawn`` to ``kept`` through a temp file and a rename (concurrent generations never read half a PNG);
    a cache that cannot be written (read-only home, full disk) is skipped."""
    tmp = None
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(kept)
        with os.fdopen(fd, "wb") as fh:
            fh.write(drawn.read_bytes())
        os.replace(tmp, kept)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def stored_digest(path: Path) -> str | None:
    """The digest a PNG of ours carries, or None (no such file, not a PNG, drawn without one)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return getattr(img, "text", {}).get(DIGEST_KEY)
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _save(fig, path: Path, tight: bool = False) -> Path:
    """``tight``: crop to what was drawn, a legend beside the axes included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, metadata=_METADATA.get(), **({"bbox_inches": "tight"} if tight else {}))
    _plt().close(fig)
    tmp.replace(path)
    return path


def _row_label(keys: tuple) -> str:
    algo, augment, model, pool, steps, _k = keys
    return f"{algo} · {augment} · {model} · {steps} steps" + ("" if pool == "all" else f" · pool {pool}")


MARKERS = "osD^v<>pPX*h"


def _style(i: int) -> dict:
    """Colour and marker of the i-th series: tab20's 20 colours, the marker changing every 20 series, so that no two
    series of one plot look alike."""
    plt = _plt()
    return {"color": plt.get_cmap("tab20")(i % 20), "marker": MARKERS[(i // 20 + i) % len(MARKERS)]}


def plot_budgets(ours: pd.DataFrame, published: pd.DataFrame, dataset: str, path: Path) -> Path | None:
    """Accuracy against label budget for one dataset: our rows (error bars: std over seeds) and published points.
    Past 8 series the legend moves beside the axes (one column per 30 series) and the figure grows to hold it."""
    if ours.empty and published.empty:
        return None
    plt = _plt()
    groups = list(ours.groupby(ROW_KEYS, sort=True)) if not ours.empty else []
    pubs = list(published.groupby(["method", "paper"], sort=True)) if not published.empty else []
    n = len(groups) + len(pubs)
    cols = 1 + (n - 1) // 30
    fig, ax = plt.subplots(figsize=(7, 4.5) if n <= 8 else (7 + 4.4 * cols, max(4.5, 0.17 * min(n, 30) + 1)))
    for i, (keys, g) in enumerate(groups):
        s = g.groupby("n_labels")["acc"].agg(["mean", "std"]).reset_index()
        ax.errorbar(s["n_labels"], s["mean"], yerr=s["std"].fillna(0), capsize=3, label=_row_label(keys), **_style(i))
    for i, ((method, paper), g) in enumerate(pubs, start=len(groups)):
        g = g.sort_values("n_labels")
        ax.errorbar(
            g["n_labels"],
            g["acc"],
            yerr=g["acc_std"].fillna(0),
            mfc="none",
            linestyle=":",
            capsize=2,
            label=f"published: {method} ({paper})",
            **_style(i),
        )
    budgets = sorted(set(ours["n_labels"]) | set(published["n_labels"]))
    if budgets and budgets[0] > 0 and budgets[-1] / budgets[0] >= 8:
        ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_ylim(top=min(ax.get_ylim()[1], 100.5))
    ax.set_title(f"{dataset}: accuracy against label budget (mean ± std over seeds)")
    ax.set_xlabel("labeled images")
    ax.set_ylabel(ACC_LABEL)
    ax.grid(alpha=0.3)
    if n <= 8:
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=cols, borderaxespad=0.0)
    fig.tight_layout()
    return _save(fig, path, tight=n > 8)


def plot_curves(ours: pd.DataFrame, dataset: str, path: Path) -> Path | None:
    """Learning curves: mean over seeds of each row's accuracy at each evaluation, one panel per budget."""
    ours = ours[ours["history"].map(len) > 0]
    if ours.empty:
        return None
    plt = _plt()
    budgets = sorted(ours["n_labels"].unique())
    fig, axes = plt.subplots(1, len(budgets), figsize=(5.5 * len(budgets), 4), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], budgets, strict=True):
        for keys, g in ours[ours["n_labels"] == n].groupby(ROW_KEYS, sort=True):
            points = [(s, 100.0 * a) for h in g["history"] for s, a in h]
            curves = pd.DataFrame(points, columns=["step", "acc"])
            mean = curves.groupby("step")["acc"].mean()
            ax.plot(mean.index, mean.to_numpy(), label=f"{_row_label(keys)} (n={g['seed'].nunique()})")
        ax.set_title(f"{dataset} @ {n} labels")
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("test accuracy (%) of the EMA model, mean over seeds")
    fig.suptitle(f"{dataset}: learning curves")
    fig.tight_layout()
    return _save(fig, path)


def plot_active(df: pd.DataFrame, dataset: str, path: Path) -> Path | None:
    """Accuracy (mean ± std over seeds) against labels, one line per (algorithm, acquisition)."""
    part = df[df["dataset"] == dataset] if not df.empty else df
    if part.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (algo, acq), g in part.groupby(["algorithm", "acquisition"]):
        s = g.groupby("n_labels")["acc"].agg(["mean", "std"]).reset_index()
        ax.errorbar(s["n_labels"], s["mean"], yerr=s["std"].fillna(0), marker="o", capsize=3, label=f"{algo} · {acq}")
    ax.set_ylim(top=min(ax.get_ylim()[1], 100.5))  # error bars may reach past 100 %
    ax.set_title(f"{dataset}: active learning, accuracy as labels are acquired")
    ax.set_xlabel("labeled images")
    ax.set_ylabel(ACC_LABEL)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_exchange(df: pd.DataFrame, path: Path) -> Path | None:
    """Unlabeled images one label is worth, against label budget, one line per (dataset, algorithm)."""
    if df.empty or df["label_worth_unlabeled"].isna().all():
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for (dataset, algo), g in df.dropna(subset=["label_worth_unlabeled"]).groupby(["dataset", "algorithm"]):
        ax.plot(g["n_labels"], g["label_worth_unlabeled"], marker="o", label=f"{dataset} · {algo}")
    ax.set_title("What one label is worth, in unlabeled images")
    ax.set_xlabel("labeled images (the budget the next label is added to)")
    ax.set_ylabel("unlabeled images one label is worth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
