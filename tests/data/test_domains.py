"""Domain adaptation (docs/algorithms/adamatch.md): the digits_m target, the pair registry, uda/ssda splits and their
manifests, AdaMatch's SSDA step, the trainer's target streams, records, the leaderboard's DA table and the CLI.

Every run here is tiny (image_size 8, small_cnn width 1, a few steps of batch 4) so the file stays fast on a CPU.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ssl_bench.data  # noqa: F401  (registers every dataset loader)
from ssl_bench.algorithms.adamatch import AdaMatch, AdaMatchConfig
from ssl_bench.augment.views import Batch
from ssl_bench.cli import main
from ssl_bench.config import DataConfig
from ssl_bench.config_checks import check_fields
from ssl_bench.data import load_data, load_dataset
from ssl_bench.data.checks import check_data
from ssl_bench.data.digits import digits_arrays
from ssl_bench.data.digits_m import make_digits_m
from ssl_bench.data.images import resize_images, to_channels
from ssl_bench.data.pairs import PAIRS, load_pair
from ssl_bench.data.split_ids import DASplitId
from ssl_bench.data.splits import draw_da_split, get_da_split, get_run_split, manifest_path, read_manifest
from ssl_bench.errors import ConfigError, DataError, SplitError, SSLBenchError
from ssl_bench.identity import run_hash
from ssl_bench.leaderboard.tables import da_table, records_frame, ssl_tables
from ssl_bench.plan import expand, load_recipe, recipe_from_dict
from ssl_bench.results.store import load_records
from ssl_bench.runner import run_recipe
from ssl_bench.train import Trainer
from ssl_bench.train.build import build_run
from tests.conftest import ROOT, files_in

# sha256 of the bytes of digits_m's train_images (uint8 (1297, 3, 32, 32), NCHW, C order): pins make_digits_m with
# seed 0 (photo/side/corner draws, bilinear digit enlargement, PIL bilinear patch shrink, |patch - digit| blend) on
# scikit-learn's digits and sample photographs. A change here silently changes every digits_m split and result.
DIGITS_M_TRAIN_SHA256 = "ebd9ed3d4e94285ce1b7fbcf847945e56098132030edc39547d1c845b91d788b"
N_TRAIN, N_TEST = 1297, 500  # the digits split (digits.digits_arrays), shared by digits_m
DA_DIR = ROOT / "recipes/da"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: one intra-op thread is faster than two spinning against other busy processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_one_line(err: pytest.ExceptionInfo, *needles: str) -> None:
    assert isinstance(err.value, SSLBenchError)
    msg = str(err.value)
    assert msg and "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def da_cfg(**kw) -> DataConfig:
    base = {"setting": "uda", "source": "digits", "target": "digits_m", "image_size": 8}
    return DataConfig(**{**base, **kw})


def pair8():
    return load_pair(da_cfg())


def tiny_values(algorithm: str = "adamatch", target_labels=(0, 1), **data) -> dict:
    """A recipe dict: digits -> digits_m at 8x8, 4 steps of batch 4, small_cnn width 1."""
    return {
        "name": "tiny-da",
        "grid": {"target_labels": list(target_labels), "seeds": [1]},
        "data": {"setting": "uda", "source": "digits", "target": "digits_m", "image_size": 8, **data},
        "model": {"name": "small_cnn", "width": 1, "bn_momentum": 0.01},
        "train": {"steps": 4, "batch_size": 4, "eval_every": 2, "median_k": 2, "progress": False},
        "algorithm": {"name": algorithm},
        "augment": {"strong": "randaugment"},
    }


def toml_text(values: dict) -> str:
    """A recipe dict as TOML (values are str, int, bool or lists of them: their JSON form is valid TOML)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for section, table in values.items():
        if isinstance(table, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_recipe(path: Path, values: dict) -> str:
    path.write_text(toml_text(values))
    return str(path)


# ------------------------------------------------------------------------------------------------ 1. digits_m


def test_digits_m_shapes_labels_and_golden_hash():
    dm = load_dataset(DataConfig(dataset="digits_m"))
    digits = load_dataset(DataConfig(dataset="digits"))
    assert dm.train_images.dtype == torch.uint8 and dm.test_images.dtype == torch.uint8
    assert tuple(dm.train_images.shape) == (N_TRAIN, 3, 32, 32)
    assert tuple(dm.test_images.shape) == (N_TEST, 3, 32, 32)
    assert torch.equal(dm.train_labels, digits.train_labels) and torch.equal(dm.test_labels, digits.test_labels)
    assert dm.num_classes == 10 and dm.hflip is False and dm.classes == tuple("0123456789")
    assert hashlib.sha256(dm.train_images.contiguous().numpy().tobytes()).hexdigest() == DIGITS_M_TRAIN_SHA256
    pixels, _, train_idx, _ = digits_arrays()
    built = make_digits_m(pixels)[train_idx]  # the construction itself, not a cached copy of it
    assert hashlib.sha256(np.ascontiguousarray(built.transpose(0, 3, 1, 2)).tobytes()).hexdigest() == (
        DIGITS_M_TRAIN_SHA256
    )
    # image i comes from digit i, drawn in order: the first 20 digits alone give the same images
    head = make_digits_m(pixels[:20])
    rows = np.flatnonzero(train_idx < 20)
    assert len(rows) > 5
    expected = torch.from_numpy(head[train_idx[rows]]).permute(0, 3, 1, 2)
    assert torch.equal(dm.train_images[torch.from_numpy(rows)], expected)


def test_make_digits_m_is_seeded_and_blends_by_absolute_difference():
    pixels = digits_arrays()[0][:12]
    a, b = make_digits_m(pixels, seed=3), make_digits_m(pixels, seed=3)
    assert a.dtype == np.uint8 and a.shape == (12, 32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, make_digits_m(pixels, seed=4))
    # same seed -> same patches p: |p - 0| + |p - 255| = 255 at every pixel and channel
    zeros = make_digits_m(np.zeros((12, 8, 8), np.uint8), seed=5, size=16).astype(np.int32)
    full = make_digits_m(np.full((12, 8, 8), 255, np.uint8), seed=5, size=16).astype(np.int32)
    assert zeros.shape == (12, 16, 16, 3)
    assert np.all(zeros + full == 255)
    assert zeros.std() > 10  # the patches are photographs, not a constant


# ------------------------------------------------------------------------------------------------ 2. to_channels


def test_to_channels_grey_rgb_and_pil_luma():
    g = torch.Generator().manual_seed(0)
    grey = torch.randint(0, 256, (5, 1, 6, 7), generator=g, dtype=torch.uint8)
    rgb = to_channels(grey, 3)
    assert rgb.shape == (5, 3, 6, 7) and rgb.is_contiguous()
    assert all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))
    colour = torch.randint(0, 256, (16, 3, 9, 7), generator=g, dtype=torch.uint8)
    luma = to_channels(colour, 1)
    assert luma.dtype == torch.uint8 and luma.shape == (16, 1, 9, 7)
    pil = np.stack([np.asarray(Image.fromarray(img.permute(1, 2, 0).numpy()).convert("L")) for img in colour])
    assert np.array_equal(luma[:, 0].numpy(), pil)
    # extremes and pure channels: PIL's rounding of (19595 R + 38470 G + 7471 B + 2^15) >> 16
    pure = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]], dtype=torch.uint8)
    assert to_channels(pure.view(5, 3, 1, 1), 1).flatten().tolist() == [76, 150, 29, 255, 0]
    assert to_channels(colour, 3) is colour and to_channels(grey, 1) is grey


