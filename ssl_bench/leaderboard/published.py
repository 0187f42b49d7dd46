"""The papers' published numbers, as data: ``published.csv`` beside this module, read by :func:`load_published`.

Sources: docs/reference/published.md ("Headline results") and docs/reference/published.md ("Published
numbers"). The rows cover the FixMatch paper's Table 2 (its five re-run methods on every dataset and budget, and its
Π-Model, Pseudo-Labeling and Mean Teacher baselines, which have no 40- or 400-label entries), MixMatch's own CIFAR-10 /
SVHN / STL-10 numbers, ReMixMatch's own CIFAR-10 / SVHN / STL-10 numbers, the UDA authors' own CIFAR-10 / SVHN runs
(the accuracies in the comments of google-research/uda's GPU scripts), the FlexMatch paper's table as the TorchSSL
README prints it (accuracy ± standard error), FreeMatch's and SoftMatch's Table 1, AdaMatch's DigitFive UDA accuracies
and DomainNet averages, and USB's classic-CV table (``paper = "USB (Wang et al., 2022)"``, a third-party re-run).

``verified``: for the docs/reference/published.md rows, true where docs/reference/published.md tags the value [v]
(confirmed from an independent text) and false where it tags it [m] (from memory); a USB row of
docs/reference/published.md is true only where two retrieved texts agree. For the docs/reference/published.md rows, true
only where the value *and* its std as docs/reference/published.md gives them were found unchanged in a text retrieved
with the search tools (the README, results file or script they come from, or another copy); a row whose mean alone was
confirmed (e.g. by a paperswithcode listing) stays false. ``note`` says where each number was read and what was not
confirmed.

Method names are ours where we have the algorithm:

=====================  ============================================================
``method``             the paper's name
=====================  ============================================================
``pseudo_label``       Pseudo-Label / Pseudo-Labeling (USB: ``pseudolabel``)
``pi_model``           Π-Model (USB: ``pimodel``)
``mean_teacher``       Mean Teacher (USB: ``meanteacher``)
``mixmatch``           MixMatch
``remixmatch``         ReMixMatch
``uda``                UDA
``fixmatch``           FixMatch (RA): RandAugment as the strong augmentation
``fixmatch-cta``       FixMatch (CTA): CTAugment as the strong augmentation
``flexmatch``          FlexMatch
``pseudo_label-flex``  Pseudo-Label with FlexMatch's Curriculum Pseudo Labeling (TorchSSL ``PseudoLabel_Flex``)
``uda-flex``           UDA with FlexMatch's Curriculum Pseudo Labeling (TorchSSL ``UDA_Flex``)
``freematch``          FreeMatch
``softmatch``          SoftMatch
``dash``               Dash
``adamatch``           AdaMatch
=====================  ============================================================

Datasets use our registry names (``cifar10``, ``cifar100``, ``svhn``, ``stl10``); AdaMatch's DigitFive pairs are
``digitfive:<source>-><target>`` and DomainNet's average over targets is ``domainnet``. ``setting`` is ``ssl``,
``uda``, ``ssda-1`` or ``ssda-5``; ``n_labels`` is the total label budget for ``ssl`` and 0 otherwise. ``metric``
(``error`` or ``accuracy``), ``value`` and ``std`` are as the source prints them, in percent; the loader adds
``acc`` (accuracy in percent, 100 - value for error rows) and ``acc_std``.

The protocol of each row: ``backbone``, ``schedule``, ``seeds`` (how many runs or folds the mean is over, e.g.
``5 folds``, ``3 seeds``, ``not stated``) and ``evaluation``, the rule that picked each run's number from its
training, one of :data:`EVALUATIONS`: ``median of last 20`` (the Google papers: the median of the last 20
evaluations, every 64 kimg), ``best during training`` (TorchSSL and USB: the best test accuracy seen, chosen on the
test set), ``final checkpoint`` (one evaluation after training, the UDA image code) or ``not stated``. ``seeds`` and
``evaluation`` must not be empty.

Published numbers are shown beside ours, never averaged with them: each row is one paper's mean under its own
protocol, which is not the protocol of our runs; the leaderboard prints ``seeds`` and ``evaluation`` beside each
published row. Caveats that change the numbers are in ``note``: TorchSSL and USB train SVHN on train + extra, USB's
classic-CV CIFAR-100 uses WRN-28-2 (the papers WRN-28-8), and USB's Mean Teacher has no consistency gradient.
"""

from __future__ import annotations

import csv
import io
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from ssl_bench.errors import ConfigError

COLUMNS = [
    "method",
    "dataset",
    "setting",
    "n_labels",
    "metric",
    "value",
    "std",
    "backbone",
    "schedule",
    "seeds",
    "evaluation",
    "paper",
    "arxiv",
    "table",
    "verified",
    "note",
]
METRICS = ("error", "accuracy")
EVALUATIONS = ("median of last 20", "best during training", "final checkpoint", "not stated")
SETTINGS = ("ssl", "uda", "ssda-1", "ssda-5")
KEY = ["method", "dataset", "setting", "n_labels", "paper"]
REQUIRED = ("method", "dataset", "seeds", "evaluation", "paper", "arxiv", "table")
_ARXIV = re.compile(r"\d{4}\.\d{4,5}")


