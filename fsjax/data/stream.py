"""Streaming input for data sets that do not fit in memory (ImageNet), read lazily with grain.

Sources (random access, nothing read before it is needed):

- :class:`ImageFolder`: ``root/<class>/*.JPEG`` (classes = sorted folder names), or a flat
  folder with a labels file (one ``<file name> <class name or index>`` line per image), e.g.
  ImageNet's validation set.
- :func:`tfds_source`: a TFDS data set prepared as ArrayRecord, read through
  ``tfds.data_source`` (no TensorFlow needed to read).

Transforms (in grain's worker processes): decode, then :func:`train_transform` (random-resized
crop + flip, :class:`TrainCrop`) or :func:`eval_transform` (resize + centre crop,
:class:`EvalCrop`), to ``size x size`` uint8. Normalisation
(mean/std) happens on the device, in the train and eval steps, so the host moves uint8.

Order and randomness are pure functions of ``(seed, epoch, position)`` (:class:`EpochSampler`):
epoch ``e`` visits ``permutation(seed, e)``; each process reads only its columns of every
global batch (the same layout as ``train.loop``'s ``_put_rows``), so the processes see
disjoint shards that cover ``steps * global_batch`` examples once per epoch; an example's
augmentation draws come from ``numpy.random.default_rng([seed, epoch, record])``. Resuming at
a position therefore gives bit-identical batches; the loader's state is that position.

Example::

    data = image_folder("/data/imagenet", size=224, workers=8)
    it = data.train_batches(seed=0, global_batch=256, epochs=90, start_step=0)
    b = next(it)      # b["image"] (256, 224, 224, 3) uint8, b["label"] (256,) int32
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
from functools import lru_cache

import grain.python as grain
import numpy as np

IMAGE_EXT = (".jpeg", ".jpg", ".png", ".bmp", ".webp")
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CORRUPT = ("error", "skip")
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ sources


def _decode(blob: bytes, where: str, channels: int):
    """Bytes -> PIL image in RGB (``channels`` 3) or L (1); a bad file raises naming it."""
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(blob))
        im.load()
        return im.convert("RGB" if channels == 3 else "L")
    except Exception as e:  # PIL raises several types for bad data
        raise ValueError(f"cannot decode image {where}: {type(e).__name__}: {e}") from None


class ImageFolder:
    """Images in class folders (``root/<class>/<file>``) or a flat folder with ``labels_file``.

    ``__getitem__(i)`` reads and decodes file ``i`` (sorted by path) and returns
    ``{"image": PIL image, "label": int, "skipped": 0|1}``. ``corrupt='error'`` raises on a file
    that does not decode, naming it; ``'skip'`` returns the next file that decodes instead
    (``skipped`` = 1, logged), so the epoch keeps its size. ``classes`` fixes the class order
    (pass the training set's to a validation folder)."""

    def __init__(self, root: str, classes: tuple[str, ...] | None = None,
                 labels_file: str = "", channels: int = 3, corrupt: str = "error"):
        if corrupt not in CORRUPT:
            raise ValueError(f"corrupt = {corrupt!r}; valid: {', '.join(CORRUPT)}")
        if not os.path.isdir(root):
            raise FileNotFoundError(f"image folder {root} does not exist")
        self.root, self.channels, self.corrupt = os.path.abspath(root), channels, corrupt
        if labels_file:
            names, labels, self.classes = _read_labels_file(labels_file, classes)
        else:
            found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
            self.classes = tuple(classes) if classes else tuple(found)
            extra = sorted(set(found) - set(self.classes))
            if extra:
                raise ValueError(f"{root} has class folders not among the {len(self.classes)} "
                                 f"classes given: {', '.join(extra[:5])}")
            names, labels = [], []
            for k, cls in enumerate(self.classes):
                d = os.path.join(root, cls)
                files = sorted(f for f in os.listdir(d) if f.lower().endswith(IMAGE_EXT)) \
                    if os.path.isdir(d) else []
                names += [f"{cls}/{f}" for f in files]
                labels += [k] * len(files)
        if not names:
            raise ValueError(f"no images ({', '.join(IMAGE_EXT)}) found in {root}")
        # compact index: 1.28M ImageNet names are ~50 MB as fixed-width bytes
        self.names = np.asarray([n.encode() for n in names])
        self.labels = np.asarray(labels, np.int32)

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.names[i].decode())

    def _read(self, i: int):
        path = self.path(i)
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError as e:
            raise ValueError(f"cannot read image {path}: {e}") from None
        return _decode(blob, path, self.channels)

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        for tries in range(len(self)):
            j = (i + tries) % len(self)
            try:
                im = self._read(j)
            except ValueError as e:
                if self.corrupt == "error":
                    raise
                log.warning("skipped: %s", e)
                continue
            return {"image": im, "label": int(self.labels[j]), "skipped": int(tries > 0)}
        raise ValueError(f"no image in {self.root} decodes")

    def __repr__(self) -> str:
        return f"ImageFolder({self.root!r}, {len(self):,} images, {len(self.classes)} classes)"


