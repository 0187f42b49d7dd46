"""Domain pairs for domain adaptation: a labeled source, a target scored on its test set, one image format.

Settings of AdaMatch (Berthelot et al., arXiv 2106.04732; reference-algorithms.md §6): ``uda`` (labeled source,
unlabeled target), ``ssda`` (plus k labeled target images per class) and ``ssl`` (one dataset, the usual splits).
A pair is held as one ``ImageDataset`` whose training pool is the source's training images followed by the
target's, and whose test set is the target's, so the trainer's labeled/unlabeled machinery serves every setting.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ssl_bench.config import DataConfig
from ssl_bench.data.datasets import (
    DIGIT_CLASSES,
    ImageDataset,
    digits_arrays,
    load_dataset,
    resize_images,
    to_uint8_nchw,
)
from ssl_bench.data.splits import (
    MANIFEST_FORMAT,
    Split,
    SplitId,
    draw_split,
    get_split,
    manifest_path,
    read_or_draw,
    read_verified,
)
from ssl_bench.errors import ConfigError, DataError, SplitError
from ssl_bench.registry import DATASETS, Registry

SETTINGS = ("ssl", "uda", "ssda")
FOLDER_PREFIX = "folder:"
DIGITS_M_SEED = 0
DIGITS_M_SIZE = 32


# ----------------------------------------------------------------------------------------------------------
# digits_m: an MNIST-M-style target built offline from scikit-learn's digits


def make_digits_m(pixels: np.ndarray, seed: int = DIGITS_M_SEED, size: int = DIGITS_M_SIZE) -> np.ndarray:
    """Colour versions of grey digits (N, 8, 8) as uint8 (N, size, size, 3), reproducible from ``seed``.

    Each digit is enlarged to size x size (bilinear) and combined with a patch of one of the two photographs that
    ship with scikit-learn (``load_sample_images``: china.jpg, flower.jpg) by the absolute difference
    |patch - digit| per channel, the blend MNIST-M uses (Ganin et al., arXiv 1505.07818, §5.2). The patch is a
    random square of side size..4*size at a random place, shrunk to size x size with PIL's bilinear filter. One
    ``numpy.random.default_rng(seed)`` draws, per image in order: the photo, the side, the corner.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(img) for img in load_sample_images().images]
    digits = resize_images(torch.from_numpy(pixels[:, None]), size)[:, 0].numpy().astype(np.int16)
    rng = np.random.default_rng(seed)
    out = np.empty((len(pixels), size, size, 3), dtype=np.uint8)
    for i, digit in enumerate(digits):
        photo = photos[int(rng.integers(len(photos)))]
        side = int(rng.integers(size, 4 * size + 1))
        top = int(rng.integers(photo.shape[0] - side + 1))
        left = int(rng.integers(photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        patch = np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR), dtype=np.int16)
        out[i] = np.abs(patch - digit[:, :, None]).astype(np.uint8)
    return out


@DATASETS.register("digits_m")
def load_digits_m(cfg: DataConfig) -> ImageDataset:
    """This project's MNIST-M-style colour digits (32x32 RGB), made offline by ``make_digits_m`` with seed 0.

    Not the official MNIST-M (which blends MNIST with BSDS500 photographs): it is built from scikit-learn's
    digits and sample photographs, image i from digit i, with the train/test split of the ``digits`` dataset.
    """
    pixels, labels, train_idx, test_idx = digits_arrays()
    images = make_digits_m(pixels)
    return ImageDataset(
        name="digits_m",
        train_images=to_uint8_nchw(images[train_idx], "NHWC"),
        train_labels=torch.from_numpy(labels[train_idx]),
        test_images=to_uint8_nchw(images[test_idx], "NHWC"),
        test_labels=torch.from_numpy(labels[test_idx]),
        num_classes=10,
        hflip=False,
        classes=DIGIT_CLASSES,
    )


# ----------------------------------------------------------------------------------------------------------
# the pair registry


def pair_name(source: str, target: str) -> str:
    """``source-target``: dataset names never contain '-', so the name splits back unambiguously."""
    return f"{source}-{target}"


@dataclass(frozen=True)
class PairSpec:
    """A (source, target) pair; ``image_size`` is the common side used when ``data.image_size`` is 0."""

    source: str
    target: str
    image_size: int
    note: str = ""

    @property
    def name(self) -> str:
        return pair_name(self.source, self.target)


