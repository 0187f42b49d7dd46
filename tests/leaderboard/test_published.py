"""The papers' published numbers (ssl_bench/leaderboard/published.csv), their loader, and how the leaderboard shows
their protocol.

The golden values below were typed from docs/reference/published.md and from the texts that confirmed
docs/reference/published.md (the TorchSSL README, google-research/uda's GPU scripts, USB's results/classic_cv.csv),
or from docs/reference/published.md itself for the unconfirmed [m] rows, not read back from the packaged CSV, so a wrong
or lost row fails here.
"""

from __future__ import annotations

import ast
import math
import tomllib
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
from leaderboard_records import write_table

import ssl_bench
import ssl_bench.leaderboard as lb
from ssl_bench.errors import ConfigError
from ssl_bench.leaderboard import published
from ssl_bench.leaderboard.published import COLUMNS, EVALUATIONS, load_published, published_rows

ROOT = Path(__file__).resolve().parents[2]
FIXMATCH = "FixMatch (Sohn et al., 2020)"
MIXMATCH = "MixMatch (Berthelot et al., 2019)"
REMIXMATCH = "ReMixMatch (Berthelot et al., 2019)"
ADAMATCH = "AdaMatch (Berthelot et al., 2021)"
USB = "USB (Wang et al., 2022)"
UDA = "UDA (Xie et al., 2020)"
FLEXMATCH = "FlexMatch (Zhang et al., 2021)"
FREEMATCH = "FreeMatch (Wang et al., 2023)"
SOFTMATCH = "SoftMatch (Chen et al., 2023)"
ARXIV = {
    FIXMATCH: "2001.07685",
    MIXMATCH: "1905.02249",
    REMIXMATCH: "1911.09785",
    ADAMATCH: "2106.04732",
    USB: "2208.07204",
    UDA: "1904.12848",
    FLEXMATCH: "2110.08263",
    FREEMATCH: "2205.07246",
    SOFTMATCH: "2301.10921",
}
# the evaluation rule behind each paper's numbers (docs/reference/common.md#reporting-protocol,
# docs/reference/common.md#torchssl-and-usb, docs/reference/published.md)
EVALUATION = {
    FIXMATCH: "median of last 20",
    MIXMATCH: "median of last 20",
    REMIXMATCH: "median of last 20",
    ADAMATCH: "not stated",
    USB: "best during training",
    UDA: "final checkpoint",
    FLEXMATCH: "best during training",
    FREEMATCH: "best during training",
    SOFTMATCH: "best during training",
}
NEW_METHODS = ["pseudo_label", "pi_model", "mean_teacher", "uda", "flexmatch", "freematch", "softmatch", "dash"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return load_published()


def one(frame, method, dataset, n_labels, paper, setting="ssl"):
    rows = frame[
        (frame.method == method)
        & (frame.dataset == dataset)
        & (frame.setting == setting)
        & (frame.n_labels == n_labels)
        & (frame.paper == paper)
    ]
    assert len(rows) == 1, (method, dataset, setting, n_labels, paper, len(rows))
    return rows.iloc[0]


# (method, dataset, setting, n_labels, paper, metric, value, std or None, verified, acc)
GOLDEN = [
    ("fixmatch", "cifar10", "ssl", 250, FIXMATCH, "error", 5.07, 0.65, True, 94.93),
    ("fixmatch-cta", "cifar10", "ssl", 40, FIXMATCH, "error", 11.39, 3.35, True, 88.61),
    ("fixmatch-cta", "svhn", "ssl", 40, FIXMATCH, "error", 7.65, 7.65, True, 92.35),
    ("fixmatch", "cifar100", "ssl", 400, FIXMATCH, "error", 48.85, 1.75, True, 51.15),
    ("uda", "stl10", "ssl", 1000, FIXMATCH, "error", 7.66, 0.56, True, 92.34),
    ("mixmatch", "cifar100", "ssl", 400, FIXMATCH, "error", 67.61, 1.32, False, 32.39),  # [m]
    ("remixmatch", "svhn", "ssl", 40, FIXMATCH, "error", 3.34, 0.20, True, 96.66),
    ("remixmatch", "cifar10", "ssl", 250, REMIXMATCH, "error", 6.27, 0.34, True, 93.73),
    ("remixmatch", "cifar10", "ssl", 1000, REMIXMATCH, "error", 5.73, 0.16, False, 94.27),  # [m]
    ("remixmatch", "stl10", "ssl", 1000, REMIXMATCH, "error", 6.18, 1.24, False, 93.82),  # [m]
    ("mixmatch", "svhn", "ssl", 250, MIXMATCH, "error", 3.78, 0.26, True, 96.22),
    ("mixmatch", "cifar10", "ssl", 4000, MIXMATCH, "error", 6.24, 0.06, True, 93.76),
    ("mixmatch", "stl10", "ssl", 5000, MIXMATCH, "error", 5.59, None, False, 94.41),  # [m], no std
    ("adamatch", "digitfive:svhn->usps", "uda", 0, ADAMATCH, "accuracy", 90.4, None, False, 90.4),
    ("adamatch", "digitfive:mnist->mnistm", "uda", 0, ADAMATCH, "accuracy", 99.2, None, False, 99.2),
    ("adamatch", "domainnet", "ssda-5", 0, ADAMATCH, "accuracy", 42.3, None, False, 42.3),  # [m]
    ("fixmatch", "cifar10", "ssl", 40, USB, "error", 8.33, 1.41, True, 91.67),  # csv + issue #105 agree
    ("fixmatch", "svhn", "ssl", 40, USB, "error", 2.08, 0.08, True, 97.92),
    ("mixmatch", "cifar10", "ssl", 40, USB, "error", 70.67, 1.25, False, 29.33),
    ("adamatch", "cifar100", "ssl", 10000, USB, "error", 27.53, 0.12, False, 72.47),
    # docs/reference/published.md, confirmed in the TorchSSL README (commit cdfcb3c; accuracy ± standard error)
    ("pi_model", "cifar10", "ssl", 40, FLEXMATCH, "accuracy", 25.66, 1.76, True, 25.66),
    ("flexmatch", "stl10", "ssl", 40, FLEXMATCH, "accuracy", 70.85, 4.16, True, 70.85),
    ("uda-flex", "svhn", "ssl", 40, FLEXMATCH, "accuracy", 96.58, 1.51, True, 96.58),
    ("pseudo_label", "cifar100", "ssl", 10000, FLEXMATCH, "accuracy", 63.45, 0.24, True, 63.45),
    ("mixmatch", "cifar100", "ssl", 400, FLEXMATCH, "accuracy", 32.41, 0.66, False, 32.41),  # README only
    # in google-research/uda's image/scripts/run_{cifar10,svhn}_gpu.sh comments
    ("uda", "cifar10", "ssl", 250, UDA, "accuracy", 94.57, 0.96, True, 94.57),
    ("uda", "svhn", "ssl", 1000, UDA, "accuracy", 97.77, 0.07, True, 97.77),
    # in USB's results/classic_cv.csv (commit 44995033)
    ("mean_teacher", "cifar10", "ssl", 40, USB, "error", 76.93, 2.29, True, 23.07),
    ("dash", "svhn", "ssl", 250, USB, "error", 1.97, 0.01, True, 98.03),
    ("softmatch", "cifar100", "ssl", 10000, USB, "error", 27.26, 0.03, True, 72.74),
    # [m] in docs/reference/published.md#fixmatch-baselines, docs/reference/published.md#freematch-paper,
    # docs/reference/published.md#softmatch-paper (a mean confirmed at most, never its std)
    ("mean_teacher", "cifar10", "ssl", 250, FIXMATCH, "error", 32.32, 2.30, False, 67.68),
    ("pseudo_label", "stl10", "ssl", 1000, FIXMATCH, "error", 27.99, 0.83, False, 72.01),
    ("freematch", "cifar10", "ssl", 10, FREEMATCH, "error", 8.07, 4.24, False, 91.93),
    ("freematch", "cifar100", "ssl", 400, FREEMATCH, "error", 37.98, 0.42, False, 62.02),
    ("softmatch", "stl10", "ssl", 40, SOFTMATCH, "error", 21.42, 3.48, False, 78.58),
]


@pytest.mark.parametrize("method,dataset,setting,n_labels,paper,metric,value,std,verified,acc", GOLDEN)
def test_golden_values(frame, method, dataset, setting, n_labels, paper, metric, value, std, verified, acc):
    row = one(frame, method, dataset, n_labels, paper, setting)
    assert row.metric == metric
    assert row.value == pytest.approx(value)
    if std is None:
        assert math.isnan(row["std"]) and math.isnan(row.acc_std)
    else:
        assert row["std"] == pytest.approx(std) and row.acc_std == pytest.approx(std)
    assert bool(row.verified) is verified
    assert row.acc == pytest.approx(acc)
    assert row.arxiv == ARXIV[paper]
    assert row.evaluation == EVALUATION[paper]


def test_backbones_follow_the_fixmatch_protocol(frame):
    fm = frame[frame.paper == FIXMATCH]
    assert set(fm[fm.dataset == "cifar100"].backbone) == {"wrn28-8"}
    assert set(fm[fm.dataset == "stl10"].backbone) == {"wrn37-2"}
    assert set(fm[fm.dataset.isin(["cifar10", "svhn"])].backbone) == {"wrn28-2"}


def test_fixmatch_table2_is_complete(frame):
    fm = frame[frame.paper == FIXMATCH]
    columns = {("cifar10", 40), ("cifar10", 250), ("cifar10", 4000), ("cifar100", 400), ("cifar100", 2500)}
    columns |= {("cifar100", 10000), ("svhn", 40), ("svhn", 250), ("svhn", 1000), ("stl10", 1000)}
    for method in ["mixmatch", "uda", "remixmatch", "fixmatch", "fixmatch-cta"]:
        got = {(r.dataset, r.n_labels) for r in fm[fm.method == method].itertuples()}
        assert got == columns, method
    baselines = {("cifar10", 250), ("cifar10", 4000), ("cifar100", 2500), ("cifar100", 10000), ("svhn", 250)}
    baselines |= {("svhn", 1000), ("stl10", 1000)}  # no 40- or 400-label entries for these three
    for method in ["pi_model", "pseudo_label", "mean_teacher"]:
        got = {(r.dataset, r.n_labels) for r in fm[fm.method == method].itertuples()}
        assert got == baselines, method
    assert (fm.table == "Table 2").all() and (fm.metric == "error").all()


def test_torchssl_table_and_usb_rows_are_complete(frame):
    flex = frame[frame.paper == FLEXMATCH]
    columns = {(d, n) for d in ["cifar10", "svhn", "stl10"] for n in (40, 250)} | {("cifar10", 4000)}
    columns |= {("svhn", 1000), ("stl10", 1000), ("cifar100", 400), ("cifar100", 2500), ("cifar100", 10000)}
    methods = ["pi_model", "pseudo_label", "pseudo_label-flex", "mean_teacher", "mixmatch", "remixmatch"]
    methods += ["uda", "uda-flex", "fixmatch", "flexmatch"]
    assert set(flex.method) == set(methods)
    for method in methods:
        assert {(r.dataset, r.n_labels) for r in flex[flex.method == method].itertuples()} == columns, method
    assert (flex.metric == "accuracy").all() and (flex.seeds == "3 seeds").all()
    usb = frame[frame.paper == USB]
    columns = {(d, n) for d, budgets in [("cifar10", (40, 250, 4000)), ("svhn", (40, 250, 1000))] for n in budgets}
    columns |= {("cifar100", n) for n in (400, 2500, 10000)}
    for method in ["pseudo_label", "pi_model", "mean_teacher", "uda", "flexmatch", "dash", "freematch", "softmatch"]:
        assert {(r.dataset, r.n_labels) for r in usb[usb.method == method].itertuples()} == columns, method
    assert set(usb.backbone) == {"wrn28-2"}  # CIFAR-100 too: USB's classic-CV configs


def test_every_new_method_has_rows(frame):
    baseline = {FIXMATCH, FLEXMATCH, USB}  # FixMatch Table 2, the TorchSSL README, USB's re-run
    papers = {"pseudo_label": baseline, "pi_model": baseline, "mean_teacher": baseline}
    papers |= {"uda": baseline | {UDA}, "flexmatch": {FLEXMATCH, USB}, "freematch": {FREEMATCH, USB}}
    papers |= {"softmatch": {SOFTMATCH, USB}, "dash": {USB}}  # Dash's own tables were not retrieved
    assert set(papers) == set(NEW_METHODS)
    for method, expected in papers.items():
        rows = frame[frame.method == method]
        assert set(rows.paper) == expected, method
        assert len(rows) >= 9, method


def test_usb_mean_teacher_is_marked_effectively_supervised(frame):
    mt = frame[(frame.paper == USB) & (frame.method == "mean_teacher")]
    assert len(mt) == 9
    assert mt.note.str.contains("no gradient").all() and mt.note.str.contains("effectively supervised").all()


def test_every_row_has_seeds_and_an_evaluation_rule(frame):
    assert (frame.seeds.str.len() > 0).all()
    assert frame.evaluation.isin(EVALUATIONS).all()
    assert frame.apply(lambda r: EVALUATION[r.paper] == r.evaluation, axis=1).all()
    google = frame[frame.paper.isin([FIXMATCH, MIXMATCH, REMIXMATCH])]
    assert set(google.seeds) <= {"5 folds", "1 run (all 5000 labels)"}
    assert set(frame[frame.paper.isin([USB, FLEXMATCH, FREEMATCH, SOFTMATCH])].seeds) == {"3 seeds"}


def test_rows_per_paper(frame):
    counts = frame.paper.value_counts().to_dict()
    assert counts == {
        USB: 45 + 7 * 9,  # + pseudolabel, meanteacher, pimodel, flexmatch, dash, freematch, softmatch
        FIXMATCH: 50 + 3 * 7,  # + the Pi-Model, Pseudo-Labeling and Mean Teacher rows
        ADAMATCH: 23,
        MIXMATCH: 12,
        REMIXMATCH: 7,
        UDA: 10,
        FLEXMATCH: 10 * 12,
        FREEMATCH: 13,
        SOFTMATCH: 10,
    }


def test_every_row_is_cited_and_unique(frame):
    for col in ["paper", "arxiv", "table", "method", "dataset"]:
        assert (frame[col].str.len() > 0).all(), col
    assert frame.apply(lambda r: ARXIV[r.paper] == r.arxiv, axis=1).all()
    assert not frame.duplicated(["method", "dataset", "setting", "n_labels", "paper"]).any()
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert frame.verified.dtype == bool
    assert set(frame.metric) <= {"error", "accuracy"} and frame.value.between(0, 100).all()
    assert (frame[frame.setting != "ssl"].n_labels == 0).all() and (frame[frame.setting == "ssl"].n_labels > 0).all()


def test_acc_is_accuracy_in_percent(frame):
    err = frame[frame.metric == "error"]
    assert ((err.acc - (100 - err.value)).abs() < 1e-9).all()
    accu = frame[frame.metric == "accuracy"]
    assert (accu.acc == accu.value).all() and len(accu) == 23 + 10 + 120  # AdaMatch, UDA's scripts, TorchSSL README


def test_published_rows_filters_one_dataset_and_setting(frame):
    c10 = published_rows(frame, "cifar10")
    assert set(c10.dataset) == {"cifar10"} and set(c10.setting) == {"ssl"}
    # FixMatch Table 2, MixMatch, ReMixMatch, USB, FlexMatch (TorchSSL), UDA's scripts, FreeMatch, SoftMatch
    assert len(c10) == (5 * 3 + 3 * 2) + 5 + 3 + 12 * 3 + 10 * 3 + 5 + 4 + 3
    assert published_rows(frame, "cifar10", "uda").empty
    uda = published_rows(frame, "domainnet", "uda")
    assert list(uda.value) == [28.7]
    assert len(published_rows(frame, "digitfive:svhn->mnist", "uda")) == 1
    with pytest.raises(ConfigError, match="unknown setting"):
        published_rows(frame, "cifar10", "semi")


def test_csv_is_found_through_the_installed_package():
    res = resources.files("ssl_bench.leaderboard").joinpath("published.csv")
    assert res.is_file()
    assert Path(str(res)).resolve() == Path(ssl_bench.__file__).resolve().parent / "leaderboard" / "published.csv"
    assert published.packaged_path() == res
    assert len(load_published()) == len(load_published(Path(str(res))))
    # a wheel or a non-editable install only ships the CSV if the package-data config names it
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "*.csv" in config["tool"]["setuptools"]["package-data"]["ssl_bench.leaderboard"]


def test_loader_imports_nothing_heavy():
    tree = ast.parse(Path(published.__file__).read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    ours = {m for m in modules if m.startswith("ssl_bench")}
    assert ours <= {"ssl_bench.errors"}, ours
    assert {m.split(".")[0] for m in modules - ours} <= {
        "__future__",
        "csv",
        "io",
        "math",
        "re",
        "importlib",
        "pathlib",
        "typing",
        "pandas",
    }


GOOD_FIELDS = {
    "method": "mixmatch",
    "dataset": "cifar10",
    "setting": "ssl",
    "n_labels": "250",
    "metric": "error",
    "value": "11.08",
    "std": "0.87",
    "backbone": "wrn28-2",
    "schedule": "2^20 steps",
    "seeds": "5 folds",
    "evaluation": "median of last 20",
    "paper": "MixMatch (B 2019)",
    "arxiv": "1905.02249",
    "table": "Table 5",
    "verified": "true",
    "note": "n",
}


def csv_line(**changes: str) -> str:
    fields = {**GOOD_FIELDS, **changes}
    return ",".join(fields[c] for c in COLUMNS)


def bad_row(**changes: str) -> str:
    """A row that differs from GOOD in its key (500 labels) and in ``changes``."""
    return csv_line(**{"n_labels": "500", "value": "9.65", "std": "0.94", **changes})


GOOD = csv_line() + "\n"


@pytest.mark.parametrize(
    "bad,problem",
    [
        (bad_row(metric="top1"), "metric"),
        (bad_row(value="120"), "value"),
        (bad_row(value="nan"), "value"),
        (bad_row(std="-1"), "std"),
        (bad_row(verified="yes"), "verified"),
        (bad_row(paper=""), "empty paper"),
        (bad_row(arxiv=""), "empty arxiv"),
        (bad_row(table=""), "empty table"),
        (bad_row(seeds=""), "empty seeds"),
        (bad_row(evaluation=""), "empty evaluation"),
        (bad_row(evaluation="best"), "evaluation 'best' is not one of 'median of last 20', 'best during training'"),
        (bad_row(evaluation="median of last 10"), "evaluation"),
        (bad_row(n_labels="0"), "n_labels"),
        (bad_row(setting="semi"), "setting"),
        ("mixmatch,cifar10,ssl,500,error,9.65,0.94", "fields"),
        (GOOD.strip(), "duplicate of line 2"),
    ],
)
def test_a_malformed_row_is_refused_naming_file_and_line(tmp_path, bad, problem):
    path = tmp_path / "bad.csv"
    path.write_text(",".join(COLUMNS) + "\n" + GOOD + bad + "\n")
    with pytest.raises(ConfigError) as info:
        load_published(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: "), message
    assert problem in message and "\n" not in message


def test_wrong_columns_are_refused(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text(",".join(COLUMNS[:-1]) + "\n" + GOOD)
    with pytest.raises(ConfigError, match=r":1: columns must be exactly"):
        load_published(path)


def test_a_good_temp_file_loads(tmp_path):
    path = tmp_path / "good.csv"
    path.write_text(",".join(COLUMNS) + "\n" + GOOD)
    frame = load_published(path)
    assert len(frame) == 1 and frame.acc.iloc[0] == pytest.approx(88.92) and bool(frame.verified.iloc[0])


def test_broken_csv_quoting_is_refused(tmp_path):
    path = tmp_path / "quote.csv"
    path.write_text(",".join(COLUMNS) + "\n" + GOOD + 'mixmatch,"cifar10\n')
    with pytest.raises(ConfigError, match=r"quote\.csv:\d+: not valid CSV"):
        load_published(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_published(tmp_path / "missing.csv")


def markdown_row(text: str, cell: str) -> str:
    """The one markdown table line that holds ``cell``."""
    lines = [line for line in text.splitlines() if line.startswith("|") and cell in line]
    assert len(lines) == 1, (cell, lines)
    return lines[0]


def html_row(page: str, cell: str) -> str:
    """The one published row of the page that holds ``cell``."""
    rows = [r for r in page.split('<tr class="published">')[1:] if cell in r.split("</tr>")[0]]
    assert len(rows) == 1, (cell, len(rows))
    return rows[0].split("</tr>")[0]


def test_the_evaluation_rule_and_seeds_show_beside_each_published_row(tmp_path):
    write_table(tmp_path, {"fixmatch": [0.90, 0.91]}, n=250, dataset="cifar10")
    text = lb.write_leaderboard(tmp_path)
    page = (tmp_path / "index.html").read_text()
    section = text.split("## cifar10")[1].split("\n## ")[0].split("Published (")[1]  # the published table
    header = markdown_row(section, "| algorithm ")
    assert header.index("seeds") < header.index("evaluation") < header.index("250 labels")
    expected = [
        ("94.93 ± 0.65 (published)", "5 folds", "median of last 20"),  # FixMatch Table 2, FixMatch (RA)
        ("52.46 ± 11.50 (published)", "5 folds", "median of last 20"),  # FixMatch Table 2, MixMatch at 40 labels
        ("95.03 ± 0.05 (published)", "3 seeds", "best during training"),  # USB, FixMatch at 250 labels
        ("67.68 ± 2.30 (published, unverified)", "5 folds", "median of last 20"),  # FixMatch Table 2, Mean Teacher
        ("25.66 ± 1.76 (published)", "3 seeds", "best during training"),  # TorchSSL README, Pi-Model at 40 labels
        ("23.07 ± 2.29 (published)", "3 seeds", "best during training"),  # USB, Mean Teacher at 40 labels
        ("94.57 ± 0.96 (published)", "not stated", "final checkpoint"),  # UDA's own script, 250 labels
    ]
    for cell, seeds, rule in expected:
        cells = [c.strip() for c in markdown_row(section, cell).split("|")]
        assert cells[cells.index(seeds) + 1] == rule, cell
        row = html_row(page, cell)
        assert f">{seeds}</td><td " in row and f">{rule}</td>" in row, cell
        assert row.index(f">{seeds}</td>") < row.index(f">{rule}</td>") < row.index(cell)
    # a dataset with no runs of ours and the domain-adaptation numbers carry the rule too
    svhn = text.split("## Published numbers of datasets with no runs here yet")[1].split("### svhn")[1]
    assert "| final checkpoint " in markdown_row(svhn.split("\n### ")[0], "97.77 ± 0.07 (published)")
    da = text.split("## Published domain-adaptation numbers")[1]
    assert "| evaluation " in markdown_row(da, "| method ") and "not stated" in markdown_row(da, "| 90.40 ")
