"""Paired comparison: golden statistics on hand-made differences, pairing by split, verdicts, the CLI."""

import pytest
from leaderboard_records import record, write_table

from ssl_bench.cli import main
from ssl_bench.errors import ConfigError
from ssl_bench.leaderboard.compare import compare, device_label, provenance_frame
from ssl_bench.leaderboard.tables import records_frame
from ssl_bench.results.store import load_records, write_record

# t(0.975, df=4), from any table of Student's t
T_975_4 = 2.7764451


def frame_of(results):
    return records_frame(load_records(results))


def test_golden_interval_t_test_and_wilcoxon(tmp_path):
    # differences A - B = 1, 2, 3, 4, 5 points: mean 3, s = sqrt(2.5), t = 3 / (s / sqrt 5) = 4.2426
    write_table(tmp_path, {"fixmatch": [0.81, 0.82, 0.83, 0.84, 0.85], "supervised": [0.80] * 5})
    (p,) = compare(frame_of(tmp_path), "fixmatch", "supervised")
    half = T_975_4 * (2.5**0.5) / 5**0.5
    assert p.n == 5 and p.seeds == [1, 2, 3, 4, 5]
    assert p.diffs == pytest.approx([1, 2, 3, 4, 5])
    assert p.mean == pytest.approx(3.0)
    assert (p.low, p.high) == pytest.approx((3 - half, 3 + half), abs=1e-6)
    assert p.p_t == pytest.approx(0.013236, abs=2e-5)  # two-sided p of t = 4.2426 with 4 degrees of freedom
    assert p.p_wilcoxon == pytest.approx(2 / 32)  # exact: all five signs positive
    assert p.verdict.startswith("fixmatch beats supervised by 3.00 points")


def test_not_distinguishable_when_the_interval_contains_zero(tmp_path):
    write_table(tmp_path, {"fixmatch": [0.81, 0.79, 0.82, 0.78, 0.805], "mixmatch": [0.80] * 5})
    (p,) = compare(frame_of(tmp_path), "fixmatch", "mixmatch")
    assert p.low < 0 < p.high
    assert "not distinguishable" in p.verdict


def test_pairs_only_shared_splits(tmp_path):
    write_table(tmp_path, {"fixmatch": [0.9, 0.9, 0.9], "supervised": [0.8, 0.8]})
    write_record(tmp_path, record("supervised", 20, 3, 0.1, split_hash="another-split", config_hash="x" * 64))
    (p,) = compare(frame_of(tmp_path), "fixmatch", "supervised")
    assert p.seeds == [1, 2]  # seed 3 of supervised ran on another labeled split: not a pair
    assert p.diffs == pytest.approx([10.0, 10.0])


def test_one_pair_is_not_enough(tmp_path):
    write_table(tmp_path, {"fixmatch": [0.9], "supervised": [0.8]})
    (p,) = compare(frame_of(tmp_path), "fixmatch", "supervised")
    assert p.n == 1 and p.p_t is None and "not distinguishable" in p.verdict


def test_ambiguous_name_asks_for_a_row_key(tmp_path):
    write_table(tmp_path, {"fixmatch": [0.9, 0.9], "supervised": [0.8, 0.8]})
    write_record(tmp_path, record("fixmatch", 20, 1, 0.7, steps=500, config_hash="y" * 64))
    with pytest.raises(ConfigError, match="names 2 rows"):
        compare(frame_of(tmp_path), "fixmatch", "supervised")
    (p,) = compare(frame_of(tmp_path), "fixmatch/weak/small_cnn-1/all/500/5", "supervised")
    assert p.n == 1 and p.diffs == pytest.approx([-10.0])


def test_variants_are_rows_of_their_own_and_named_with_or_without_the_variant(tmp_path):
    """Runs of two code bases' semantics (algorithm.variant) never share a row; the bare name picks the one
    recorded, and asks which when both are."""
    usb = {"model": {"width": 1}, "algorithm": {"name": "softmatch", "variant": "usb"}}
    torchssl = {"model": {"width": 1}, "algorithm": {"name": "softmatch", "variant": "torchssl"}}
    write_table(tmp_path, {"supervised": [0.8, 0.8, 0.8]})
    for seed, acc in ((1, 0.9), (2, 0.95), (3, 0.85)):
        write_record(tmp_path, record("softmatch", 20, seed, acc, config=torchssl))
    (p,) = compare(frame_of(tmp_path), "softmatch", "supervised")
    assert p.a.startswith("softmatch[torchssl]/") and p.diffs == pytest.approx([10.0, 15.0, 5.0])
    for seed in (1, 2):
        write_record(tmp_path, record("softmatch", 20, seed, 0.7, config=usb, config_hash=f"usb{seed}".ljust(64, "0")))
    assert set(frame_of(tmp_path)["algorithm"]) == {"softmatch[torchssl]", "softmatch[usb]", "supervised"}
    with pytest.raises(ConfigError, match="names 2 rows"):
        compare(frame_of(tmp_path), "softmatch", "supervised")
    (p,) = compare(frame_of(tmp_path), "softmatch[usb]", "supervised")
    assert p.diffs == pytest.approx([-10.0, -10.0])


def test_a_row_against_itself_is_refused(tmp_path):
    write_table(tmp_path, {"fixmatch": [0.9, 0.8], "supervised": [0.8, 0.8]})
    for b in ("fixmatch", "fixmatch/weak/small_cnn-1/all/100/5"):
        with pytest.raises(ConfigError, match="name the same row of digits"):
            compare(frame_of(tmp_path), "fixmatch", b)