PAIRS: Registry = Registry("domain pair")
for _spec in (
    PairSpec("digits", "digits_m", 16, "offline; digits_m is this project's construction, not MNIST-M"),
    PairSpec("mnist", "usps", 32, "torchvision files (data.download to fetch)"),
    PairSpec("usps", "mnist", 32, "torchvision files (data.download to fetch)"),
    PairSpec("svhn", "mnist", 32, "torchvision files (data.download to fetch)"),
    PairSpec("mnist", "svhn", 32, "torchvision files (data.download to fetch)"),
):
    PAIRS.add(_spec.name, _spec)

_DOMAIN_RE = re.compile(r"^[A-Za-z0-9_]+$")


def pair_choices() -> str:
    return ", ".join([*(n.replace("-", " -> ") for n in PAIRS.names()), "folder:<domain> -> folder:<domain>"])


def get_pair(source: str, target: str) -> PairSpec:
    """The pair ``source -> target``: a registered one, or two domain folders under ``data.root``."""
    if not source or not target:
        raise ConfigError(f"settings uda and ssda need data.source and data.target; pairs: {pair_choices()}")
    if source.startswith(FOLDER_PREFIX) or target.startswith(FOLDER_PREFIX):
        domains = [d.removeprefix(FOLDER_PREFIX) for d in (source, target)]
        if not (source.startswith(FOLDER_PREFIX) and target.startswith(FOLDER_PREFIX)):
            raise ConfigError(f"unknown domain pair {source} -> {target}: a folder pair needs folder: on both sides")
        for d in domains:
            if not _DOMAIN_RE.match(d):
                raise ConfigError(f"folder domain {d!r} must be a folder name of letters, digits and _")
        if domains[0] == domains[1]:
            raise ConfigError(f"source and target are the same folder domain {domains[0]!r}")
        return PairSpec(source, target, 0, "folder pair: data.root/<domain>/<class>/*.jpg|png")
    name = pair_name(source, target)
    if name not in PAIRS:
        raise ConfigError(f"unknown domain pair {source} -> {target}; valid pairs: {pair_choices()}")
    return PAIRS.get(name)


def check_setting(cfg: DataConfig) -> None:
    """The [data] keys of a setting agree with each other (before any file is read)."""
    if cfg.setting not in SETTINGS:
        raise ConfigError(f"data.setting: unknown setting {cfg.setting!r}; valid: {', '.join(SETTINGS)}")
    if cfg.setting == "ssl":
        for key, default in (("source", ""), ("target", ""), ("target_labels", 0), ("channels", 0)):
            if getattr(cfg, key) != default:
                raise ConfigError(f"data.{key} applies to settings uda and ssda; setting ssl uses data.dataset alone")
        return
    get_pair(cfg.source, cfg.target)
    if cfg.setting == "uda" and cfg.target_labels != 0:
        raise ConfigError(f"setting uda uses no target labels, got data.target_labels = {cfg.target_labels}")
    if cfg.setting == "ssda" and cfg.target_labels < 1:
        raise ConfigError(f"setting ssda needs data.target_labels >= 1 per class, got {cfg.target_labels}")
    if cfg.n_valid:
        raise ConfigError(f"data.n_valid must be 0 in setting {cfg.setting} (no validation set is carved out)")
    if cfg.channels not in (0, 1, 3):
        raise ConfigError(f"data.channels must be 0 (automatic), 1 or 3, got {cfg.channels}")


# ----------------------------------------------------------------------------------------------------------
# loading a pair


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) to ``channels``: grey -> RGB repeats the channel; RGB -> grey is PIL's ``convert("L")``
    (ITU-R 601-2 luma in 16-bit fixed point: (19595 R + 38470 G + 7471 B + 2^15) >> 16), bit for bit."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
        luma = ((images.to(torch.int32) * weights).sum(1, keepdim=True) + (1 << 15)) >> 16
        return luma.to(torch.uint8)
    raise DataError(f"cannot convert {have}-channel images to {channels} channels")


