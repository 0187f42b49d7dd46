import json

import numpy as np
import pytest
import torch

from ssl_bench.config import DataConfig
from ssl_bench.data.datasets import load_dataset
from ssl_bench.data.images import ImageDataset, resize_images
from ssl_bench.data.split_ids import SplitId
from ssl_bench.data.splits import draw_split, get_split, greedy_select, manifest_path, read_manifest
from ssl_bench.errors import ConfigError, DataError, SplitError


@pytest.fixture(scope="module")
def digits() -> ImageDataset:
    return load_dataset(DataConfig(dataset="digits"))


def test_digits_arrays(digits):
    assert digits.train_images.shape == (1297, 1, 8, 8) and digits.test_images.shape == (500, 1, 8, 8)
    assert digits.train_images.dtype == torch.uint8 and digits.train_labels.dtype == torch.int64
    assert digits.num_classes == 10 and not digits.hflip
    assert int(digits.train_images.max()) == 255 and int(digits.train_images.min()) == 0
    # stratified: test classes in proportion to the 1,797 images' classes
    assert torch.bincount(digits.test_labels, minlength=10).tolist() == [50, 51, 49, 51, 50, 51, 50, 50, 48, 50]


def test_digits_split_is_the_documented_one(digits):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    _, test_idx = train_test_split(np.arange(1797), test_size=500, stratify=bunch.target, random_state=0)
    first = np.sort(test_idx)[0]
    expect = np.rint(bunch.images[first] * 255 / 16).astype(np.uint8)
    assert np.array_equal(digits.test_images[0, 0].numpy(), expect)
    assert int(digits.test_labels[0]) == bunch.target[first]


def test_fingerprint_is_stable_and_sensitive(digits):
    fp = digits.fingerprint()
    assert fp == load_dataset(DataConfig(dataset="digits")).fingerprint()
    images = digits.train_images.clone()
    images[0, 0, 0, 0] ^= 1
    changed = ImageDataset(**{**digits.__dict__, "train_images": images, "source_fingerprint": None})
    assert changed.fingerprint() != fp


def test_resize_images_bilinear():
    img = torch.tensor([[[[0, 255], [255, 0]]]], dtype=torch.uint8)
    out = resize_images(img, 4)
    assert out.shape == (1, 1, 4, 4) and out.dtype == torch.uint8
    assert int(out[0, 0, 0, 0]) == 0 and int(out[0, 0, 0, 3]) == 255  # corners keep their values
    assert resize_images(img, 2) is img


def test_split_id_parse():
    sid = SplitId.parse("digits.1@40-100")
    assert (sid.dataset, sid.seed, sid.n_labels, sid.n_valid) == ("digits", 1, 40, 100)
    assert str(sid) == "digits.1@40-100"
    for bad in ("digits.x@40-0", "digits@40-0", "digits.1@40", "digits.1@-1-0", ""):
        with pytest.raises(SplitError, match="invalid split id"):
            SplitId.parse(bad)
    with pytest.raises(ConfigError, match="unknown dataset 'nosuch'"):
        SplitId.parse("nosuch.1@40-0")


def test_greedy_select_matches_reference_rule():
    per_class = [np.array([10, 11, 12]), np.array([20, 21, 22]), np.array([30, 31, 32])]
    picks, npos = greedy_select(per_class, np.ones(3), 5)
    assert picks == [10, 20, 30, 11, 21]  # round robin, ties to the lowest class
    assert npos.tolist() == [2, 2, 1]
    per_class = [np.arange(10, 20), np.arange(20, 30), np.arange(30, 40)]
    picks, npos = greedy_select(per_class, np.array([1.0, 0.5, 0.5]), 8)
    assert picks[:4] == [10, 20, 30, 11]
    assert npos.tolist() == [4, 2, 2]  # class 0, twice as frequent, gets twice the picks