def test_cli_prints_differences_and_interval(tmp_path, capsys):
    write_table(tmp_path, {"fixmatch": [0.81, 0.82, 0.83, 0.84, 0.85], "supervised": [0.80] * 5})
    write_table(tmp_path, {"fixmatch": [0.9] * 5, "supervised": [0.85] * 5}, n=40)
    assert main(["compare", "fixmatch", "supervised", "--dataset", "digits", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits @ 20 labels" in out and "digits @ 40 labels" in out
    assert "seed 1: +1.00" in out and "95% CI [+1.04, +4.96]" in out
    assert main(["compare", "fixmatch", "supervised", "--labels", "40", "--results-dir", str(tmp_path)]) == 0
    assert "@ 20 labels" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "fixmatch", "supervised", "--dataset", "cifar10"], "--dataset 'cifar10': no records"),
        (["compare", "fixmatch", "remixmatch"], "no budget where both"),  # remixmatch has only 40 labels
        (["compare", "fixmatch", "nope"], "'nope' names no recorded row: algorithms recorded: fixmatch, remixmatch"),
        (["compare", "nope/weak", "fixmatch", "--dataset", "digits"], "'nope/weak' names no recorded row of digits"),
        (["compare", "fixmatch", "supervised", "--labels", "250"], "at --labels 250"),
    ],
)
def test_cli_bad_requests_are_one_line_errors(tmp_path, capsys, argv, message):
    write_table(tmp_path, {"fixmatch": [0.9, 0.9], "supervised": [0.8, 0.8]})
    write_table(tmp_path, {"remixmatch": [0.9, 0.9]}, n=40)
    assert main([*argv, "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_missing_results_dir(tmp_path, capsys):
    assert main(["compare", "a", "b", "--results-dir", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


HOST = {"cpu": "AMD EPYC", "cpu_id": "cpu family 25 model 17 stepping 1", "cores": 2}


def test_device_label_names_the_cpu_model_or_the_gpus():
    assert device_label({"device": "cpu", "host": HOST, "devices": ["AMD EPYC"]}) == (
        "cpu: AMD EPYC (cpu family 25 model 17 stepping 1)"
    )
    assert device_label({"device": "cpu", "devices": ["Intel Xeon"]}) == "cpu: Intel Xeon"  # no host: its devices
    assert device_label({"device": "cuda", "host": HOST, "devices": ["NVIDIA H100", "NVIDIA H100"]}) == (
        "cuda: NVIDIA H100"
    )
    assert device_label({}) == "?: ?"


def test_commits_and_devices_are_named_and_one_of_each_warns_of_nothing(tmp_path, capsys):
    write_table(tmp_path, {"fixmatch": [0.9, 0.8], "supervised": [0.7, 0.6]}, host=HOST, devices=["AMD EPYC"])
    assert main(["compare", "fixmatch", "supervised", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "  A: commit abcdef1234; device cpu: AMD EPYC (cpu family 25 model 17 stepping 1)\n" in out
    assert "  B: commit abcdef1234; device cpu: AMD EPYC (cpu family 25 model 17 stepping 1)\n" in out
    assert "warning" not in out


def test_mixed_commits_devices_and_missing_hosts_warn(tmp_path, capsys):
    write_table(tmp_path, {"fixmatch": [0.9, 0.8]}, host=HOST)
    other = dict(HOST, cpu="Intel Xeon", cpu_id="cpu family 6 model 85 stepping 7")
    write_record(tmp_path, record("supervised", 20, 1, 0.7, host=other, git_commit="1234567abcdef"))
    write_record(tmp_path, record("supervised", 20, 2, 0.6, git_dirty=True))  # an older record: no host
    (p,) = compare(provenance_frame(load_records(tmp_path)), "fixmatch", "supervised")
    assert p.commits_a == ["abcdef1234"] and p.commits_b == ["1234567abc", "abcdef1234+dirty"]
    assert p.devices_b == ["cpu: ?", "cpu: Intel Xeon (cpu family 6 model 85 stepping 7)"]
    assert p.hostless == 1
    assert main(["compare", "fixmatch", "supervised", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "warning: the pairs mix commits" in out and "warning: the pairs mix devices" in out
    assert "warning: 1 of the 4 paired records name no host" in out


def test_one_row_across_two_results_folders(tmp_path, capsys):
    here, there = tmp_path / "here", tmp_path / "there"
    write_table(here, {"fixmatch": [0.9, 0.8, 0.85]}, host=HOST)
    write_table(there, {"fixmatch": [0.8, 0.7, 0.75]}, host=dict(HOST, cpu="Intel Xeon", cpu_id="family 6"))
    argv = ["compare", "fixmatch", "fixmatch", "--results-dir", str(here), "--results-dir-b", str(there)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"  A from {here}: commit abcdef1234; device cpu: AMD EPYC (" in out
    assert f"  B from {there}: commit abcdef1234; device cpu: Intel Xeon (family 6)" in out
    assert "seed 1: +10.00, seed 2: +10.00, seed 3: +10.00" in out
    assert "verdict: not distinguishable" not in out and "A (fixmatch) beats B (fixmatch)" in out
    assert "warning: the pairs mix devices" in out and "mix commits" not in out


def test_second_results_folder_errors_are_one_line(tmp_path, capsys):
    write_table(tmp_path / "a", {"fixmatch": [0.9, 0.8]})
    (tmp_path / "empty").mkdir()
    for b_dir, message in ((tmp_path / "none", "does not exist"), (tmp_path / "empty", "check --results-dir-b")):
        argv = ["compare", "fixmatch", "fixmatch", "--results-dir", str(tmp_path / "a"), "--results-dir-b", str(b_dir)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