def _read_labels_file(path: str, classes) -> tuple[list, list, tuple]:
    """``<file> <label>`` lines; a label is a class name (of ``classes``) or an index."""
    index = {c: k for k, c in enumerate(classes or ())}
    names, labels = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{path}:{n}: expected '<file> <label>', got {line.strip()!r}")
            name, lab = parts
            if lab in index:
                k = index[lab]
            elif lab.isdigit():
                k = int(lab)
            else:
                raise ValueError(f"{path}:{n}: label {lab!r} is neither a class name nor an "
                                 f"index")
            names.append(name)
            labels.append(k)
    order = np.argsort(names, kind="stable")
    n_classes = max(len(index), max(labels, default=-1) + 1)
    return [names[i] for i in order], [labels[i] for i in order], tuple(
        classes or (str(k) for k in range(n_classes)))


class TfdsSource:
    """A TFDS data set prepared as ArrayRecord (``tfds.data_source``); records come back as
    ``{"image": PIL image, "label": int, "skipped": 0}``."""

    def __init__(self, name: str, split: str, data_dir: str = "", channels: int = 3):
        try:
            import tensorflow_datasets as tfds
        except ImportError as e:
            raise ValueError(f"dataset 'tfds:{name}' needs tensorflow-datasets ({e})") from None
        self.name, self.split, self.data_dir, self.channels = name, split, data_dir, channels
        try:
            self._src = tfds.data_source(name, split=split, data_dir=data_dir or None)
            info = tfds.builder(name, data_dir=data_dir or None).info
        except Exception as e:  # TFDS raises many types (not prepared, not ArrayRecord, ...)
            raise ValueError(f"TFDS data set {name!r} split {split!r} cannot be read as "
                             f"ArrayRecord from {data_dir or '~/tensorflow_datasets'}: {e}; "
                             f"prepare it with file_format='array_record'") from None
        self.classes = tuple(getattr(info.features["label"], "names", ()) or ())
        self.num_classes = int(info.features["label"].num_classes)

    def __len__(self) -> int:
        return len(self._src)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        r = self._src[int(i)]
        x = r["image"]
        if isinstance(x, bytes):
            im = _decode(x, f"tfds:{self.name}/{self.split}[{i}]", self.channels)
        else:
            x = np.asarray(x, np.uint8)
            im = Image.fromarray(x[..., 0] if x.ndim == 3 and x.shape[-1] == 1 else x)
            im = im.convert("RGB" if self.channels == 3 else "L")
        return {"image": im, "label": int(r["label"]), "skipped": 0}

    def __getstate__(self):  # worker processes reopen the source
        return dict(name=self.name, split=self.split, data_dir=self.data_dir,
                    channels=self.channels)

    def __setstate__(self, s):
        self.__init__(**s)


def tfds_source(name: str, split: str, data_dir: str = "", channels: int = 3) -> TfdsSource:
    return TfdsSource(name, split, data_dir, channels)


# --------------------------------------------------------------------------- transforms