def test_balanced_split_exact_budget_disjoint_valid(digits):
    labels = digits.train_labels.numpy()
    sid = SplitId("digits", 3, 40, 100)
    labeled, valid = draw_split(labels, 10, sid, "balanced")
    assert len(labeled) == 40 and len(valid) == 100
    assert np.bincount(labels[labeled], minlength=10).tolist() == [4] * 10
    assert np.bincount(labels[valid], minlength=10).tolist() == [10] * 10
    assert not set(labeled) & set(valid)
    again = draw_split(labels, 10, sid, "balanced")
    assert np.array_equal(labeled, again[0]) and np.array_equal(valid, again[1])
    other = draw_split(labels, 10, SplitId("digits", 4, 40, 100), "balanced")
    assert not np.array_equal(labeled, other[0])
    odd, _ = draw_split(labels, 10, SplitId("digits", 3, 25, 0), "balanced")
    assert np.bincount(labels[odd], minlength=10).tolist() == [3] * 5 + [2] * 5


def test_split_golden_indices(digits):
    labeled, _ = draw_split(digits.train_labels.numpy(), 10, SplitId("digits", 1, 10, 0), "balanced")
    # np.random.RandomState(1) shuffles class 0..9 in order and takes the first of each
    rng = np.random.RandomState(1)
    labels = digits.train_labels.numpy()
    expect = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        expect.append(idx[0])
    assert labeled.tolist() == sorted(expect)


def test_budget_errors(digits):
    labels = digits.train_labels.numpy()
    with pytest.raises(SplitError, match="smaller than the 10 classes"):
        draw_split(labels, 10, SplitId("digits", 1, 9, 0), "balanced")
    with pytest.raises(SplitError, match="exceeds the 1297 training images"):
        draw_split(labels, 10, SplitId("digits", 1, 1200, 100), "balanced")


def test_unlabeled_pool_option(digits, tmp_path):
    split = get_split(digits, SplitId("digits", 1, 40, 100), manifest_dir=tmp_path)
    with_l = split.unlabeled(1297, include_labeled=True)
    without = split.unlabeled(1297, include_labeled=False)
    assert len(with_l) == 1197 and len(without) == 1157
    assert set(split.labeled) <= set(with_l) and not set(split.labeled) & set(without)
    assert not set(split.valid) & set(with_l)


def test_manifest_written_once_and_verified(digits, tmp_path):
    sid = SplitId("digits", 2, 20, 10)
    split = get_split(digits, sid, manifest_dir=tmp_path)
    path = manifest_path(tmp_path, sid)
    manifest = json.loads(path.read_text())
    assert manifest["split"] == "digits.2@20-10" and manifest["hash"] == split.hash
    assert manifest["dataset_fingerprint"] == digits.fingerprint()
    assert get_split(digits, sid, manifest_dir=tmp_path).hash == split.hash

    tampered = dict(manifest, labeled=sorted(manifest["labeled"][:-1] + [manifest["valid"][0]]))
    path.write_text(json.dumps(tampered))
    with pytest.raises(DataError, match="was modified"):
        get_split(digits, sid, manifest_dir=tmp_path)

    path.write_text(json.dumps(manifest))
    images = digits.train_images.clone()
    images[5] = 255 - images[5]
    changed = ImageDataset(**{**digits.__dict__, "train_images": images, "source_fingerprint": None})
    with pytest.raises(DataError, match="fingerprint mismatch"):
        get_split(changed, sid, manifest_dir=tmp_path)

    path.write_text("{not json")
    with pytest.raises(DataError, match="unreadable or malformed"):
        read_manifest(path, digits)


def test_manifest_is_used_not_redrawn(digits, tmp_path):
    """A manifest from an earlier draw stays authoritative even if the drawing rule would give other indices."""
    sid = SplitId("digits", 5, 20, 0)
    split = get_split(digits, sid, manifest_dir=tmp_path)
    path = manifest_path(tmp_path, sid)
    m = json.loads(path.read_text())
    from ssl_bench.data.splits import Split

    moved = Split(
        m["split"],
        np.array(sorted(m["labeled"][1:] + [0])),
        np.array([], dtype=np.int64),
        m["dataset_fingerprint"],
        "balanced",
    )
    path.write_text(json.dumps(moved.manifest()))
    assert get_split(digits, sid, manifest_dir=tmp_path).labeled.tolist() == moved.labeled.tolist()
    assert moved.hash != split.hash