# ------------------------------------------------------------------------------------------------ 3. load_pair


def test_load_pair_digits_to_digits_m():
    pair = pair8()
    digits = load_dataset(DataConfig(dataset="digits", image_size=8))
    dm8 = load_dataset(DataConfig(dataset="digits_m", image_size=8))
    n = pair.n_source
    assert pair.name == "digits-digits_m" and n == N_TRAIN and pair.num_classes == 10
    assert tuple(pair.train_images.shape) == (2 * N_TRAIN, 3, 8, 8)
    assert torch.equal(pair.train_images[:n], digits.train_images.expand(-1, 3, -1, -1))
    assert torch.equal(pair.train_images[n:], dm8.train_images)
    dm_full = load_dataset(DataConfig(dataset="digits_m"))
    assert torch.equal(dm8.train_images, resize_images(dm_full.train_images, 8))
    assert torch.equal(pair.train_labels, torch.cat([digits.train_labels, dm8.train_labels]))
    assert torch.equal(pair.test_images, dm8.test_images) and torch.equal(pair.test_labels, dm8.test_labels)
    assert pair.hflip is False
    # the fingerprint is that of the arrays as loaded, not of the resize or the channel conversion
    grey = load_pair(da_cfg(channels=1))
    assert tuple(grey.train_images.shape) == (2 * N_TRAIN, 1, 8, 8) and grey.test_images.shape[1] == 1
    assert torch.equal(grey.train_images[:n], digits.train_images)
    assert torch.equal(grey.train_images[n:], to_channels(dm8.train_images, 1))
    assert grey.fingerprint() == pair.fingerprint()
    assert load_pair(da_cfg(image_size=16)).fingerprint() == pair.fingerprint()
    assert pair.fingerprint() != dm8.fingerprint() and len(pair.fingerprint()) == 64
    # load_data dispatches on the setting
    again = load_data(da_cfg())
    assert again.name == pair.name and again.n_source == n and torch.equal(again.train_images, pair.train_images)
    assert load_data(DataConfig(dataset="digits")).n_source == 0


# ------------------------------------------------------------------------------------------------ 4. errors


@pytest.mark.parametrize(
    "kw, cls, needles",
    [
        (
            {"target": "usps"},
            ConfigError,
            ["unknown domain pair digits -> usps", "digits -> digits_m", "mnist -> usps"],
        ),
        ({"setting": "semi"}, ConfigError, ["unknown setting 'semi'", "ssl, uda, ssda"]),
        ({"target_labels": 1}, ConfigError, ["setting uda uses no target labels", "= 1"]),
        ({"setting": "ssda"}, ConfigError, ["setting ssda needs data.target_labels >= 1", "got 0"]),
        ({"setting": "ssl"}, ConfigError, ["data.source applies to settings uda and ssda"]),
        ({"n_valid": 1}, ConfigError, ["data.n_valid must be 0 in setting uda"]),
        ({"channels": 2}, ConfigError, ["data.channels must be 0 (automatic), 1 or 3"]),
        ({"source": "folder:a"}, ConfigError, ["folder: on both sides"]),
    ],
)
def test_setting_errors_are_one_line(kw, cls, needles):
    cfg = da_cfg(**kw)
    with pytest.raises(cls) as err:
        check_fields(cfg, "data")  # each key's type and choice (what a recipe meets as it is read)
        check_data(cfg)
    assert_one_line(err, *needles)