def domain_config(cfg: DataConfig, domain: str, size: int) -> DataConfig:
    """The single-dataset config of one domain of a pair, at the pair's common side."""
    base = replace(cfg, setting="ssl", source="", target="", target_labels=0, image_size=size)
    if domain.startswith(FOLDER_PREFIX):
        root = Path(cfg.root).expanduser() / domain.removeprefix(FOLDER_PREFIX)
        return replace(base, dataset="folder", root=str(root))
    return replace(base, dataset=domain)


def check_label_sets(source: ImageDataset, target: ImageDataset, src_name: str, tgt_name: str) -> None:
    if source.classes is not None and target.classes is not None:
        if source.classes != target.classes:
            only = sorted(set(source.classes) ^ set(target.classes))
            detail = f"only in one: {', '.join(only[:8])}" if only else "same names in a different order"
            raise DataError(f"domain pair {src_name} -> {tgt_name}: the label sets differ ({detail})")
    elif source.num_classes != target.num_classes:
        raise DataError(
            f"domain pair {src_name} -> {tgt_name}: the label sets differ "
            f"({source.num_classes} vs {target.num_classes} classes)"
        )


_CACHE: dict[tuple, ImageDataset] = {}


def load_pair(cfg: DataConfig) -> ImageDataset:
    """Source and target of ``cfg`` brought to one side (``data.image_size`` or the pair's default; bilinear,
    antialiased when shrinking) and one channel count (``data.channels``; 0 = RGB if either domain has colour)."""
    spec = get_pair(cfg.source, cfg.target)
    size = cfg.image_size or spec.image_size
    if size <= 0:
        raise ConfigError(f"domain pair {spec.source} -> {spec.target} needs data.image_size (the common side)")
    key = (spec.name, cfg.root, cfg.extra, size, cfg.channels)
    if key in _CACHE:
        return _CACHE[key]
    src = load_dataset(domain_config(cfg, spec.source, size))
    tgt = load_dataset(domain_config(cfg, spec.target, size))
    check_label_sets(src, tgt, spec.source, spec.target)
    channels = cfg.channels or max(src.channels, tgt.channels)
    blob = json.dumps([spec.name, src.fingerprint(), tgt.fingerprint()])
    pair = ImageDataset(
        name=spec.name,
        train_images=torch.cat([to_channels(src.train_images, channels), to_channels(tgt.train_images, channels)]),
        train_labels=torch.cat([src.train_labels, tgt.train_labels]),
        test_images=to_channels(tgt.test_images, channels),
        test_labels=tgt.test_labels,
        num_classes=tgt.num_classes,
        hflip=src.hflip and tgt.hflip,
        source_fingerprint=hashlib.sha256(blob.encode()).hexdigest(),
        classes=tgt.classes,
        n_source=len(src.train_labels),
    )
    pair.validate()
    _CACHE[key] = pair
    return pair


def load_data(cfg: DataConfig) -> ImageDataset:
    """The dataset a run trains on: ``data.dataset`` (ssl) or the pair ``data.source -> data.target``."""
    check_setting(cfg)
    return load_dataset(cfg) if cfg.setting == "ssl" else load_pair(cfg)


# ----------------------------------------------------------------------------------------------------------
# domain-adaptation splits

_DA_SPLIT_RE = re.compile(
    r"^(?P<source>[A-Za-z0-9_:]+)-(?P<target>[A-Za-z0-9_:]+)\.(?P<seed>\d+)@(?:uda|ssda(?P<k>[1-9]\d*))$"
)


@dataclass(frozen=True)
class DASplitId:
    """``source-target.seed@uda`` or ``source-target.seed@ssdaK`` (K labeled target images per class)."""

    source: str
    target: str
    seed: int
    target_labels: int

    @property
    def setting(self) -> str:
        return "ssda" if self.target_labels else "uda"

    def __str__(self) -> str:
        tail = f"ssda{self.target_labels}" if self.target_labels else "uda"
        return f"{pair_name(self.source, self.target)}.{self.seed}@{tail}"

    @classmethod
    def parse(cls, text: str) -> DASplitId:
        m = _DA_SPLIT_RE.match(text.strip())
        if not m:
            raise SplitError(
                f"invalid domain-adaptation split id {text!r}; expected source-target.seed@uda or "
                "source-target.seed@ssdaK, e.g. digits-digits_m.1@ssda1"
            )
        get_pair(m["source"], m["target"])
        return cls(m["source"], m["target"], int(m["seed"]), int(m["k"] or 0))