def test_resized_dataset_keeps_the_fingerprint_of_its_source(digits, tmp_path):
    """A split drawn at 8x8 is the same split at 16x16: the manifest identifies the data, not its display size."""
    big = load_dataset(DataConfig(dataset="digits", image_size=16))
    assert big.train_images.shape[-1] == 16 and big.fingerprint() == digits.fingerprint()
    sid = SplitId("digits", 1, 40, 100)
    assert get_split(digits, sid, manifest_dir=tmp_path).hash == get_split(big, sid, manifest_dir=tmp_path).hash


def test_dataset_cache_keeps_the_last_two_and_older_ones_while_they_fit(monkeypatch):
    """A long-lived worker goes from run to run: over the memory budget the dataset cache keeps only the two most
    recently used (a pair's domains), reloads an evicted one with the same content and reuses a kept one as is;
    within the budget it keeps them all."""
    from ssl_bench.data import datasets, images

    monkeypatch.setattr(datasets, "_CACHE", {})
    monkeypatch.setattr(images, "CACHE_BYTES", 0)
    first = [load_dataset(DataConfig(dataset="digits", image_size=s)) for s in (8, 12, 16)]
    assert [k[3] for k in datasets._CACHE] == [12, 16]
    assert load_dataset(DataConfig(dataset="digits", image_size=16)) is first[2]  # kept
    again = load_dataset(DataConfig(dataset="digits", image_size=8))  # evicted, loaded anew
    assert again is not first[0] and torch.equal(again.train_images, first[0].train_images)
    assert [k[3] for k in datasets._CACHE] == [16, 8]
    assert first[2].nbytes == 1797 * 16 * 16 + 1797 * 8  # uint8 images of every split, int64 labels
    monkeypatch.setattr(images, "CACHE_BYTES", 3 * first[2].nbytes)
    load_dataset(DataConfig(dataset="digits", image_size=12))
    assert [k[3] for k in datasets._CACHE] == [16, 8, 12]  # all three fit


def test_committed_manifests_of_every_setting_read_back_as_one_split_type(digits):
    """The leaderboard's manifests, SSL and domain adaptation alike, verify against their data, keep their stored
    hash, and serialize back to the same bytes; the setting is the one their id names."""
    from ssl_bench.data.pairs import load_pair
    from tests.conftest import ROOT

    pair = load_pair(DataConfig(setting="uda", source="digits", target="digits_m", image_size=8))
    paths = [p for p in sorted((ROOT / "leaderboard/splits").glob("*.json")) if ".active-" not in p.name]
    settings = set()
    for path in paths:
        text = path.read_text()
        stored = json.loads(text)
        name = stored["split"]
        setting = "uda" if name.endswith("@uda") else "ssda" if "@ssda" in name else "ssl"
        split = read_manifest(path, digits if setting == "ssl" else pair)
        assert split.setting == setting and split.hash == stored["hash"] and split.id == path.stem
        assert json.dumps(split.manifest(), indent=1) + "\n" == text
        if setting == "ssl":
            assert len(split.target_labeled) == 0 and split.labeled.tolist() == stored["labeled"]
        else:  # every source image labeled, the labeled target images after them, no validation set
            assert split.labeled.tolist() == list(range(stored["n_source"])) and len(split.valid) == 0
            assert split.target_labeled.tolist() == [stored["n_source"] + i for i in stored["labeled_target"]]
            assert len(split.pool(len(pair.train_labels), split.labeled, False)) == stored["n_target"] - len(
                stored["labeled_target"]
            )
        settings.add(setting)
    assert settings == {"ssl", "uda", "ssda"}