def write_domain(root: Path, classes: dict[str, int], mode: str) -> None:
    """root/<class>/imgNN.png, 8x8 solid images whose value encodes (class, index)."""
    for label, name in enumerate(sorted(classes)):
        (root / name).mkdir(parents=True)
        for i in range(classes[name]):
            value = 30 * label + 7 * i + 10
            colour = value if mode == "L" else (value, 255 - value, (3 * value) % 256)
            Image.new(mode, (8, 8), colour).save(root / name / f"img{i:02d}.png")


def test_folder_pairs(tmp_path):
    write_domain(tmp_path / "sketch", {"cat": 4, "dog": 4, "owl": 4}, "L")
    write_domain(tmp_path / "photo", {"cat": 4, "dog": 4, "owl": 4}, "RGB")
    write_domain(tmp_path / "odd", {"cat": 4, "dog": 4, "emu": 4}, "RGB")
    cfg = DataConfig(setting="uda", source="folder:sketch", target="folder:photo", root=str(tmp_path), image_size=8)
    pair = load_data(cfg)
    # 12 images per domain, stratified 20% held out: 9 train (3 per class), 3 test
    assert pair.n_source == 9 and len(pair.train_labels) == 18 and len(pair.test_labels) == 3
    assert pair.num_classes == 3 and pair.classes == ("cat", "dog", "owl")
    assert pair.channels == 3  # grey source repeated to the target's RGB
    src = load_dataset(DataConfig(dataset="folder", root=str(tmp_path / "sketch"), image_size=8))
    assert src.channels == 1
    assert torch.equal(pair.train_images[:9], to_channels(src.train_images, 3))
    assert torch.equal(pair.train_labels[9:], torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2]))
    with pytest.raises(DataError) as err:
        load_data(
            DataConfig(setting="uda", source="folder:photo", target="folder:odd", root=str(tmp_path), image_size=8)
        )
    assert_one_line(err, "label sets differ", "emu", "owl")
    # more target labels per class than the target has
    sid = DASplitId("folder:sketch", "folder:photo", 1, 4)
    with pytest.raises(SplitError) as err:
        draw_da_split(pair, sid)
    assert_one_line(err, "data.target_labels = 4", "class 0 (cat) has 3 training images")
    split = draw_da_split(pair, DASplitId("folder:sketch", "folder:photo", 1, 3))
    assert sorted(split.target_labeled.tolist()) == list(range(9, 18))


def test_target_labels_above_smallest_class_names_it():
    pair = pair8()
    counts = np.bincount(pair.train_labels[pair.n_source :].numpy(), minlength=10)
    short = int(np.argmin(counts))
    assert (short, int(counts[short])) == (8, 126)
    with pytest.raises(SplitError) as err:
        draw_da_split(pair, DASplitId("digits", "digits_m", 1, 127))
    assert_one_line(err, "target digits_m", "class 8 has 126 training images")
    assert len(draw_da_split(pair, DASplitId("digits", "digits_m", 1, 126)).target_local) == 1260


# ------------------------------------------------------------------------------------------------ 5. DA splits


def test_ssda_split_draws_k_per_class_from_the_target():
    pair = pair8()
    n = pair.n_source
    split = draw_da_split(pair, DASplitId("digits", "digits_m", 1, 3))
    t = split.target_labeled
    assert split.id == "digits-digits_m.1@ssda3"
    assert len(t) == 30 and len(set(t.tolist())) == 30 and t.min() >= n and t.max() < 2 * n
    assert np.array_equal(t, n + split.target_local)
    assert np.bincount(pair.train_labels[t].numpy(), minlength=10).tolist() == [3] * 10
    assert np.array_equal(split.labeled, np.arange(n)) and len(split.valid) == 0
    again = draw_da_split(pair, DASplitId("digits", "digits_m", 1, 3))
    assert np.array_equal(again.target_local, split.target_local) and again.hash == split.hash
    other = draw_da_split(pair, DASplitId("digits", "digits_m", 2, 3))
    assert not np.array_equal(other.target_local, split.target_local) and other.hash != split.hash
    # pool: the whole target range, minus the labeled target images when they are excluded
    assert np.array_equal(split.pool(2 * n, split.labeled, True), np.arange(n, 2 * n))
    expected = np.setdiff1d(np.arange(n, 2 * n), t)
    assert np.array_equal(split.pool(2 * n, split.labeled, False), expected) and len(expected) == n - 30
    with pytest.raises(DataError):
        split.pool(2 * n + 1, split.labeled, True)
    uda = draw_da_split(pair, DASplitId("digits", "digits_m", 1, 0))
    assert uda.id == "digits-digits_m.1@uda" and len(uda.target_labeled) == 0
    assert np.array_equal(uda.pool(2 * n, uda.labeled, False), np.arange(n, 2 * n))


def test_da_split_id_round_trip_and_rejections():
    for text, fields, setting in [
        ("digits-digits_m.2@ssda5", ("digits", "digits_m", 2, 5), "ssda"),
        ("digits-digits_m.1@uda", ("digits", "digits_m", 1, 0), "uda"),
        ("folder:clip-folder:real.0@ssda1", ("folder:clip", "folder:real", 0, 1), "ssda"),
    ]:
        sid = DASplitId.parse(text)
        assert sid == DASplitId(*fields) and str(sid) == text and sid.setting == setting
    for bad in [
        "digits-digits_m.1@ssda0",
        "digits-digits_m.1@ssda",
        "digits-digits_m.1@ssda-1",
        "digits-digits_m@uda",
        "digits-digits_m.x@uda",
        "digits-digits_m.1@40-0",
        "digits_m.1@uda",
        "digits-digits_m.1@UDA",
        "",
    ]:
        with pytest.raises(SplitError) as err:
            DASplitId.parse(bad)
        assert_one_line(err, "invalid domain-adaptation split id")
    with pytest.raises(ConfigError) as err:
        DASplitId.parse("digits-usps.1@uda")
    assert_one_line(err, "unknown domain pair digits -> usps")