@dataclass(frozen=True)
class DASplit:
    """Every source image labeled; ``target_local`` (indices into the target's training images) labeled too.

    Pool indices: source images are 0..n_source-1, target images n_source..n_train-1.
    """

    id: str
    target_local: np.ndarray
    n_source: int
    n_train: int
    fingerprint: str
    class_balance: str = "balanced"

    @property
    def labeled(self) -> np.ndarray:
        return np.arange(self.n_source, dtype=np.int64)

    @property
    def target_labeled(self) -> np.ndarray:
        return self.n_source + self.target_local

    @property
    def valid(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    @property
    def hash(self) -> str:
        blob = json.dumps([self.id, self.fingerprint, self.n_source, self.n_train, self.target_local.tolist()])
        return hashlib.sha256(blob.encode()).hexdigest()

    def pool(self, n_train: int, labeled: np.ndarray, include_labeled: bool) -> np.ndarray:
        """The unlabeled pool: every target training image (minus the labeled ones unless ``include_labeled``)."""
        if n_train != self.n_train:
            raise DataError(f"split {self.id} covers {self.n_train} training images, the pair has {n_train}")
        keep = np.zeros(n_train, dtype=bool)
        keep[self.n_source :] = True
        if not include_labeled:
            keep[self.target_labeled] = False
        return np.flatnonzero(keep)

    def manifest(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "split": self.id,
            "dataset_fingerprint": self.fingerprint,
            "n_source": self.n_source,
            "n_target": self.n_train - self.n_source,
            "labeled_target": self.target_local.tolist(),
            "hash": self.hash,
        }


def draw_da_split(ds: ImageDataset, sid: DASplitId) -> DASplit:
    """k target images per class: the class-balanced draw of SSL splits (§1.3) on the target's training labels."""
    target_labels = ds.train_labels[ds.n_source :].numpy()
    k = sid.target_labels
    local = np.zeros(0, dtype=np.int64)
    if k:
        counts = np.bincount(target_labels, minlength=ds.num_classes)
        short = int(np.argmin(counts))
        if counts[short] < k:
            name = f" ({ds.classes[short]})" if ds.classes and ds.classes[short] != str(short) else ""
            raise SplitError(
                f"data.target_labels = {k} per class is more than target {sid.target} has: class "
                f"{short}{name} has {counts[short]} training images"
            )
        draw = SplitId(sid.target, sid.seed, k * ds.num_classes, 0)
        local, _ = draw_split(target_labels, ds.num_classes, draw, "balanced")
    return DASplit(str(sid), local, ds.n_source, len(ds.train_labels), ds.fingerprint())


def _parse_da_split(m: dict) -> DASplit:
    return DASplit(
        id=m["split"],
        target_local=np.asarray(m["labeled_target"], dtype=np.int64),
        n_source=int(m["n_source"]),
        n_train=int(m["n_source"]) + int(m["n_target"]),
        fingerprint=m["dataset_fingerprint"],
    )


def read_da_manifest(path: Path, ds: ImageDataset) -> DASplit:
    """Load and verify a domain-adaptation split manifest."""
    return read_verified(path, ds, _parse_da_split)


def get_da_split(ds: ImageDataset, sid: DASplitId, manifest_dir: Path | None = None, write: bool = True) -> DASplit:
    """The split ``sid`` of the pair ``ds``: read from its manifest if one exists (verified), else drawn and saved."""
    path = manifest_path(manifest_dir, sid) if manifest_dir is not None else None
    return read_or_draw(path, sid, ds, _parse_da_split, lambda: draw_da_split(ds, sid), write)


def run_split_id(cfg: DataConfig, seed: int) -> SplitId | DASplitId:
    if cfg.setting == "ssl":
        return SplitId(cfg.dataset, seed, cfg.n_labels, cfg.n_valid)
    return DASplitId(cfg.source, cfg.target, seed, cfg.target_labels)


def get_run_split(
    ds: ImageDataset, cfg: DataConfig, seed: int, manifest_dir: Path | None, write: bool = True
) -> Split | DASplit:
    """The split of one run in any setting (manifests under ``manifest_dir``)."""
    sid = run_split_id(cfg, seed)
    if isinstance(sid, DASplitId):
        return get_da_split(ds, sid, manifest_dir, write)
    return get_split(ds, sid, cfg.class_balance, manifest_dir, write)
