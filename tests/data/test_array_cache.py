"""The digits arrays' cache (data/array_cache.py): the same arrays as scikit-learn's loader, rebuilt when the file
is damaged or wrong, skipped when it cannot be written, and a warm cache spares the scikit-learn import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ssl_bench.data.array_cache import cache_path, read_arrays
from ssl_bench.data.digits import digits_arrays


@pytest.fixture(scope="module")
def fresh():
    """The arrays rebuilt here straight from scikit-learn, as digits_arrays documents them."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    train, test = train_test_split(np.arange(1797), test_size=500, stratify=bunch.target, random_state=0)
    return np.rint(bunch.images * 255 / 16).astype(np.uint8), bunch.target, np.sort(train), np.sort(test)


def same(got, want) -> bool:
    return all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_the_cache_is_written_once_and_read_back(tmp_path, fresh):
    path = cache_path(tmp_path, "digits", "scikit-learn")
    assert not path.exists()
    assert same(digits_arrays(tmp_path), fresh)
    assert path.exists() and path.name.startswith("digits-scikit-learn-")
    stamp = path.stat().st_mtime_ns
    assert same(digits_arrays(tmp_path), fresh)
    assert path.stat().st_mtime_ns == stamp  # read, not rewritten


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape", "missing_key"])
def test_a_damaged_or_wrong_cache_is_rebuilt(tmp_path, fresh, damage):
    path = cache_path(tmp_path, "digits", "scikit-learn")
    digits_arrays(tmp_path)
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not an npz file")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:
        a = read_arrays(path)
        if damage == "wrong_shape":
            a["pixels"] = a["pixels"][:, :4]
        else:
            del a["test_idx"]
        np.savez(path, **a)
        assert path.exists()
    assert same(digits_arrays(tmp_path), fresh)
    assert same(digits_arrays(tmp_path), fresh) and read_arrays(path) is not None  # the good file is back


def test_an_unwritable_root_still_gives_the_arrays(tmp_path, fresh):
    blocker = tmp_path / "root"
    blocker.write_text("a file where the data root's folder would be")
    assert same(digits_arrays(blocker), fresh)


def test_a_warm_cache_spares_the_scikit_learn_import(tmp_path):
    digits_arrays(tmp_path)
    code = (
        "import sys; from ssl_bench.config import DataConfig; from ssl_bench.data.datasets import load_dataset; "
        f"ds = load_dataset(DataConfig(dataset='digits', root={str(tmp_path)!r})); "
        "print(len(ds.train_labels), 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1297", "False"]


def test_digits_m_images_are_cached_and_the_same_as_built(tmp_path):
    from ssl_bench.data.digits_m import digits_m_images, make_digits_m

    pixels = digits_arrays(tmp_path)[0]
    built = make_digits_m(pixels)
    assert np.array_equal(digits_m_images(pixels, str(tmp_path)), built)
    (path,) = tmp_path.glob("digits_m-*.npz")
    assert path.name.startswith("digits_m-seed0-32px-scikit-learn-") and "-pillow-" in path.name
    assert np.array_equal(read_arrays(path)["images"], built)
    a = read_arrays(path)
    np.savez(path, images=a["images"][:, :16])  # a wrong shape is rebuilt
    assert np.array_equal(digits_m_images(pixels, str(tmp_path)), built)
    assert read_arrays(path)["images"].shape == built.shape
    code = (
        "import sys; from ssl_bench.config import DataConfig; from ssl_bench.data.datasets import load_dataset; "
        f"ds = load_dataset(DataConfig(dataset='digits_m', root={str(tmp_path)!r})); "
        "print(tuple(ds.train_images.shape), 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "(1297, 3, 32, 32) False"