def test_da_manifest_round_trip_and_tampering(tmp_path):
    pair = pair8()
    sid = DASplitId("digits", "digits_m", 1, 2)
    split = get_da_split(pair, sid, tmp_path)
    path = tmp_path / "digits-digits_m.1@ssda2.json"
    assert manifest_path(tmp_path, sid) == path and path.exists()
    m = json.loads(path.read_text())
    assert m["split"] == str(sid) and m["n_source"] == N_TRAIN and m["n_target"] == N_TRAIN
    assert m["labeled_target"] == split.target_local.tolist() and m["dataset_fingerprint"] == pair.fingerprint()
    back = read_manifest(path, pair)
    assert back.id == split.id and back.hash == split.hash and back.n_train == split.n_train
    assert np.array_equal(back.target_local, split.target_local) and back.n_source == split.n_source
    again = get_da_split(pair, sid, tmp_path)  # read from the manifest
    assert np.array_equal(again.target_labeled, split.target_labeled)
    # the manifest is size-independent: the pair at 16 px reads it too
    assert read_manifest(path, load_pair(da_cfg(image_size=16))).hash == split.hash
    # a manifest under another split's name
    wrong = manifest_path(tmp_path, DASplitId("digits", "digits_m", 3, 2))
    wrong.write_text(path.read_text())
    with pytest.raises(DataError) as err:
        get_da_split(pair, DASplitId("digits", "digits_m", 3, 2), tmp_path)
    assert_one_line(err, "holds split digits-digits_m.1@ssda2")
    # tampering with the labeled target images
    m["labeled_target"][0] = (m["labeled_target"][0] + 1) % N_TRAIN
    path.write_text(json.dumps(m))
    with pytest.raises(DataError) as err:
        read_manifest(path, pair)
    assert_one_line(err, "was modified")
    with pytest.raises(DataError):
        get_da_split(pair, sid, tmp_path)
    path.write_text("{not json")
    with pytest.raises(DataError) as err:
        read_manifest(path, pair)
    assert_one_line(err, "unreadable or malformed")


def test_get_run_split_by_setting(tmp_path):
    pair = pair8()
    split = get_run_split(pair, da_cfg(setting="ssda", target_labels=1), 4, tmp_path, write=False)
    assert split.id == "digits-digits_m.4@ssda1" and len(split.target_labeled) == 10
    assert files_in(tmp_path) == []
    digits = load_dataset(DataConfig(dataset="digits"))
    ssl = get_run_split(digits, DataConfig(dataset="digits", n_labels=20), 4, None)
    assert ssl.id == "digits.4@20-0" and len(ssl.labeled) == 20 and len(ssl.target_labeled) == 0


# ------------------------------------------------------------------------------------------------ 6. AdaMatch SSDA


C = 4


def log_softmax(z: torch.Tensor) -> torch.Tensor:
    s = z - z.max(dim=1, keepdim=True).values
    return s - torch.log(torch.exp(s).sum(dim=1, keepdim=True))


def ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    ls = log_softmax(z)
    return -torch.stack([ls[i, int(y[i])] for i in range(len(y))]).mean()


def softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z - z.max(dim=1, keepdim=True).values)
    return e / e.sum(dim=1, keepdim=True)


