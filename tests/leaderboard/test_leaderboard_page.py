"""One leaderboard generation: README, index.html, plots and exports from the same records, escaped, atomic."""

import csv
import errno
import json
import os
from pathlib import Path

import pytest
from leaderboard_records import record, write_table

import ssl_bench.leaderboard as lb
from ssl_bench.cli import main
from ssl_bench.errors import ConfigError
from ssl_bench.leaderboard.published import load_published
from ssl_bench.results.store import write_record

EVIL = "<script>alert(1)</script>"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def digits(tmp_path):
    write_table(tmp_path, {"fixmatch": [0.91, 0.92, 0.93], "supervised": [0.80, 0.81, 0.85]})
    write_table(tmp_path, {"fixmatch": [0.95, 0.96, 0.97], "supervised": [0.88, 0.86, 0.87]}, n=40)
    return tmp_path


def test_generation_writes_readme_page_and_named_plots(tmp_path):
    digits(tmp_path)
    text = lb.write_leaderboard(tmp_path)
    assert (tmp_path / "README.md").read_text() == text
    page = (tmp_path / "index.html").read_text()
    for name in ("accuracy_vs_labels_digits.png", "learning_curves_digits.png", "accuracy_vs_labels_cifar10.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
        assert f"]({name})" in text and f'src="{name}"' in page
    # the same cells in both: fixmatch at 20 labels, mean of 91, 92, 93
    assert "92.00 ± 1.00 (n=3)" in text and "92.00 ± 1.00 (n=3)" in page
    assert not list(tmp_path.glob(".leaderboard-*"))  # the staging folder is gone


def test_page_cells_name_their_seeds_records_and_commits(tmp_path):
    digits(tmp_path)
    lb.write_leaderboard(tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "seeds: 1, 2, 3" in page and "commits: abcdef1234" in page
    assert 'href="runs/digits/fixmatch/digits.1@20-0-' in page


def test_published_rows_and_protocol_differences(tmp_path):
    write_table(tmp_path, {"fixmatch": [0.90, 0.91]}, n=250, dataset="cifar10")
    text = lb.write_leaderboard(tmp_path)
    section = text.split("## cifar10")[1].split("\n## ")[0]
    assert "| fixmatch " in section and "90.50 ± 0.71 (n=2)" in section  # ours
    assert "94.93 ± 0.65 (published)" in section  # FixMatch (RA), Table 2: 5.07 % error at 250 labels
    assert "Protocol differences from the published rows" in section and "100 steps (ours)" in section
    # the evaluation rules of the published rows, not "20 (the papers)": USB and TorchSSL report their best
    rules = "best during training, final checkpoint, median of last 20 (published)"
    assert f"median of the last 5 evaluations (ours) vs {rules}" in section
    assert "94.93" in (tmp_path / "index.html").read_text()


def test_published_numbers_without_runs_of_ours(tmp_path):
    digits(tmp_path)
    text = lb.write_leaderboard(tmp_path)
    rest = text.split("## Published numbers of datasets with no runs here yet")[1]
    assert "### cifar10" in rest and "### svhn" in rest and "### digits" not in rest
    pub = load_published()
    n_c10 = len({(m, p) for m, p, d, s in zip(pub["method"], pub["paper"], pub["dataset"], pub["setting"],
                                               strict=True) if d == "cifar10" and s == "ssl"})  # fmt: skip
    assert f"Published ({n_c10} rows)" in rest.split("### cifar100")[0]


def test_paired_comparisons_in_the_digits_section(tmp_path):
    digits(tmp_path)
    text = lb.write_leaderboard(tmp_path)
    assert "### digits: A vs B" in text
    line = next(x for x in text.splitlines() if "fixmatch vs supervised" in x and "| 20 " in x)
    assert "+10.00" in line and "fixmatch beats supervised" in line  # (11 + 11 + 8) / 3


def test_record_and_recipe_text_is_escaped(tmp_path):
    write_table(tmp_path, {"fixmatch": [0.9, 0.9]}, recipe={"name": "evil|name", "description": EVIL})
    text = lb.write_leaderboard(tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "evil\\|name" in text


def test_stale_plots_of_an_older_generation_are_removed(tmp_path):
    digits(tmp_path)
    (tmp_path / "active.png").write_bytes(PNG_MAGIC)  # the name of an older generation
    (tmp_path / "learning_curves_gone.png").write_bytes(PNG_MAGIC)
    (tmp_path / "mine.png").write_bytes(PNG_MAGIC)  # not a leaderboard plot: kept
    killed = tmp_path / ".leaderboard-k1ll3d"  # the staging folder a SIGKILLed generation leaves
    killed.mkdir()
    (killed / "README.md").write_text("# half")
    lb.write_leaderboard(tmp_path)
    assert not (tmp_path / "active.png").exists() and not (tmp_path / "learning_curves_gone.png").exists()
    assert (tmp_path / "mine.png").exists() and not killed.exists()


def test_a_failed_generation_leaves_the_previous_one(tmp_path, monkeypatch):
    digits(tmp_path)
    lb.write_leaderboard(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    write_record(tmp_path, record("mixmatch", 20, 1, 0.5))

    def broken(report):
        raise RuntimeError("disk full")

    monkeypatch.setattr(lb, "render_page", broken)
    with pytest.raises(RuntimeError):
        lb.write_leaderboard(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert not list(tmp_path.glob(".leaderboard-*"))


def test_a_full_disk_is_one_line_and_leaves_the_previous_generation(tmp_path, monkeypatch, capsys):
    digits(tmp_path)
    lb.write_leaderboard(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    write_record(tmp_path, record("mixmatch", 20, 1, 0.5))
    original = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "index.html":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["leaderboard", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssl-bench: error: could not write ") and "index.html: no space left" in err
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert not list(tmp_path.glob(".leaderboard-*"))


def test_missing_results_dir_is_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="does not exist"):
        lb.write_leaderboard(tmp_path / "none")
    assert main(["leaderboard", "--results-dir", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    "argv",
    [["leaderboard"], ["compare", "fixmatch", "supervised", "--dataset", "digits"], ["exchange-rate"]],
    ids=["leaderboard", "compare", "exchange-rate"],
)
def test_commands_that_read_records_name_a_missing_or_file_results_dir(tmp_path, capsys, argv):
    (tmp_path / "README.md").write_text("not a results directory")
    for name, why in [("README.md", "is a file, not a directory"), ("none", "does not exist")]:
        assert main([*argv, "--results-dir", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ssl-bench: error: results directory {tmp_path / name} {why}")
        assert err.count("\n") == 1
    assert (tmp_path / "README.md").read_text() == "not a results directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


def test_export_csv_and_json_one_row_per_record(tmp_path):
    digits(tmp_path)
    write_record(tmp_path, record("fixmatch", 20, 1, 0.5, round=1, acquisition="random", config_hash="r" * 64))
    out_csv, out_json = tmp_path / "x" / "all.csv", tmp_path / "all.json"
    assert main(["leaderboard", "--results-dir", str(tmp_path), "--csv", str(out_csv), "--json", str(out_json)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 13 == len(json.loads(out_json.read_text()))
    first = next(r for r in rows if r["algorithm"] == "fixmatch" and r["n_labels"] == "40" and r["seed"] == "2")
    assert float(first["acc_median_pct"]) == pytest.approx(96.0)
    assert first["model"] == "small_cnn-1" and first["git_commit"] == "abcdef1234567890"
    assert first["record_file"].startswith("runs/digits/fixmatch/digits.2@40-0-")
    active = [r for r in json.loads(out_json.read_text()) if r["acquisition"] == "random"]
    assert len(active) == 1 and active[0]["round"] == 1


def test_every_plot_has_a_title_and_labeled_axes(tmp_path, monkeypatch):
    import pandas as pd

    from ssl_bench.leaderboard import plots
    from ssl_bench.leaderboard.tables import records_frame
    from ssl_bench.results.store import load_records

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, **kw: figures.append(fig) or path)
    frame = records_frame(load_records(digits(tmp_path)))
    active = pd.DataFrame(
        {"dataset": "digits", "algorithm": "mixmatch", "acquisition": "random", "round": [0, 1], "n_labels": [20, 30],
         "seed": 1, "acc": [80.0, 90.0]}
    )  # fmt: skip
    rates = pd.DataFrame(
        {"dataset": ["digits"], "algorithm": ["mixmatch"], "n_labels": [20], "label_worth_unlabeled": [7.0]}
    )
    assert plots.plot_budgets(frame, load_published().iloc[:0], "digits", tmp_path / "a.png")
    assert plots.plot_curves(frame, "digits", tmp_path / "b.png")
    assert plots.plot_active(active, "digits", tmp_path / "c.png")
    assert plots.plot_exchange(rates, tmp_path / "d.png")
    titles = []
    for fig in figures:
        ax = fig.axes[0]
        titles.append(fig._suptitle.get_text() if fig._suptitle else ax.get_title())
        assert ax.get_xlabel() and ax.get_ylabel()
    assert titles == [
        "digits: accuracy against label budget (mean ± std over seeds)",
        "digits: learning curves",
        "digits: active learning, accuracy as labels are acquired",
        "What one label is worth, in unlabeled images",
    ]


def drawn_names(monkeypatch) -> list[str]:
    """The PNGs a generation draws (rather than copies from the previous one), in order."""
    from ssl_bench.leaderboard import plots

    names, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path, **kw: names.append(path.name) or save(fig, path, **kw))
    return names


def test_a_generation_from_the_same_records_redraws_no_plot(tmp_path, monkeypatch):
    from ssl_bench.leaderboard.plots import stored_digest

    digits(tmp_path)
    lb.write_leaderboard(tmp_path)
    pngs = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}
    assert len(pngs) >= 6 and all(len(stored_digest(tmp_path / n) or "") == 64 for n in pngs)
    drawn = drawn_names(monkeypatch)
    lb.write_leaderboard(tmp_path)
    assert drawn == []
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.png")} == pngs


def test_a_new_record_redraws_the_plots_of_its_dataset_only(tmp_path, monkeypatch):
    digits(tmp_path)
    lb.write_leaderboard(tmp_path)
    write_record(tmp_path, record("mixmatch", 20, 1, 0.5))
    drawn = drawn_names(monkeypatch)
    lb.write_leaderboard(tmp_path)
    assert sorted(drawn) == ["accuracy_vs_labels_digits.png", "learning_curves_digits.png"]


def test_a_png_that_is_not_this_plot_is_redrawn(tmp_path, monkeypatch):
    from PIL import Image

    from ssl_bench.leaderboard import plots
    from ssl_bench.leaderboard.plots import stored_digest

    (tmp_path / "home").write_text("")  # no kept copies of published-only plots: their folder cannot be made
    monkeypatch.setattr(plots, "shared_dir", lambda: tmp_path / "home/.cache/ssl_bench/plots")
    digits(tmp_path)
    lb.write_leaderboard(tmp_path)
    Image.new("RGB", (4, 4)).save(tmp_path / "accuracy_vs_labels_cifar10.png")  # no digest
    (tmp_path / "accuracy_vs_labels_svhn.png").write_bytes(PNG_MAGIC + b"cut short")  # half a file
    curves = tmp_path / "learning_curves_digits.png"
    (tmp_path / "accuracy_vs_labels_digits.png").write_bytes(curves.read_bytes())  # another plot's digest
    drawn = drawn_names(monkeypatch)
    lb.write_leaderboard(tmp_path)
    assert sorted(drawn) == [
        "accuracy_vs_labels_cifar10.png",
        "accuracy_vs_labels_digits.png",
        "accuracy_vs_labels_svhn.png",
    ]
    assert stored_digest(tmp_path / "accuracy_vs_labels_svhn.png") != stored_digest(curves)


def test_published_only_plots_are_drawn_once_for_every_results_directory(tmp_path, monkeypatch):
    """A dataset with no runs of ours has the same plot in every results directory: the first generation keeps it
    (named by its digest), later ones in new results directories copy it; a kept copy that is not that plot is
    drawn again; plots of our records are never kept."""
    from ssl_bench.leaderboard import plots
    from ssl_bench.leaderboard.plots import stored_digest

    cache = tmp_path / "cache"
    monkeypatch.setattr(plots, "shared_dir", lambda: cache)
    drawn = drawn_names(monkeypatch)
    lb.write_leaderboard(digits(tmp_path / "a"))
    published = sorted(n for n in drawn if not n.endswith("_digits.png"))
    assert len(published) >= 4 and "accuracy_vs_labels_cifar10.png" in published
    kept = {stored_digest(tmp_path / "a" / n): n for n in published}
    assert sorted(p.stem for p in cache.glob("*.png")) == sorted(kept)  # no digits plot, nothing else
    drawn.clear()
    lb.write_leaderboard(digits(tmp_path / "b"))
    assert sorted(drawn) == ["accuracy_vs_labels_digits.png", "learning_curves_digits.png"]
    for n in published:
        assert (tmp_path / "b" / n).read_bytes() == (tmp_path / "a" / n).read_bytes()
    digest = stored_digest(tmp_path / "a" / "accuracy_vs_labels_svhn.png")
    (cache / f"{digest}.png").write_bytes((tmp_path / "a" / "accuracy_vs_labels_cifar10.png").read_bytes())
    drawn.clear()
    lb.write_leaderboard(digits(tmp_path / "c"))
    assert "accuracy_vs_labels_svhn.png" in drawn and "accuracy_vs_labels_cifar10.png" not in drawn
    assert stored_digest(cache / f"{digest}.png") == digest == stored_digest(tmp_path / "c/accuracy_vs_labels_svhn.png")


def test_without_a_home_directory_published_plots_are_drawn(tmp_path, monkeypatch):
    from ssl_bench.leaderboard import plots

    monkeypatch.setattr(plots, "shared_dir", lambda: None)
    drawn = drawn_names(monkeypatch)
    lb.write_leaderboard(digits(tmp_path))
    assert "accuracy_vs_labels_cifar10.png" in drawn and (tmp_path / "accuracy_vs_labels_cifar10.png").exists()
