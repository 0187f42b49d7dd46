"""A results folder that cannot be written (a shared, read-only mount): its rows export, its page is refused."""

import csv
import os
import shutil
import subprocess

import pytest
from leaderboard_records import write_table

from ssl_bench.cli import main


def _writes(path):
    try:
        (path / ".probe").mkdir()
    except OSError:
        return False
    (path / ".probe").rmdir()
    return True


@pytest.fixture
def read_only(tmp_path):
    """A folder of records that truly cannot be written: a read-only tmpfs mount as root, else chmod 555."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    write_table(src, {"fixmatch": [0.9, 0.8], "supervised": [0.7, 0.6]})
    ro.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(ro)], capture_output=True).returncode == 0
    )
    shutil.copytree(src / "runs", ro / "runs")
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    else:
        os.chmod(ro, 0o555)
    try:
        if _writes(ro):
            pytest.skip("no way here to make a folder read-only (root ignores chmod and cannot mount)")
        yield ro, "read-only file system" if mounted else "permission denied"
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=True)
        else:
            os.chmod(ro, 0o755)


def test_csv_and_json_export_from_a_read_only_folder(read_only, tmp_path, capsys):
    read_only, why = read_only
    before = sorted(p.relative_to(read_only) for p in read_only.rglob("*"))
    out_csv, out_json = tmp_path / "rows.csv", tmp_path / "rows.json"
    assert main(["leaderboard", "--results-dir", str(read_only), "--csv", str(out_csv), "--json", str(out_json)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert sorted((r["algorithm"], r["seed"]) for r in rows) == [
        ("fixmatch", "1"), ("fixmatch", "2"), ("supervised", "1"), ("supervised", "2")
    ]  # fmt: skip
    assert out_json.read_text().count('"algorithm"') == 4
    captured = capsys.readouterr()
    assert f"cannot be written ({why}): rows exported" in captured.err
    assert "| fixmatch" in captured.out  # the README it would have written is still printed
    assert sorted(p.relative_to(read_only) for p in read_only.rglob("*")) == before  # no lock, no page, nothing


def test_writing_the_page_into_a_read_only_folder_is_one_line(read_only, capsys):
    read_only, why = read_only
    assert main(["leaderboard", "--results-dir", str(read_only)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{read_only} cannot be written ({why})" in err and "--csv" in err


def test_compare_reads_a_read_only_folder(read_only, capsys):
    read_only, _ = read_only
    assert main(["compare", "fixmatch", "supervised", "--results-dir", str(read_only)]) == 0
    assert "digits @ 20 labels" in capsys.readouterr().out
