"""Tests of the ``folder`` loader on small PNG/JPEG class trees written with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

from ssl_bench.config import DataConfig
from ssl_bench.data import load_dataset
from ssl_bench.data.images import ImageDataset
from ssl_bench.errors import DataError
from ssl_bench.plan import recipe_from_dict
from ssl_bench.runner import run_recipe

# class folder name -> number of images; names deliberately not in creation order, to test the sorting
CLASSES = {"zebra": 6, "Apple": 5, "mango": 7}
SORTED = sorted(CLASSES)  # ["Apple", "mango", "zebra"]: uppercase sorts first, as Python's sorted() does


def colour(label: int, index: int) -> tuple[int, int, int]:
    """A solid colour that encodes (class id, image index), so every image can be traced after loading."""
    return (40 * label + 10, 9 * index + 5, 200 - 3 * index)


def write_tree(root: Path, classes: dict[str, int] = CLASSES, size: tuple[int, int] = (12, 9)) -> None:
    """Solid-colour RGB PNGs (lossless), each class id in sorted name order."""
    for label, name in enumerate(sorted(classes)):
        (root / name).mkdir(parents=True)
        for i in range(classes[name]):
            Image.new("RGB", size, colour(label, i)).save(root / name / f"img{i:02d}.png")


def load(root: Path, image_size: int = 8) -> ImageDataset:
    return load_dataset(DataConfig(dataset="folder", root=str(root), image_size=image_size))


def assert_one_line(err: pytest.ExceptionInfo[DataError], *needles: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_classes_sorted_resized_and_split(tmp_path: Path) -> None:
    write_tree(tmp_path)
    ds = load(tmp_path, image_size=8)
    assert ds.name == "folder"
    assert ds.num_classes == 3
    assert ds.hflip is False  # a mirrored digit or letter is another class: flips are asked for, never assumed
    assert ds.train_images.dtype == torch.uint8
    assert ds.train_labels.dtype == torch.int64
    assert tuple(ds.train_images.shape[1:]) == (3, 8, 8)
    assert tuple(ds.test_images.shape[1:]) == (3, 8, 8)
    n = sum(CLASSES.values())
    assert len(ds.train_images) + len(ds.test_images) == n

    # the documented split, recomputed: tree order (sorted classes, sorted file names), sklearn 20% stratified, seed 0
    labels = np.repeat(np.arange(3), [CLASSES[c] for c in SORTED])
    order = [(label, i) for label, name in enumerate(SORTED) for i in range(CLASSES[name])]
    train_idx, test_idx = train_test_split(np.arange(n), test_size=0.2, stratify=labels, random_state=0)
    for images, targets, idx in (
        (ds.train_images, ds.train_labels, train_idx),
        (ds.test_images, ds.test_labels, test_idx),
    ):
        idx = np.sort(idx)
        assert targets.tolist() == labels[idx].tolist()
        for row, k in enumerate(idx):
            label, i = order[k]
            # a solid image stays exactly solid through the resize: every pixel is its colour
            expected = torch.tensor(colour(label, i), dtype=torch.uint8)[:, None, None].expand(3, 8, 8)
            assert torch.equal(images[row], expected), (row, label, i)
    assert len(ds.test_labels) == 4
    assert set(ds.test_labels.tolist()) == {0, 1, 2}


def test_resize_content_and_extensions(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    left_white = np.zeros((20, 40, 3), dtype=np.uint8)
    left_white[:, :20] = 255
    for i in range(5):
        Image.fromarray(left_white).save(tmp_path / "a" / f"x{i}.PNG")  # upper-case suffix counts
        Image.new("RGB", (30, 30), (0, 0, 255)).save(tmp_path / "b" / f"y{i}.jpeg", quality=95)
    Image.new("RGB", (30, 30), (0, 0, 255)).save(tmp_path / "b" / "z.jpg", quality=95)
    (tmp_path / "b" / "notes.txt").write_text("not an image, ignored")
    (tmp_path / "b" / ".hidden.png").write_bytes(b"editor junk, ignored")
    ds = load(tmp_path, image_size=16)
    assert ds.num_classes == 2
    assert len(ds.train_images) + len(ds.test_images) == 11
    a = ds.train_images[ds.train_labels == 0][0]
    # a 40x20 image squeezed to 16x16: left half white, right half black, blurred only at the seam
    assert (a[:, :, :7] == 255).all()
    assert (a[:, :, 9:] == 0).all()
    b = ds.train_images[ds.train_labels == 1].int()
    assert (b[:, 2] >= 245).all()
    assert (b[:, :2] <= 10).all()


def test_all_greyscale_stays_one_channel(tmp_path: Path) -> None:
    for name in ("dark", "light"):
        (tmp_path / name).mkdir()
        for i in range(5):
            level = 30 + i if name == "dark" else 220 - i
            Image.new("L", (10, 10), level).save(tmp_path / name / f"{i}.png")
    Image.new("1", (10, 10), 1).save(tmp_path / "light" / "bitmap.png")  # 1-bit counts as grey: white = 255
    ds = load(tmp_path, image_size=4)
    assert ds.channels == 1
    images = torch.cat([ds.train_images, ds.test_images])
    labels = torch.cat([ds.train_labels, ds.test_labels])
    assert set(images[labels == 0].flatten().tolist()) == {30, 31, 32, 33, 34}
    assert set(images[labels == 1].flatten().tolist()) == {216, 217, 218, 219, 220, 255}


def test_mixed_modes_become_rgb(tmp_path: Path) -> None:
    (tmp_path / "grey").mkdir()
    (tmp_path / "colour").mkdir()
    for i in range(5):
        Image.new("L", (6, 6), 100).save(tmp_path / "grey" / f"{i}.png")
        Image.new("RGBA", (6, 6), (10, 20, 30, 128)).save(tmp_path / "colour" / f"{i}.png")
    palette = Image.new("P", (6, 6), 0)
    palette.putpalette([7, 8, 9] + [0, 0, 0] * 255)
    palette.save(tmp_path / "colour" / "p.png")
    ds = load(tmp_path, image_size=6)
    assert ds.channels == 3
    images = torch.cat([ds.train_images, ds.test_images])
    labels = torch.cat([ds.train_labels, ds.test_labels])  # "colour" < "grey": class 0 is colour
    grey = images[labels == 1]
    assert (grey == 100).all()  # grey replicated to R = G = B
    colours = {tuple(img[:, 0, 0].tolist()) for img in images[labels == 0]}
    assert colours == {(10, 20, 30), (7, 8, 9)}  # alpha dropped, palette expanded


def test_train_test_folders_used_as_given(tmp_path: Path) -> None:
    write_tree(tmp_path / "train", {"cat": 3, "dog": 2})
    write_tree(tmp_path / "test", {"cat": 1, "dog": 2})
    ds = load(tmp_path, image_size=5)
    assert ds.num_classes == 2
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.test_labels.tolist() == [0, 1, 1]
    assert ds.test_images[2, :, 0, 0].tolist() == list(colour(1, 1))


def test_train_test_channels_decided_over_both(tmp_path: Path) -> None:
    for root in ("grey", "mixed"):  # two roots: load_dataset caches per root
        for part in ("train", "test"):
            for name in ("cat", "dog"):
                (tmp_path / root / part / name).mkdir(parents=True)
                Image.new("L", (5, 5), 60).save(tmp_path / root / part / name / "a.png")
    assert load(tmp_path / "grey", image_size=5).channels == 1  # all grey in train and test
    Image.new("RGB", (5, 5), (1, 2, 3)).save(tmp_path / "mixed" / "test" / "dog" / "b.png")
    ds = load(tmp_path / "mixed", image_size=5)  # one colour image in test: everything becomes RGB, train included
    assert ds.channels == 3
    assert ds.test_images.shape[1] == 3
    assert (ds.train_images == 60).all()
    assert ds.test_images[2, :, 0, 0].tolist() == [1, 2, 3]


def test_train_test_class_mismatch(tmp_path: Path) -> None:
    write_tree(tmp_path / "train", {"cat": 3, "dog": 2})
    write_tree(tmp_path / "test", {"cat": 1, "bird": 2})
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert_one_line(err, "same class folders", "bird", "dog")


def test_only_one_of_train_test(tmp_path: Path) -> None:
    write_tree(tmp_path / "train", {"cat": 3, "dog": 2})
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert_one_line(err, str(tmp_path / "train"), str(tmp_path / "test"))


def test_needs_image_size(tmp_path: Path) -> None:
    write_tree(tmp_path)
    with pytest.raises(DataError) as err:
        load(tmp_path, image_size=0)
    assert_one_line(err, "folder dataset needs data.image_size")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load(tmp_path / "nope")
    assert_one_line(err, str(tmp_path / "nope"), "not a directory")


def test_no_class_folders(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.png")
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert_one_line(err, "no class folders", str(tmp_path))


def test_class_without_images(tmp_path: Path) -> None:
    write_tree(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert_one_line(err, str(tmp_path / "empty"), "no .png/.jpg/.jpeg images")


@pytest.mark.parametrize("content", [b"", b"definitely not a PNG", "truncated"])
def test_unreadable_image_is_named(tmp_path: Path, content: bytes | str) -> None:
    write_tree(tmp_path)
    bad = tmp_path / "mango" / "img03.png"
    if content == "truncated":
        # a real PNG cut short: the header opens fine, decoding the pixels fails
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(bad)
        bad.write_bytes(bad.read_bytes()[:200])
    else:
        bad.write_bytes(content)
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert_one_line(err, "cannot read image", str(bad))


def test_split_needs_two_images_per_class(tmp_path: Path) -> None:
    write_tree(tmp_path, {"big": 9, "tiny": 1})
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert_one_line(err, "stratified", str(tmp_path / "train"))


@pytest.mark.parametrize(("flip", "flipped"), [(None, False), (True, False), ("always", True), ("never", False)])
def test_a_folder_run_flips_only_when_asked_and_its_record_says_so(tmp_path: Path, flip, flipped) -> None:
    write_tree(tmp_path / "data")
    values = {
        "grid": {"n_labels": [3], "seeds": [1]},
        "data": {"dataset": "folder", "root": str(tmp_path / "data"), "image_size": 8},
        "model": {"name": "small_cnn", "width": 1},
        "train": {"steps": 2, "batch_size": 2, "eval_every": 2, "median_k": 1, "progress": False},
        "algorithm": {"name": "supervised"},
    }
    if flip is not None:
        values["augment"] = {"flip": flip}
    (record,) = run_recipe(recipe_from_dict(values), tmp_path / "results", log=lambda s: None)
    assert record["flip"] is flipped
    assert record["config"]["augment"]["flip"] == {None: "dataset", True: "dataset"}.get(flip, flip)
