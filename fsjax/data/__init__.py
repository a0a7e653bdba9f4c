"""Data sets, offline first.

``load(name, data_dir='', limit=0)`` returns a :class:`Dataset` of uint8 NHWC numpy arrays:

- ``fashion_mnist``: the Debian ``dataset-fashion-mnist`` files through the project's TFDS
  builder (no TensorFlow, no download).
- ``cifar10``: the JPEG copy in ``split/class/*.jpg`` folders or ``train/test.tar.gz``.
- ``tfds:<name>`` (``tfds:cifar10``, ``tfds:cifar100``, ...): TFDS catalogue data for users who
  have TensorFlow and the prepared data (``data_dir`` is the TFDS data dir).
- ``synthetic``: random images with learnable labels, for tests and benchmarks.
- ``folder`` (ImageNet as JPEG folders) and large ``tfds:`` sets are not loaded: they stream
  from disk (:mod:`fsjax.data.stream`; :func:`tfds_is_large` decides for TFDS).
- ``synthetic_detection`` and ``voc`` (PASCAL VOC 2007 folders): detection sets
  (:mod:`fsjax.data.detection`); their ``*_labels`` are packed targets ``(N, G, 7)`` float32
  rows ``(x1, y1, x2, y2, class, valid, difficult)`` (:func:`pack_targets`) and
  ``task == 'detect'``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from fsjax.data import cifar_jpeg, fashion_mnist

DATASETS = ("fashion_mnist", "cifar10", "synthetic", "synthetic_detection", "voc",
            "tfds:<name>", "folder")
DETECTION = ("synthetic_detection", "voc", "tfds:voc/2007", "tfds:voc/2012")


def is_detection(name: str) -> bool:
    return name in DETECTION

MEAN_STD = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclasses.dataclass
class Dataset:
    name: str
    train_images: np.ndarray  # (N, H, W, C) uint8
    train_labels: np.ndarray  # (N,) int32
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    mean: tuple
    std: tuple
    full_sizes: tuple = ()  # (train, test) sizes before any subset
    task: str = "classify"  # or "detect" (labels are packed box targets)
    class_names: tuple = ()
    subset_kind: str = "class-stratified random subset"

    @property
    def subset(self) -> str:
        """'' for the full data set, else e.g. '2,560 of 50,000 train (class-stratified
        random subset)'."""
        if not self.full_sizes:
            return ""
        parts = [f"{len(y):,} of {n:,} {what}" for y, n, what in
                 ((self.train_labels, self.full_sizes[0], "train"),
                  (self.test_labels, self.full_sizes[1], "test")) if len(y) < n]
        return (", ".join(parts) + f" ({self.subset_kind})") if parts else ""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def nbytes(self) -> int:
        return self.train_images.nbytes + self.test_images.nbytes


def _tfds_dir(data_dir: str) -> str:
    return data_dir or os.environ.get("TFDS_DATA_DIR", "") or os.path.join(
        os.path.expanduser("~"), "tensorflow_datasets")


def _load_tfds(name: str, data_dir: str):
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ValueError(f"dataset 'tfds:{name}' needs tensorflow-datasets ({e})") from None
    try:
        b = tfds.builder(name, data_dir=_tfds_dir(data_dir))
        if not b.is_prepared():
            raise ValueError(
                f"TFDS data set {name!r} is not prepared in {_tfds_dir(data_dir)}; prepare it "
                f"with TensorFlow and internet (`tfds build {name}`), or for imagenet2012 put the "
                f"archives in the manual dir first")
        out = {}
        for split in ("train", "test"):
            ds = tfds.as_numpy(b.as_dataset(split=split, batch_size=-1))
            out[split] = (np.asarray(ds["image"], np.uint8), np.asarray(ds["label"], np.int32))
        return out, b.info.features["label"].num_classes
    except ValueError:
        raise
    except Exception as e:  # TFDS raises many types (missing TensorFlow, unknown name, ...)
        raise ValueError(f"dataset 'tfds:{name}' is not available here: {e}") from None


def tfds_is_large(name: str, data_dir: str = "", limit_bytes: int = 4 << 30) -> bool:
    """Whether the prepared TFDS set ``name`` streams from disk: its images vary in size
    (ImageNet) or it holds more than ``limit_bytes``. False when TFDS cannot tell (the
    in-memory loader then reports what is missing)."""
    try:
        import tensorflow_datasets as tfds

        info = tfds.builder(name, data_dir=_tfds_dir(data_dir)).info
        shape = getattr(info.features["image"], "shape", ())
        return None in tuple(shape) or int(info.dataset_size or 0) > limit_bytes
    except Exception:  # not installed, not prepared, no image feature: not a streaming set
        return False