def bn_model() -> nn.Module:
    """Conv -> BatchNorm -> LeakyReLU -> mean pool -> dense: batch statistics make the source-only pass and the
    joint pass (which also holds the target images) give different logits, so the interpolation is no no-op."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.LeakyReLU(0.1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(6, C),
    )  # fmt: skip
    with torch.no_grad():
        model[-1].weight.mul_(10.0)  # confident enough that some, not all, pseudo-labels pass c_tau
    return model.train()


def bn_running_stats(model: nn.Module) -> list[torch.Tensor]:
    bn = model[1]
    return [bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()]


def ssda_reference(model: nn.Module, batch: Batch, progress: float, seed: int) -> dict:
    """docs/algorithms/adamatch.md#reference-step with its SSDA additions, step by step in plain tensor maths on copies
    of ``model`` (fresh estimates: p(labeled) and the 128 FIFO rows start at 1/C)."""
    (sw, ss), (tw, ts), (uw, us) = batch.x, batch.x_target, batch.u
    b, ub = len(sw), len(uw)
    labeled = torch.cat([sw, ss, tw, ts])  # the "labeled" pass is concat(sx, tx)
    only = copy.deepcopy(model)
    z_only = only(labeled)  # training mode, on a copy: its BN update is thrown away
    joint = copy.deepcopy(model)
    z_joint = joint(torch.cat([labeled, uw, us]))  # training mode, BN update kept
    z_lab_joint, z_u = z_joint[: 4 * b], z_joint[4 * b :]
    torch.manual_seed(seed)
    mix = torch.rand_like(z_lab_joint)  # per sample and per class, source and target rows alike
    z_lab = z_lab_joint + mix * (z_only - z_lab_joint)
    z_sw, z_ss, z_tw, z_ts = z_lab[:b], z_lab[b : 2 * b], z_lab[2 * b : 3 * b], z_lab[3 * b :]
    z_uw, z_us = z_u[:ub], z_u[ub:]
    with torch.no_grad():
        p_sw = softmax(z_sw)
        c_tau = 0.9 * p_sw.max(dim=1).values.mean()  # source weak only
        p_lab = 0.999 * torch.full((C,), 1 / C) + 0.001 * p_sw.mean(dim=0)  # source weak only, updated then read
        p_u = softmax(z_uw)
        rows = torch.full((128, C), 1 / C)
        rows[0] = p_u.mean(dim=0)
        p_unl = rows.mean(dim=0) / rows.mean(dim=0).sum()
        q = p_u * (1e-6 + p_lab) / (1e-6 + p_unl)
        q = q / q.sum(dim=1, keepdim=True)
        conf, pseudo = q.max(dim=1)
        mask = (conf >= c_tau).float()
    ls = 0.5 * (ce(z_sw, batch.y) + ce(z_ss, batch.y))
    lt = 0.5 * (ce(z_tw, batch.y_target) + ce(z_ts, batch.y_target))
    log_p = z_us - z_us.max(dim=1, keepdim=True).values
    log_p = log_p - torch.log(torch.exp(log_p).sum(dim=1, keepdim=True))
    lu = -(mask * log_p[torch.arange(ub), pseudo]).sum() / ub  # divided by the unlabeled batch, not by the mask
    mu = 0.5 - 0.5 * math.cos(2 * math.pi * progress) if progress <= 0.5 else 1.0
    return {
        "loss": ls + mu * lu + lt, "ls": ls, "lt": lt, "lu": lu, "mask": mask, "c_tau": c_tau, "p_lab": p_lab,
        "rows": rows, "bn": bn_running_stats(joint), "z_only": z_only, "z_joint": z_lab_joint, "only": only,
        "joint": joint,
    }  # fmt: skip


def test_adamatch_ssda_step_matches_a_rederivation_on_a_batchnorm_model():
    g = torch.Generator().manual_seed(3)

    def imgs(n, contrast=1.0):
        return (torch.rand(n, 3, 8, 8, generator=g) * 2 - 1) * contrast

    b = 8
    x, y = (imgs(b), imgs(b)), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    # the target domain has less contrast: a shift that the batch statistics see
    u = (imgs(3 * b, 0.6), imgs(3 * b, 0.6))
    xt, yt = (imgs(b, 0.6), imgs(b, 0.6)), torch.tensor([3, 3, 0, 1, 2, 2, 1, 0])
    batch = Batch(x=x, y=y, u=u, x_target=xt, y_target=yt)
    model, progress, seed = bn_model(), 0.3, 42
    algo = AdaMatch(copy.deepcopy(model), AdaMatchConfig(), C).train()
    torch.manual_seed(seed)
    loss, metrics = algo.step(batch, progress)
    e = ssda_reference(model, batch, progress, seed)

    def close(a, want, rtol=1e-5, atol=1e-6):
        torch.testing.assert_close(torch.as_tensor(a).float(), torch.as_tensor(want).float(), rtol=rtol, atol=atol)

    # the case exercises what it checks: the two passes differ, and so do confident and unconfident targets
    assert float((e["z_only"] - e["z_joint"]).detach().abs().max()) > 0.1
    assert 0 < float(e["mask"].mean()) < 1
    close(loss, e["loss"])
    close(metrics["loss/x"], e["ls"])
    close(metrics["loss/t"], e["lt"])
    close(metrics["loss/u"], e["lu"])
    close(metrics["monitor/mask"], e["mask"].mean())
    close(metrics["monitor/threshold"], e["c_tau"])
    close(algo.p_labeled.p, e["p_lab"], rtol=0, atol=1e-7)
    close(algo.p_unlabeled.rows, e["rows"])
    for got, want in zip(bn_running_stats(algo.model), e["bn"], strict=True):  # only the joint pass updates BN
        close(got, want)
    # a threshold over source and target weak predictions would be another one
    with torch.no_grad():
        z_w = e["z_joint"] + 0.5 * (e["z_only"] - e["z_joint"])
        mixed = 0.9 * softmax(torch.cat([z_w[:b], z_w[2 * b : 3 * b]])).max(dim=1).values.mean()
    assert abs(float(mixed) - float(metrics["monitor/threshold"])) > 0.02
    # gradients: the algorithm's one model serves both passes, the re-derivation's two copies one pass each
    loss.backward()
    e["loss"].backward()
    for p, a, j in zip(algo.model.parameters(), e["only"].parameters(), e["joint"].parameters(), strict=True):
        torch.testing.assert_close(p.grad, a.grad + j.grad, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------ 7. trainer in ssda


def make_trainer(values: dict) -> tuple[Trainer, object, object]:
    (run,) = expand(recipe_from_dict(values))
    ds = load_data(run.data)
    split = get_run_split(ds, run.data, run.seed, None)
    return Trainer(run, ds, split, run_hash(run)), ds, split


def spy_batches(trainer: Trainer, monkeypatch) -> list[Batch]:
    seen: list[Batch] = []
    step = trainer.algorithm.step

    def spy(batch, progress):
        seen.append(batch)
        return step(batch, progress)

    monkeypatch.setattr(trainer.algorithm, "step", spy)
    return seen


def test_trainer_ssda_streams_and_batches(monkeypatch):
    trainer, ds, split = make_trainer(tiny_values("adamatch", target_labels=[2]))
    n, n_train = ds.n_source, len(ds.train_labels)
    assert trainer.cfg.data.setting == "ssda" and split.id == "digits-digits_m.1@ssda2"
    revealed = torch.nonzero(trainer.feed.labels != -1).flatten().numpy()
    assert np.array_equal(revealed, np.concatenate([np.arange(n), np.sort(split.target_labeled)]))
    assert len(revealed) == n + 20
    assert torch.equal(trainer.feed.labels[revealed], ds.train_labels[revealed])
    assert torch.equal(trainer.feed.labeled.pool.sort().values, torch.arange(n))
    assert torch.equal(trainer.feed.unlabeled.pool.sort().values, torch.arange(n, n_train))
    assert trainer.feed.n_unlabeled == n_train - n
    assert torch.equal(trainer.feed.labeled_target.pool.sort().values, torch.from_numpy(np.sort(split.target_labeled)))
    source_idx = copy.deepcopy(trainer.feed.labeled).next()
    target_idx = copy.deepcopy(trainer.feed.labeled_target).next()
    assert set(target_idx.tolist()) <= set(split.target_labeled.tolist())
    seen = spy_batches(trainer, monkeypatch)
    trainer.train_step()
    (batch,) = seen
    assert len(batch.x) == 2 and all(v.shape == (4, 3, 8, 8) for v in batch.x)
    assert len(batch.x_target) == 2 and all(v.shape == (4, 3, 8, 8) for v in batch.x_target)
    assert all(v.shape == (12, 3, 8, 8) for v in batch.u)
    assert torch.equal(batch.y, ds.train_labels[source_idx])
    assert batch.y_target is not None and torch.equal(batch.y_target, ds.train_labels[target_idx])


def test_trainer_ssda_fixmatch_appends_target_to_labeled(monkeypatch):
    trainer, ds, split = make_trainer(tiny_values("fixmatch", target_labels=[1]))
    assert trainer.algorithm.separate_target_labels is False
    source_idx = copy.deepcopy(trainer.feed.labeled).next()
    target_idx = copy.deepcopy(trainer.feed.labeled_target).next()
    assert set(target_idx.tolist()) <= set(split.target_labeled.tolist())
    seen = spy_batches(trainer, monkeypatch)
    trainer.train_step()
    (batch,) = seen
    assert batch.x_target == () and batch.y_target is None
    assert all(v.shape == (8, 3, 8, 8) for v in batch.x) and len(batch.y) == 8
    # source images first, then the labeled target images of the target stream
    assert torch.equal(batch.y, ds.train_labels[torch.cat([source_idx, target_idx])])
    # one labeled target image per class: the labels name the images
    assert len(set(batch.y[4:].tolist())) == 4


def test_trainer_uda_has_no_target_stream(monkeypatch):
    trainer, ds, split = make_trainer(tiny_values("adamatch", target_labels=[0]))
    assert trainer.feed.labeled_target is None and len(split.target_labeled) == 0
    assert int((trainer.feed.labels != -1).sum()) == ds.n_source
    seen = spy_batches(trainer, monkeypatch)
    trainer.train_step()
    assert seen[0].x_target == () and seen[0].y_target is None


def test_ssda_trainer_resume_restores_the_target_stream(tmp_path):
    full, _, _ = make_trainer(tiny_values("adamatch", target_labels=[1]))
    assert full.run(tmp_path / "a.pt") is not None
    first, _, _ = make_trainer(tiny_values("adamatch", target_labels=[1]))
    assert first.run(tmp_path / "b.pt", stop_at=3) is None
    state = torch.load(tmp_path / "b.pt", weights_only=True)
    assert state["streams"]["target"] == first.feed.labeled_target.state_dict() != {"epoch": 0, "offset": 0}
    resumed, _, _ = make_trainer(tiny_values("adamatch", target_labels=[1]))
    result = resumed.run(tmp_path / "b.pt")
    assert resumed.feed.labeled_target.state_dict() == full.feed.labeled_target.state_dict()
    assert result.acc_history == full.history
    for a, b in zip(resumed.algorithm.state_dict().values(), full.algorithm.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------ 8. end to end


def test_cli_run_uda_and_ssda_records_manifests_leaderboard(tmp_path, results_dir, capsys):
    recipe = write_recipe(tmp_path / "tiny_da.toml", tiny_values("adamatch", target_labels=[0, 1]))
    assert main(["run", recipe, "--results-dir", str(results_dir), "--quiet"]) == 0
    records = sorted(load_records(results_dir), key=lambda r: r["split"], reverse=True)
    assert [r["setting"] for r in records] == ["uda", "ssda"]
    assert [r["split"] for r in records] == ["digits-digits_m.1@uda", "digits-digits_m.1@ssda1"]
    assert [r["n_labels"] for r in records] == [0, 10]
    assert [r["target_labels_per_class"] for r in records] == [0, 1]
    for r in records:
        assert r["source"] == "digits" and r["target"] == "digits_m" and r["dataset"] == "digits-digits_m"
        assert r["algorithm"] == "adamatch" and r["steps"] == 4 and len(r["acc_history"]) == 2
        assert r["n_unlabeled"] == N_TRAIN and r["round"] is None
        assert r["config"]["data"]["setting"] == r["setting"]
        assert r["flip"] is False and r["config"]["augment"]["flip"] == "dataset"  # digits forbid a flip
    assert records[0]["config_hash"] != records[1]["config_hash"]
    for r in records:
        path = results_dir / "splits" / f"{r['split']}.json"
        assert path.exists() and json.loads(path.read_text())["hash"] == r["split_hash"]
    readme = (results_dir / "README.md").read_text()
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("|")]  # the run prints our tables, as written
    assert any("digits → digits_m · uda" in line for line in rows) and "\n".join(rows) in readme
    assert "## Domain adaptation" in readme and "## digits-digits_m" not in readme
    header = next(line for line in readme.splitlines() if "digits → digits_m · uda" in line)
    assert header.index("digits → digits_m · uda") < header.index("digits → digits_m · ssda-1")
    assert not files_in(results_dir / ".checkpoints")


def test_interrupted_ssda_run_resumes_to_the_same_record(tmp_path):
    recipe = recipe_from_dict(tiny_values("adamatch", target_labels=[1]))
    stopped = tmp_path / "stopped"
    assert run_recipe(recipe, stopped, log=lambda s: None, stop_at=2) == []
    assert len(files_in(stopped / ".checkpoints")) == 1
    (resumed,) = run_recipe(recipe, stopped, log=lambda s: None)
    (fresh,) = run_recipe(recipe, tmp_path / "fresh", log=lambda s: None)
    assert resumed["acc_history"] == fresh["acc_history"] and resumed["acc_raw_final"] == fresh["acc_raw_final"]
    assert resumed["split_hash"] == fresh["split_hash"] and resumed["config_hash"] == fresh["config_hash"]
    assert not files_in(stopped / ".checkpoints")


# ------------------------------------------------------------------------------------------------ 9. CLI errors


BAD_DA_RUNS = {
    "unknown pair": (["--set", "data.target=usps"], "unknown domain pair digits -> usps; valid pairs:"),
    "unknown setting": (["--set", "data.setting=semi"], "unknown setting 'semi'"),
    "remixmatch in ssda": (["--set", "algorithm.name=remixmatch"], "does not support setting ssda"),
    "mixmatch in ssda": (["--set", "algorithm.name=mixmatch"], "does not support setting ssda"),
    "n_labels in uda": (["--set", "grid.n_labels=[40]"], "grid.n_labels does not apply to setting uda"),
    "active in uda": (["--set", 'active.acquisitions=["random"]'], "active learning is not available in setting uda"),
    "k too large": (["--set", "grid.target_labels=[0, 127]"], "class 8 has 126 training images"),
    "negative k": (["--set", "grid.target_labels=[-1]"], "labels per class must be >= 0"),
}


@pytest.mark.parametrize("case", [*BAD_DA_RUNS, "target_labels in ssl"])
def test_bad_da_run_inputs(case, tmp_path, results_dir, capsys):
    if case == "target_labels in ssl":
        values = tiny_values("fixmatch", target_labels=[1])
        values["data"] = {"dataset": "digits", "image_size": 8}
        values["grid"]["n_labels"] = [20]
        extra, message = [], "grid.target_labels applies to settings uda and ssda, not ssl"
    else:
        values = tiny_values("adamatch", target_labels=[0, 1])
        extra, message = BAD_DA_RUNS[case]
    recipe = write_recipe(tmp_path / "bad.toml", values)
    assert main(["run", recipe, "--results-dir", str(results_dir), "--quiet", *extra]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("ssl-bench: error:") and "\n" not in err and message in err, err
    assert files_in(results_dir) == []


# ------------------------------------------------------------------------------------------------ 10. leaderboard


def record(setting: str, k: int, seed: int, acc: float, source="digits", target="digits_m", algorithm="adamatch"):
    da = setting != "ssl"
    return {
        "dataset": f"{source}-{target}" if da else source,
        "setting": setting,
        "source": source if da else None,
        "target": target if da else None,
        "target_labels_per_class": k if da else None,
        "round": None,
        "algorithm": algorithm,
        "augmentation": "randaugment+weak",
        "model": "small_cnn",
        "config": {"model": {"width": 1}, "data": {"n_unlabeled": 0}},
        "steps": 100,
        "median_k": 5,
        "n_labels": 10 * k if da else 40,
        "seed": seed,
        "acc_median": acc,
    }


def test_da_table_cells_and_column_order():
    records = [
        record("ssda", 10, 1, 0.90),
        record("uda", 0, 1, 0.80, source="mnist", target="usps"),
        record("ssda", 5, 1, 0.80),
        record("uda", 0, 1, 0.50),
        record("ssda", 1, 1, 0.70),
        record("uda", 0, 2, 0.60),
        record("ssda", 5, 2, 0.90),
        record("uda", 0, 3, 0.70),
        record("ssl", 0, 1, 0.95, algorithm="fixmatch"),
        record("ssl", 0, 2, 0.85, algorithm="fixmatch"),
    ]
    frame = records_frame(records)
    table = da_table(frame)
    cols = [c for c in table.columns if "→" in c]
    assert cols == [
        "digits → digits_m · uda",
        "digits → digits_m · ssda-1",
        "digits → digits_m · ssda-5",
        "digits → digits_m · ssda-10",
        "mnist → usps · uda",
    ]
    assert len(table) == 1 and table["algorithm"].tolist() == ["adamatch"]
    row = table.iloc[0]
    assert row["digits → digits_m · uda"] == "60.00 ± 10.00 (n=3)"  # sample std (ddof 1), not 8.16
    assert row["digits → digits_m · ssda-5"] == "85.00 ± 7.07 (n=2)"
    assert row["digits → digits_m · ssda-1"] == "70.00 ± 0.00 (n=1)"
    assert row["mnist → usps · uda"] == "80.00 ± 0.00 (n=1)"
    ssl = ssl_tables(frame)
    assert list(ssl) == ["digits"]
    assert ssl["digits"]["algorithm"].tolist() == ["fixmatch"] and ssl["digits"]["40 labels"].tolist() == [
        "90.00 ± 7.07 (n=2)"
    ]
    assert da_table(records_frame(records[-2:])) is None


# ------------------------------------------------------------------------------------------------ 11. recipes, CLI


DA_RECIPES = sorted(DA_DIR.rglob("*.toml"))


def test_digits_m_recipes_exist():
    names = {p.name for p in (DA_DIR / "digits_m").glob("*.toml")}
    assert {"adamatch.toml", "fixmatch.toml", "supervised.toml"} <= names


@pytest.mark.parametrize("path", DA_RECIPES, ids=[str(p.relative_to(DA_DIR)) for p in DA_RECIPES])
def test_da_recipes_load_and_expand(path):
    recipe = load_recipe(path)
    assert recipe.data.setting in ("uda", "ssda")
    ks = recipe.grid.target_labels or [recipe.data.target_labels]
    runs = expand(recipe)
    assert len(runs) == len(recipe.grid.seeds) * len(ks)
    for run in runs:
        assert run.data.setting == ("ssda" if run.data.target_labels else "uda")
        assert run.data.source == recipe.data.source and run.data.target == recipe.data.target
    if path.parent.name == "digits_m":
        assert recipe.grid.target_labels == [0, 1] and recipe.grid.seeds == [1, 2, 3, 4, 5]
        assert [r.data.setting for r in runs] == ["uda"] * 5 + ["ssda"] * 5
        assert [r.data.target_labels for r in runs] == [0] * 5 + [1] * 5
        assert len({run_hash(r) for r in runs}) == 10


@pytest.mark.parametrize("path", DA_RECIPES, ids=[str(p.relative_to(DA_DIR)) for p in DA_RECIPES])
def test_adamatch_recipes_flip_every_dataset_as_its_sm_view(path):
    """AdaMatch's weak view sm shifts and flips every dataset, digits included
    (docs/reference/common.md#weak-augmentation); the other methods' DA recipes keep the dataset's choice (no flip for
    digits)."""
    recipe = load_recipe(path)
    assert recipe.augment.flip == ("always" if recipe.algorithm.name == "adamatch" else "dataset")


def test_adamatch_digits_m_run_flips_the_digits():
    (run, *_) = expand(load_recipe(DA_DIR / "digits_m/adamatch.toml", ["data.image_size=8"]))
    pair = load_data(run.data)
    assert pair.hflip is False  # digits and digits_m themselves forbid a flip
    parts = build_run(run, pair)
    assert parts.flip is True
    img = torch.arange(64, dtype=torch.uint8).reshape(1, 1, 8, 8).repeat(200, 3, 1, 1)
    weak = parts.policies["weak"]
    out = weak(img, torch.Generator().manual_seed(0))
    # the pixels rise left to right; a shift of at most 1 px (reflect fill) reverses one step of a row, a flip all
    steps = out[:, 0, :, 1:].int() - out[:, 0, :, :-1].int()
    mirrored = (steps < 0).float().mean(dim=(1, 2)) > 0.5
    assert 60 < int(mirrored.sum()) < 140


def test_cli_list_pairs(capsys):
    assert main(["list", "pairs"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("pairs: ") and "\n" not in out
    pairs = out.removeprefix("pairs: ").split(", ")
    assert "digits -> digits_m" in pairs
    assert {p.replace(" -> ", "-") for p in pairs[:-1]} == set(PAIRS.names())


def test_cli_split_ssda(results_dir, capsys):
    assert main(["split", "digits-digits_m.1@ssda1", "--results-dir", str(results_dir)]) == 0
    out = capsys.readouterr().out
    assert "split: digits-digits_m.1@ssda1" in out
    assert "per class [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]" in out
    assert f"({N_TRAIN} source train, {N_TRAIN} target train, {N_TEST} target test, 10 classes)" in out
    path = results_dir / "splits" / "digits-digits_m.1@ssda1.json"
    assert path.exists() and f"manifest: {path}" in out
    m = json.loads(path.read_text())
    assert f"labeled target (10), per class [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]: {m['labeled_target']}" in out
    # drawn at the pair's default 16 px, it is the split a run at 8 px draws
    assert m["labeled_target"] == draw_da_split(pair8(), DASplitId.parse(m["split"])).target_local.tolist()
    assert main(["split", "digits-digits_m.1@ssda1", "--results-dir", str(results_dir)]) == 0
    assert capsys.readouterr().out == out
    assert main(["split", "digits-usps.1@uda", "--results-dir", str(results_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssl-bench: error: unknown domain pair digits -> usps") and "\n" not in err


@pytest.mark.parametrize(("target_labels", "with_target"), [([1], True), ([0], False)])
def test_ctaugment_probes_cover_the_labeled_target_images_in_ssda(monkeypatch, target_labels, with_target):
    """docs/reference/augmentation.md#ctaugment: AdaMatch probes the source labeled images (SSDA: source + target
    labeled)."""
    values = tiny_values("adamatch", target_labels=target_labels)
    values["augment"] = {"strong": "ctaugment"}
    trainer, ds, split = make_trainer(values)
    probed: list[torch.Tensor] = []
    probe = trainer.probe_feedback
    monkeypatch.setattr(trainer, "probe_feedback", lambda idx: (probed.append(idx.clone()), probe(idx)))
    trainer.train_step()
    (idx,) = probed
    batch = trainer.cfg.train.batch_size
    assert len(idx) == (2 * batch if with_target else batch)
    assert (idx[:batch] < ds.n_source).all()  # the source batch first
    if with_target:
        assert set(idx[batch:].tolist()) <= set(split.target_labeled.tolist())


def test_ssda_recipe_takes_its_k_from_the_grid():
    values = tiny_values("adamatch", target_labels=[1, 5])
    values["data"]["setting"] = "ssda"  # data.target_labels left at 0: the grid supplies k
    runs = expand(recipe_from_dict(values))
    assert [(r.data.setting, r.data.target_labels) for r in runs] == [("ssda", 1), ("ssda", 5)]