def random_resized_box(rng: np.random.Generator, height: int, width: int,
                       scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """Inception-style crop ``(top, left, h, w)``: area fraction uniform in ``scale``, aspect
    ratio log-uniform in ``ratio``; after 10 misses, the centre crop of the nearest valid
    ratio (as torchvision's RandomResizedCrop)."""
    area = height * width
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(lo, hi))
        w = int(round(math.sqrt(target * ar)))
        h = int(round(math.sqrt(target / ar)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _array(im, channels: int) -> np.ndarray:
    x = np.asarray(im, np.uint8)
    return x[..., None] if channels == 1 and x.ndim == 2 else x


def train_transform(element: dict, rng: np.random.Generator, size: int, channels: int,
                    scale=(0.08, 1.0), flip: bool = True) -> dict:
    """Random-resized crop to ``size x size`` (bilinear) and a horizontal flip with p = 0.5."""
    from PIL import Image

    im = element["image"]
    top, left, h, w = random_resized_box(rng, im.height, im.width, scale)
    im = im.resize((size, size), Image.BILINEAR, box=(left, top, left + w, top + h))
    if flip and rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    return dict(image=_array(im, channels), label=np.int32(element["label"]),
                skipped=np.int32(element["skipped"]))


def eval_transform(element: dict, size: int, channels: int, crop_fraction: float = 0.875
                   ) -> dict:
    """Resize the shorter side to ``round(size / crop_fraction)``, then the centre
    ``size x size`` crop (the standard ImageNet evaluation)."""
    from PIL import Image

    im = element["image"]
    short = int(round(size / crop_fraction))
    s = short / min(im.width, im.height)
    w, h = max(size, int(round(im.width * s))), max(size, int(round(im.height * s)))
    im = im.resize((w, h), Image.BILINEAR)
    top, left = (h - size) // 2, (w - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return dict(image=_array(im, channels), label=np.int32(element["label"]),
                skipped=np.int32(element["skipped"]))


# ------------------------------------------------------------------------------ samplers


@lru_cache(maxsize=2)
def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of epoch ``epoch``: a permutation of ``range(n)`` from ``(seed, epoch)``."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


@dataclasses.dataclass(frozen=True)
class EpochSampler:
    """grain sampler over this process's examples, epoch after epoch, from ``start_step``.

    Local position ``k`` (step ``k // local_batch``) is this process's column of the global
    batch (module docstring). grain's workers each batch their own records (worker ``w`` gets
    indices ``w, w + W, ...``) and hand batches out round-robin, so index ``i`` is mapped to
    step ``(i // W // local_batch) * W + i % W``: the batches come out in step order whatever
    the worker count ``W``. Indices past the last step (the round-up to ``W`` batches) read
    record ``n`` and are never consumed. Evaluation (``shuffle=False, pad=True``) covers
    every record once; the last global batch is padded with records ``>= n`` (:class:`Padded`
    reads them as masked copies of record 0)."""

    n: int
    seed: int
    global_batch: int
    process_index: int = 0
    process_count: int = 1
    epochs: int = 1
    shuffle: bool = True
    pad: bool = False
    start_step: int = 0
    workers: int = 1

    def __post_init__(self):
        if self.global_batch % self.process_count:
            raise ValueError(f"global batch {self.global_batch} must divide by the "
                             f"{self.process_count} processes")
        if self.steps_per_epoch == 0:
            raise ValueError(f"global batch {self.global_batch} exceeds the {self.n} examples")

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.process_count

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n // self.global_batch) if self.pad else self.n // self.global_batch

    @property
    def steps(self) -> int:
        """Batches this sampler yields (from ``start_step`` to the end of the last epoch)."""
        return self.epochs * self.steps_per_epoch - self.start_step

    def __len__(self) -> int:
        w = max(self.workers, 1)
        return -(-self.steps // w) * w * self.local_batch

    def position(self, k: int) -> tuple[int, int]:
        """Local position ``k`` (counted from step 0 of epoch 0) -> ``(epoch, record)``;
        padding positions of an evaluation sampler give records ``>= n``."""
        per_epoch = self.steps_per_epoch * self.local_batch
        epoch, r = divmod(k, per_epoch)
        step, col = divmod(r, self.local_batch)
        g = step * self.global_batch + self.process_index * self.local_batch + col
        if not self.shuffle or g >= self.n:
            return epoch, g
        return epoch, int(epoch_permutation(self.n, self.seed, epoch)[g])

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        w = max(self.workers, 1)
        m, col = divmod(i // w, self.local_batch)
        t = m * w + i % w
        if t >= self.steps:
            return grain.RecordMetadata(index=i, record_key=self.n,
                                        rng=np.random.default_rng(0))
        epoch, record = self.position((self.start_step + t) * self.local_batch + col)
        return grain.RecordMetadata(index=i, record_key=record,
                                    rng=np.random.default_rng([self.seed, epoch, record]))


# ------------------------------------------------------------------------------ loaders


class TrainCrop(grain.RandomMapTransform):
    """grain: :func:`train_transform` with the record's own generator."""

    def __init__(self, size: int, channels: int, scale):
        self.size, self.channels, self.scale = size, channels, scale

    def random_map(self, element, rng):
        return train_transform(element, rng, self.size, self.channels, self.scale)


class EvalCrop(grain.MapTransform):
    """grain: :func:`eval_transform`, passing the record's ``mask`` on."""

    def __init__(self, size: int, channels: int, crop_fraction: float):
        self.size, self.channels, self.crop_fraction = size, channels, crop_fraction

    def map(self, element):
        out = eval_transform(element, self.size, self.channels, self.crop_fraction)
        out["mask"] = np.bool_(element["mask"])
        return out


class Padded:
    """``source`` with ``mask`` True, and record keys past its end (the padding of the last
    evaluation batch) read as record 0 with ``mask`` False."""

    def __init__(self, source, total: int):
        self.source, self.total = source, total

    def __len__(self) -> int:  # grain reads key % len: the padding keys must be in range
        return self.total

    def __getitem__(self, key: int) -> dict:
        real = int(key) < len(self.source)
        return dict(self.source[int(key) if real else 0], mask=real)


@dataclasses.dataclass
class StreamData:
    """A data set read from disk while training: what the trainer needs of a
    :class:`fsjax.data.Dataset` (``name``, ``num_classes``, ``mean``, ``std``, ``image_shape``,
    ``task``, ``subset``) plus batch iterators over its ``train`` and ``test`` sources."""

    name: str
    train: object  # random-access source: ImageFolder, TfdsSource
    test: object
    num_classes: int
    mean: tuple = IMAGENET_MEAN_STD[0]
    std: tuple = IMAGENET_MEAN_STD[1]
    size: int = 224
    channels: int = 3
    workers: int = 0
    crop_fraction: float = 0.875
    min_scale: float = 0.08
    class_names: tuple = ()
    task: str = "classify"
    subset: str = ""
    streaming: bool = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.size, self.size, self.channels)

    @property
    def train_size(self) -> int:
        return len(self.train)

    @property
    def test_size(self) -> int:
        return len(self.test)

    def _loader(self, source, sampler, train: bool, w: int):
        crop = TrainCrop(self.size, self.channels, (self.min_scale, 1.0)) if train else \
            EvalCrop(self.size, self.channels, self.crop_fraction)
        ops = [crop, grain.Batch(sampler.local_batch, drop_remainder=True)]
        if w:
            from absl import flags

            if not flags.FLAGS.is_parsed():  # grain's workers read its absl flags
                flags.FLAGS.mark_as_parsed()
        return grain.DataLoader(data_source=source, sampler=sampler, operations=ops,
                                worker_count=w, worker_buffer_size=2,
                                shard_options=grain.NoSharding())

    def train_batches(self, seed: int, global_batch: int, epochs: int, start_step: int = 0,
                      process_index: int | None = None, process_count: int | None = None,
                      workers: int | None = None):
        """This process's training batches from global step ``start_step`` to the end of epoch
        ``epochs``: ``dict(image=(local_batch, size, size, C) uint8, label=(local_batch,)
        int32, skipped=(local_batch,) int32)``, ``train_size // global_batch`` per epoch."""
        pi, pc = _process(process_index, process_count)
        w = self.workers if workers is None else workers
        s = EpochSampler(self.train_size, seed, global_batch, pi, pc, epochs,
                         start_step=start_step, workers=w)
        return _take(self._loader(self.train, s, True, w), s.steps)

    def eval_batches(self, global_batch: int, process_index: int | None = None,
                     process_count: int | None = None, workers: int | None = None):
        """This process's evaluation batches over the whole test set (``mask`` marks the
        padding of the last global batch)."""
        pi, pc = _process(process_index, process_count)
        w = self.workers if workers is None else workers
        s = EpochSampler(self.test_size, 0, global_batch, pi, pc, 1, shuffle=False, pad=True,
                         workers=w)
        return _take(self._loader(Padded(self.test, (s.steps + w + 1) * global_batch), s,
                                  False, w), s.steps)


def sample_images(data: StreamData, per_class: int, seed: int = 0):
    """``(images uint8 (N, size, size, C), labels (N,))``: ``per_class`` random training
    images of each class (a source without a label index: ``per_class x num_classes`` random
    images), read with the evaluation crop - e.g. the activations ThiNet prunes on."""
    rng = np.random.default_rng(seed)
    labels = getattr(data.train, "labels", None)
    if labels is not None:
        pick = np.concatenate([rng.permutation(np.flatnonzero(labels == k))[:per_class]
                               for k in range(data.num_classes)])
    else:
        pick = rng.permutation(data.train_size)[:per_class * data.num_classes]
    items = [eval_transform(data.train[int(i)], data.size, data.channels, data.crop_fraction)
             for i in np.sort(pick)]
    return (np.stack([r["image"] for r in items]),
            np.asarray([r["label"] for r in items], np.int32))


def _take(loader, steps: int):
    """The first ``steps`` batches of ``loader``; the rest (the round-up to whole rounds of
    workers) is read and dropped, so no prefetched batch is left in shared memory."""
    it = iter(loader)
    for _ in range(steps):
        yield next(it)
    for _ in it:
        pass


def _process(index, count) -> tuple[int, int]:
    if index is None or count is None:
        import jax

        return jax.process_index(), jax.process_count()
    return index, count


def image_folder(root: str, size: int = 224, workers: int = 0, corrupt: str = "error",
                 channels: int = 3, mean_std=IMAGENET_MEAN_STD, **kw) -> StreamData:
    """``root/train/<class>/*`` and ``root/val`` (class folders, or images with
    ``root/val_labels.txt``: ``<file> <class name or index>`` lines) as a :class:`StreamData`."""
    train = ImageFolder(os.path.join(root, "train"), channels=channels, corrupt=corrupt)
    val_dir = next((os.path.join(root, d) for d in ("val", "validation", "test")
                    if os.path.isdir(os.path.join(root, d))), None)
    if val_dir is None:
        raise FileNotFoundError(f"{root} has train/ but no val/ (or validation/, test/) folder")
    labels = os.path.join(root, "val_labels.txt")
    test = ImageFolder(val_dir, train.classes, labels if os.path.exists(labels) else "",
                       channels, corrupt)
    return StreamData(f"folder:{os.path.basename(os.path.abspath(root))}", train, test,
                      len(train.classes), tuple(mean_std[0]), tuple(mean_std[1]), size, channels,
                      workers, class_names=train.classes, **kw)


def tfds_stream(name: str, data_dir: str = "", size: int = 224, workers: int = 0,
                channels: int = 3, mean_std=IMAGENET_MEAN_STD, eval_split: str = "",
                **kw) -> StreamData:
    """TFDS ``name`` (ArrayRecord) as a :class:`StreamData`: ``train`` and ``eval_split``
    (default ``validation`` where it exists, else ``test``)."""
    train = tfds_source(name, "train", data_dir, channels)
    splits = ("validation", "test") if not eval_split else (eval_split,)
    last = None
    for split in splits:
        try:
            test = tfds_source(name, split, data_dir, channels)
            break
        except ValueError as e:
            last = e
    else:
        raise last
    return StreamData(f"tfds:{name}", train, test, train.num_classes, tuple(mean_std[0]),
                      tuple(mean_std[1]), size, channels, workers, class_names=train.classes,
                      **kw)