def _synthetic(limit: int, shape=(32, 32, 3), classes=10, seed=0):
    rng = np.random.default_rng(seed)
    n = limit or 512
    protos = rng.integers(0, 256, size=(classes, *shape))
    def make(m):
        y = rng.integers(0, classes, size=m).astype(np.int32)
        noise = rng.integers(-40, 41, size=(m, *shape))
        return np.clip(protos[y] + noise, 0, 255).astype(np.uint8), y
    return {"train": make(n), "test": make(max(n // 4, 64))}, classes


def stratified_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``n`` examples with each class in its
    proportion of ``labels`` (largest remainders get the leftover places)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: n - take.sum()]:
        take[i] += 1
    picks = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take,
                                                                                strict=True)]
    return np.sort(np.concatenate(picks))


def pack_targets(split) -> np.ndarray:
    """A detection split's boxes, labels, valid and difficult masks as one ``(N, G, 7)``
    float32 array (the trainer moves and batches it like class labels)."""
    return np.concatenate([split.boxes, split.labels[..., None].astype(np.float32),
                           split.valid[..., None], split.difficult[..., None]], -1
                          ).astype(np.float32)


def unpack_targets(y):
    """Inverse of :func:`pack_targets` (NumPy or JAX): ``(..., G, 7)`` -> boxes ``(..., G, 4)``,
    classes int32, valid and difficult ``(..., G)`` bool."""
    return y[..., :4], y[..., 4].astype(np.int32), y[..., 5] > 0.5, y[..., 6] > 0.5


def _load_detection(name, data_dir, limit, eval_limit, detection_kw) -> Dataset:
    from fsjax.data import detection

    kw = dict(detection_kw or {})
    if name == "voc":
        ds = detection.load_voc(data_dir, size=kw.get("image_size", 300),
                                max_objects=kw.get("max_objects") or None)
    elif name.startswith("tfds:"):
        ds = detection.load_tfds_voc(name[5:], data_dir, size=kw.get("image_size", 300),
                                     max_objects=kw.get("max_objects") or None)
    else:
        ds = detection.synthetic_scenes(
            kw.get("num_train", 8000), kw.get("num_test", 1000), kw.get("image_size", 64),
            kw.get("max_objects", 4), kw.get("seed", 0), data_dir=data_dir)
    full = (len(ds.train), len(ds.test))
    tr, te = ds.train, ds.test
    xtr, ytr, xte, yte = tr.images, pack_targets(tr), te.images, pack_targets(te)
    if limit and limit < len(ytr):  # the first images (scenes are already in random order)
        xtr, ytr = xtr[:limit], ytr[:limit]
    if eval_limit and eval_limit < len(yte):
        xte, yte = xte[:eval_limit], yte[:eval_limit]
    return Dataset(ds.name, xtr, ytr, xte, yte, ds.num_classes, ds.mean, ds.std, full,
                   task="detect", class_names=ds.class_names, subset_kind="the first images")


def load(name: str, data_dir: str = "", limit: int = 0, tfds_data_dir: str = "",
         eval_limit: int = 0, seed: int = 0, detection_kw: dict | None = None) -> Dataset:
    """Load a data set into host memory. ``limit`` > 0 keeps a seeded, class-stratified random
    subset of that many training examples, ``eval_limit`` > 0 the same of the test set (the
    full test set otherwise); :attr:`Dataset.subset` says so. Detection sets take the first
    images instead and ``detection_kw`` (``image_size``, ``max_objects``, ``num_train``,
    ``num_test``, ``seed`` of the synthetic scenes)."""
    if name in DETECTION:
        return _load_detection(name, data_dir, limit, eval_limit, detection_kw)
    if name == "fashion_mnist":
        # one prepared copy per source folder (the Debian one unless data_dir names another)
        src = os.path.abspath(fashion_mnist.source_dir(data_dir))
        tag = "debian" if src == fashion_mnist.DEBIAN_DIR else hashlib.sha1(
            src.encode()).hexdigest()[:10]
        tdir = tfds_data_dir or os.path.join(_tfds_dir(""), "fsjax", tag)
        splits = {s: fashion_mnist.load(s, tdir, data_dir) for s in ("train", "test")}
        classes = 10
    elif name == "cifar10":
        splits = {s: cifar_jpeg.load(s, data_dir) for s in ("train", "test")}
        classes = 10
    elif name == "synthetic":
        splits, classes = _synthetic(limit)
    elif name.startswith("tfds:") and len(name) > 5:
        splits, classes = _load_tfds(name[5:], data_dir)
    else:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    (xtr, ytr), (xte, yte) = splits["train"], splits["test"]
    full = (len(ytr), len(yte))
    if limit and limit < len(ytr):
        keep = stratified_subset(ytr, limit, seed)
        xtr, ytr = xtr[keep], ytr[keep]
    if eval_limit and eval_limit < len(yte):
        keep = stratified_subset(yte, eval_limit, seed + 1)
        xte, yte = xte[keep], yte[keep]
    key = name.split(":")[-1]
    if key in MEAN_STD:
        mean, std = MEAN_STD[key]
    else:
        x = xtr[:10000].astype(np.float64) / 255
        mean, std = tuple(x.mean((0, 1, 2))), tuple(x.std((0, 1, 2)) + 1e-6)
    return Dataset(name, xtr, ytr, xte, yte, classes, tuple(mean), tuple(std), full)
