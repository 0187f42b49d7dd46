"""Paths a user can get wrong: an empty flag, a file where a folder of the results directory goes, an export that
would overwrite the leaderboard's own files, a split side out of range. Each is one line and writes nothing."""

import pytest

from ssl_bench.cli import main
from tests.conftest import ROOT, files_in, one_line_error

SMOKE = str(ROOT / "recipes/smoke.toml")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", SMOKE, "--results-dir", ""],
        ["leaderboard", "--results-dir", " "],
        ["leaderboard", "--csv", ""],
        ["bench", "train", "--json", ""],
    ],
)
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(argv, tmp_path, monkeypatch, capsys):
    """Path("") is ".": `--results-dir ''` wrote README.md, index.html, runs/ and splits/ into the working folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "is empty: give a path" in capsys.readouterr().err
    assert files_in(tmp_path) == [tmp_path / "README.md"] and (tmp_path / "README.md").read_text() == "mine"


@pytest.mark.parametrize("name", ["runs", "splits", ".checkpoints", ".locks"])
def test_a_file_where_a_results_folder_goes_is_refused_before_training(name, tmp_path, capsys):
    """A file named .locks or .checkpoints raised FileExistsError / NotADirectoryError (the latter after the record
    was written); runs/ or splits/ as a file was found only after training, with the split manifest left behind."""
    results = tmp_path / "r"
    results.mkdir()
    (results / name).write_text("x")
    assert main(["run", SMOKE, "--results-dir", str(results), "--set", "train.steps=4"]) == 2
    one_line_error(capsys, f"{results / name} is a file where the results directory's folder {name}/ goes")
    assert files_in(results) == [results / name]


@pytest.fixture
def recorded(tmp_path):
    results = tmp_path / "r"
    assert main(["run", SMOKE, "--results-dir", str(results), "--set", "train.steps=4", "--quiet"]) == 0
    return results


@pytest.mark.parametrize(
    "exports, message",
    [
        ({"--csv": "README.md"}, "--csv {r}/README.md would overwrite the leaderboard's README.md"),
        ({"--json": "index.html"}, "would overwrite the leaderboard's index.html"),
        ({"--csv": "accuracy_vs_labels_digits.png"}, "would overwrite the leaderboard's accuracy_vs_labels_digits.png"),
        ({"--csv": "out.txt", "--json": "out.txt"}, "--json and --csv name the same file"),
    ],
)
def test_an_export_that_would_overwrite_a_file_of_the_generation_is_refused(recorded, capsys, exports, message):
    before = {p: p.read_bytes() for p in files_in(recorded)}
    capsys.readouterr()
    argv = ["leaderboard", "--results-dir", str(recorded)]
    for option, name in exports.items():
        argv += [option, str(recorded / name)]
    assert main(argv) == 2
    one_line_error(capsys, message.format(r=recorded))
    assert {p: p.read_bytes() for p in files_in(recorded)} == before


def test_an_export_beside_the_leaderboard_with_another_name_is_written(recorded):
    assert main(["leaderboard", "--results-dir", str(recorded), "--csv", str(recorded / "rows.csv")]) == 0
    assert (recorded / "rows.csv").read_text().count("\n") == 2  # header and the one record


@pytest.mark.parametrize(
    "argv, message",
    [
        (["digits-digits_m.1@uda", "--image-size", "100000"], "between 8 and 512 pixels, got 100000"),
        (["digits-digits_m.1@uda", "--image-size", "3"], "--image-size must be between 8 and 512 pixels, got 3"),
        (["digits.1@40-0", "--image-size", "16"], "--image-size applies to domain-adaptation split ids"),
    ],
)
def test_split_image_size_is_checked_like_data_image_size(argv, message, tmp_path, capsys):
    """100,000 px asked the allocator for 52 TB; 3 px wrote a manifest no run accepts; an SSL id ignored it."""
    assert main(["split", *argv, "--results-dir", str(tmp_path / "r")]) == 2
    one_line_error(capsys, message)
    assert files_in(tmp_path / "r") == []


@pytest.mark.parametrize("name", ["README.md", "index.html", "accuracy_vs_labels_digits.png"])
def test_a_folder_where_the_leaderboard_writes_a_file_leaves_the_previous_generation_whole(recorded, capsys, name):
    """With a folder named README.md the page and plots were moved in and the README failed, naming a staging
    folder that no longer existed."""
    before = {p: p.read_bytes() for p in files_in(recorded)}
    target = recorded / name
    target.unlink()
    target.mkdir()
    before.pop(target)
    capsys.readouterr()
    assert main(["leaderboard", "--results-dir", str(recorded)]) == 2
    one_line_error(capsys, f"{target} is a folder where the leaderboard writes its {name}; move it")
    assert {p: p.read_bytes() for p in files_in(recorded)} == before
    assert not list(recorded.glob(".leaderboard-*"))