def packaged_path():
    """The CSV shipped in the package (a Traversable; a plain path for an ordinary install)."""
    return resources.files("ssl_bench.leaderboard").joinpath("published.csv")


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """Every row of ``published.csv`` (or of ``path``), validated, with ``acc`` and ``acc_std`` added.

    A bad row raises :class:`ConfigError` with a one-line message ``<file>:<line>: <problem>``.
    """
    if path is None:
        source = packaged_path()
        name = str(source)
        text = source.read_text(encoding="utf-8")
    else:
        name = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{name}: cannot read published results ({getattr(exc, 'strerror', None) or exc})"
            ) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        return _frame(reader, name)
    except csv.Error as exc:
        raise ConfigError(f"{name}:{reader.line_num}: not valid CSV ({exc})") from None


def _frame(reader, name: str) -> pd.DataFrame:
    header = next(reader, None)
    if header != COLUMNS:
        raise ConfigError(f"{name}:1: columns must be exactly {','.join(COLUMNS)}; got {','.join(header or [])!r}")
    rows = []
    seen: dict[tuple, int] = {}
    for fields in reader:
        line = reader.line_num
        if not fields:
            continue
        if len(fields) != len(COLUMNS):
            raise ConfigError(f"{name}:{line}: {len(fields)} fields, expected {len(COLUMNS)}")
        row = _parse_row(dict(zip(COLUMNS, fields, strict=True)), name, line)
        key = tuple(row[k] for k in KEY)
        if key in seen:
            raise ConfigError(f"{name}:{line}: duplicate of line {seen[key]} ({', '.join(map(str, key))})")
        seen[key] = line
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["n_labels"] = frame["n_labels"].astype(int)
    frame["value"] = frame["value"].astype(float)
    frame["std"] = frame["std"].astype(float)
    frame["verified"] = frame["verified"].astype(bool)
    is_error = frame["metric"] == "error"
    frame["acc"] = frame["value"].where(~is_error, 100.0 - frame["value"]).round(4)
    frame["acc_std"] = frame["std"]
    return frame


def published_rows(frame: pd.DataFrame, dataset: str, setting: str = "ssl") -> pd.DataFrame:
    """The rows of one dataset and setting (exact names, e.g. ``"cifar10"``, ``"digitfive:mnist->svhn"``)."""
    if setting not in SETTINGS:
        raise ConfigError(f"unknown setting {setting!r}; valid choices: {', '.join(SETTINGS)}")
    rows = frame[(frame["dataset"] == dataset) & (frame["setting"] == setting)]
    return rows.sort_values(["paper", "method", "n_labels"], kind="stable").reset_index(drop=True)


def _parse_row(raw: dict[str, str], name: str, line: int) -> dict[str, Any]:
    def bad(problem: str) -> ConfigError:
        return ConfigError(f"{name}:{line}: {problem}")

    row: dict[str, Any] = {k: v.strip() for k, v in raw.items()}  # text, then each checked column parsed
    for col in REQUIRED:
        if not row[col]:
            raise bad(f"empty {col}")
    if not _ARXIV.fullmatch(row["arxiv"]):
        raise bad(f"arxiv {row['arxiv']!r} is not an arXiv id like 2001.07685")
    if row["setting"] not in SETTINGS:
        raise bad(f"setting {row['setting']!r} is not one of {', '.join(SETTINGS)}")
    try:
        n_labels = int(row["n_labels"])
    except ValueError:
        raise bad(f"n_labels {row['n_labels']!r} is not an integer") from None
    if row["setting"] == "ssl" and n_labels <= 0:
        raise bad(f"n_labels must be the (positive) label budget for setting ssl, got {n_labels}")
    if row["setting"] != "ssl" and n_labels != 0:
        raise bad(f"n_labels must be 0 for setting {row['setting']}, got {n_labels}")
    row["n_labels"] = n_labels
    if row["evaluation"] not in EVALUATIONS:
        raise bad(f"evaluation {row['evaluation']!r} is not one of {', '.join(map(repr, EVALUATIONS))}")
    if row["metric"] not in METRICS:
        raise bad(f"metric {row['metric']!r} is not one of {', '.join(METRICS)}")
    row["value"] = _percent(row["value"], "value", bad)
    row["std"] = math.nan if row["std"] == "" else _percent(row["std"], "std", bad)
    if row["verified"] not in ("true", "false"):
        raise bad(f"verified {row['verified']!r} is not true or false")
    row["verified"] = row["verified"] == "true"
    return row


def _percent(text: str, col: str, bad) -> float:
    try:
        value = float(text)
    except ValueError:
        raise bad(f"{col} {text!r} is not a number") from None
    if not (0.0 <= value <= 100.0):  # also refuses nan
        raise bad(f"{col} {text!r} is not a percentage in [0, 100]")
    return value
