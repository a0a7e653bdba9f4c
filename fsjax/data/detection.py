"""Detection data, offline first: a synthetic scene set the project generates itself, PASCAL
VOC from its standard folder layout, and box-aware augmentation on the device.

Every set is a :class:`DetectionDataset` of fixed-shape arrays: images ``(N, S, S, 3)`` uint8
(resized to a square, as SSD does), boxes ``(N, G, 4)`` xyxy normalised to ``[0, 1]``, labels
``(N, G)`` int32 in ``0..K-1``, and ``valid`` / ``difficult`` masks ``(N, G)`` (padding rows are
not valid; ``G`` is the most objects in one image).

- ``synthetic`` (:func:`synthetic_scenes`): Fashion-MNIST items (the Debian package's test
  split for test scenes, its training split for training scenes), scaled, coloured and placed
  on textured backgrounds, 1 to ``max_objects`` per image, partial overlaps allowed (IoU of two
  boxes at most 0.3; later items occlude earlier ones). Deterministic in its seed; generated
  once into the cache (``$FSJAX_CACHE``, default ``~/.cache/fsjax``).
- ``voc`` (:func:`load_voc`): ``VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}``,
  XML parsed with the standard library; ``difficult`` objects kept and flagged.
- ``tfds:voc/2007`` (:func:`load_tfds_voc`): the TFDS catalogue's VOC where TensorFlow
  Datasets and the prepared data are present.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np

from fsjax import ops
from fsjax.data import cifar_jpeg, fashion_mnist

__all__ = ["DetectionDataset", "synthetic_scenes", "load_voc", "augment", "VOC_CLASSES",
           "FASHION_CLASSES"]

FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "boot")
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclasses.dataclass
class Split:
    images: np.ndarray     # (N, S, S, 3) uint8
    boxes: np.ndarray      # (N, G, 4) float32 xyxy in [0, 1]
    labels: np.ndarray     # (N, G) int32
    valid: np.ndarray      # (N, G) bool
    difficult: np.ndarray  # (N, G) bool

    def __len__(self) -> int:
        return len(self.images)

    def ground_truth(self) -> list[tuple]:
        """Per image ``(boxes, labels, difficult)`` of the valid rows (for the mAP)."""
        return [(b[v], lab[v], d[v]) for b, lab, d, v in
                zip(self.boxes, self.labels, self.difficult, self.valid, strict=True)]


@dataclasses.dataclass
class DetectionDataset:
    name: str
    train: Split
    test: Split
    class_names: tuple
    mean: tuple = MEAN_STD[0]
    std: tuple = MEAN_STD[1]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


# ------------------------------------------------------------------------ synthetic scenes


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a float ``(H, W)`` or ``(H, W, C)`` array (PIL, one channel at a time)."""
    from PIL import Image

    chans = a[..., None] if a.ndim == 2 else a
    out = np.stack([np.asarray(Image.fromarray(chans[..., c].astype(np.float32), "F").resize(
        (w, h), Image.BILINEAR)) for c in range(chans.shape[-1])], -1)
    return out[..., 0] if a.ndim == 2 else out


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background: smooth colour noise plus faint stripes, float in [0, 1]."""
    coarse = rng.uniform(0, 1, (rng.integers(2, 6), rng.integers(2, 6), 3))
    img = _resize(coarse, size, size) * rng.uniform(0.3, 0.8) + rng.uniform(0, 0.3)
    yy, xx = np.mgrid[:size, :size] / size
    angle, freq = rng.uniform(0, np.pi), rng.uniform(4, 16)
    stripes = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
    img += 0.08 * stripes[..., None] + rng.normal(0, 0.03, img.shape)
    return np.clip(img, 0, 1)


def _scene(rng, items, item_labels, size, max_objects, min_side, max_side):
    img = _background(rng, size)
    boxes, labels = [], []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            k = rng.integers(len(items))
            side = int(rng.uniform(min_side, max_side) * size)
            h = max(8, int(side * rng.uniform(0.8, 1.25)))
            w = max(8, side)
            if h >= size or w >= size:
                continue
            alpha = np.clip(_resize(items[k].astype(np.float32) / 255.0, h, w), 0, 1)
            ys, xs = np.nonzero(alpha > 0.15)
            if len(ys) < 4:
                continue
            y0, x0 = rng.integers(0, size - h), rng.integers(0, size - w)
            box = np.array([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1],
                           np.float32) / size
            if boxes and float(np.asarray(ops.iou(box[None], np.array(boxes))).max()) > 0.3:
                continue
            colour = rng.uniform(0, 1, 3)
            shade = 0.6 + 0.4 * alpha[..., None]  # the item's own texture modulates its colour
            patch = img[y0:y0 + h, x0:x0 + w]
            img[y0:y0 + h, x0:x0 + w] = patch * (1 - alpha[..., None]) + (
                colour * shade) * alpha[..., None]
            boxes.append(box)
            labels.append(int(item_labels[k]))
            break
    return (img * 255).round().astype(np.uint8), boxes, labels


def _pack(images, boxes, labels, max_objects=None, difficult=None) -> Split:
    """Per-image lists -> a padded :class:`Split` of ``max_objects`` rows (default: the most
    objects in one image, at least 1); images with more are truncated."""
    n = len(images)
    g = max_objects or max([1, *(len(bx) for bx in boxes)])
    b = np.zeros((n, g, 4), np.float32)
    lab = np.zeros((n, g), np.int32)
    valid = np.zeros((n, g), bool)
    diff = np.zeros((n, g), bool)
    for i, (bx, lb) in enumerate(zip(boxes, labels, strict=True)):
        k = min(len(bx), g)
        b[i, :k] = np.asarray(bx, np.float32).reshape(-1, 4)[:k]
        lab[i, :k], valid[i, :k] = lb[:k], True
        if difficult is not None:
            diff[i, :k] = difficult[i][:k]
    return Split(np.stack(images), b, lab, valid, diff)


def synthetic_scenes(num_train: int = 6000, num_test: int = 1000, size: int = 64,
                     max_objects: int = 4, seed: int = 0, min_side: float = 0.25,
                     max_side: float = 0.6, data_dir: str = "", cache_dir: str | None = None,
                     progress: bool = True) -> DetectionDataset:
    """The synthetic detection set (see the module docstring); items from Fashion-MNIST
    (``data_dir``: its IDX folder, default the Debian package's). Cached by its arguments."""
    if size < 16 or max_objects < 1 or not 0 < min_side <= max_side < 1:
        raise ValueError(f"synthetic scenes need size >= 16, max_objects >= 1 and "
                         f"0 < min_side <= max_side < 1; got size={size}, "
                         f"max_objects={max_objects}, min_side={min_side}, max_side={max_side}")
    key = f"{num_train}-{num_test}-{size}-{max_objects}-{seed}-{min_side}-{max_side}-v1"
    cache_dir = cache_dir or cifar_jpeg.default_cache_dir()
    path = os.path.join(cache_dir, f"synthdet-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz")
    if os.path.exists(path):
        try:
            with np.load(path) as z:
                splits = [Split(*(z[f"{s}_{f}"] for f in ("images", "boxes", "labels", "valid",
                                                          "difficult"))) for s in ("train", "test")]
            return DetectionDataset("synthetic", *splits, FASHION_CLASSES)
        except (OSError, ValueError, KeyError):
            os.remove(path)  # a broken cache is regenerated, never trusted
    if progress:
        print(f"generating the synthetic detection set ({num_train} train / {num_test} test "
              f"images, once; cached in {cache_dir})", file=sys.stderr, flush=True)
    splits = []
    for split, n, sub in (("train", num_train, 0), ("test", num_test, 1)):
        items, item_labels = fashion_mnist.read_split(split, data_dir)
        rng = np.random.default_rng([seed, sub])
        images, boxes, labels = [], [], []
        for i in range(n):
            im, bx, lb = _scene(rng, items[..., 0], item_labels, size, max_objects, min_side,
                                max_side)
            images.append(im)
            boxes.append(bx)
            labels.append(lb)
            if progress and sys.stderr.isatty() and (i + 1) % max(1, n // 20) == 0:
                print(f"\rgenerating synthetic detection {split} set: {i + 1}/{n}", end="",
                      file=sys.stderr, flush=True)
        splits.append(_pack(images, boxes, labels, max_objects))
    if progress:
        print(f"\rgenerated {path}" + " " * 20, file=sys.stderr)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{f"{s}_{f.name}": getattr(sp, f.name) for s, sp in zip(
        ("train", "test"), splits, strict=True) for f in dataclasses.fields(Split)})
    os.replace(tmp, path)
    return DetectionDataset("synthetic", *splits, FASHION_CLASSES)


# ----------------------------------------------------------------------------------- VOC


def _voc_root(root: str, year: str) -> str:
    for cand in (root, os.path.join(root, f"VOC{year}"),
                 os.path.join(root, "VOCdevkit", f"VOC{year}")):
        if os.path.isdir(os.path.join(cand, "Annotations")):
            return cand
    raise FileNotFoundError(
        f"no PASCAL VOC {year} under {root!r}: expected VOCdevkit/VOC{year}/{{JPEGImages,"
        f"Annotations,ImageSets/Main}} (download VOCtrainval_06-Nov-2007.tar and "
        f"VOCtest_06-Nov-2007.tar from the PASCAL VOC site and untar them there)")


def parse_voc_xml(path: str, classes=VOC_CLASSES) -> tuple[str, int, int, list]:
    """``(filename, width, height, [(name, difficult, (xmin, ymin, xmax, ymax)), ...])`` of one
    VOC annotation (pixel corners as in the file, 1-based). An unknown class name is an error."""
    try:
        r = ET.parse(path).getroot()
        size = r.find("size")
        w, h = int(size.find("width").text), int(size.find("height").text)
        objs = []
        for o in r.iter("object"):
            name = o.find("name").text.strip()
            if name not in classes:
                raise ValueError(f"unknown class {name!r}")
            d = o.find("difficult")
            bb = o.find("bndbox")
            objs.append((name, d is not None and d.text.strip() == "1",
                         tuple(float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))))
        return r.find("filename").text.strip(), w, h, objs
    except (ET.ParseError, AttributeError, ValueError) as e:
        raise ValueError(f"VOC annotation {path} is not valid ({e})") from None


def _voc_split(root: str, split: str, size: int, max_objects: int | None) -> Split:
    from PIL import Image

    ids_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.exists(ids_file):
        raise FileNotFoundError(f"VOC split file {ids_file} is missing; valid splits are the "
                                f"names of ImageSets/Main/*.txt (train, val, trainval, test)")
    with open(ids_file) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    images, boxes, labels, difficult = [], [], [], []
    for i in ids:
        fname, w, h, objs = parse_voc_xml(os.path.join(root, "Annotations", f"{i}.xml"))
        path = os.path.join(root, "JPEGImages", fname)
        try:
            with Image.open(path) as im:
                images.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)))
        except OSError as e:
            raise ValueError(f"VOC image {path} cannot be read ({e})") from None
        # VOC corners are 1-based pixel indices: x1 - 1 is the left edge, x2 the right edge
        boxes.append([((x1 - 1) / w, (y1 - 1) / h, x2 / w, y2 / h)
                      for _, _, (x1, y1, x2, y2) in objs])
        labels.append([VOC_CLASSES.index(n) for n, _, _ in objs])
        difficult.append([d for _, d, _ in objs])
    return _pack(images, boxes, labels, max_objects, difficult)


def load_voc(data_dir: str, year: str = "2007", train_split: str = "trainval",
             test_split: str = "test", size: int = 300, max_objects: int | None = None
             ) -> DetectionDataset:
    """PASCAL VOC from ``data_dir`` (the folder holding ``VOCdevkit``, or ``VOC2007`` itself),
    images resized to ``size`` x ``size``. ``max_objects`` truncates (default: the largest
    count in the split; VOC 2007 has up to 42)."""
    root = _voc_root(data_dir, year)
    return DetectionDataset(f"voc{year}", _voc_split(root, train_split, size, max_objects),
                            _voc_split(root, test_split, size, max_objects), VOC_CLASSES)


def load_tfds_voc(name: str = "voc/2007", data_dir: str = "", size: int = 300,
                  max_objects: int | None = None, train_split: str = "train+validation",
                  test_split: str = "test") -> DetectionDataset:
    """PASCAL VOC through TensorFlow Datasets (``tfds build voc/2007`` first; ``data_dir``: the
    TFDS data dir). TFDS boxes are ``(ymin, xmin, ymax, xmax)`` normalised; they become xyxy."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ValueError(f"dataset 'tfds:{name}' needs tensorflow-datasets ({e})") from None
    from PIL import Image

    b = tfds.builder(name, data_dir=data_dir or None)
    if not b.is_prepared():
        raise ValueError(f"TFDS data set {name!r} is not prepared; run `tfds build {name}` "
                         f"with internet first")

    def split(which):
        images, boxes, labels, difficult = [], [], [], []
        for ex in tfds.as_numpy(b.as_dataset(split=which)):
            images.append(np.asarray(Image.fromarray(ex["image"]).convert("RGB").resize(
                (size, size), Image.BILINEAR)))
            o = ex["objects"]
            bb = np.asarray(o["bbox"], np.float32).reshape(-1, 4)
            boxes.append(bb[:, [1, 0, 3, 2]])
            labels.append(np.asarray(o["label"]).astype(int).tolist())
            difficult.append(np.asarray(o["is_difficult"]).astype(bool).tolist())
        return _pack(images, boxes, labels, max_objects, difficult)

    return DetectionDataset(name.replace("/", ""), split(train_split), split(test_split),
                            VOC_CLASSES)


# ---------------------------------------------------------------------------- augmentation


def _augment_one(key, image, boxes, valid, min_scale, flip):
    """One image: a random square-ish crop of side in ``[min_scale, 1]`` (kept boxes clipped to
    it, SSD's centre rule) resized back to the input size, then a random horizontal flip."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    h, w = image.shape[:2]
    s = jax.random.uniform(k1, (), minval=min_scale, maxval=1.0)
    ar = jnp.exp(jax.random.uniform(k2, (), minval=-0.3, maxval=0.3))
    sw, sh = jnp.minimum(s * ar, 1.0), jnp.minimum(s / ar, 1.0)
    x0, y0 = jax.random.uniform(k3, (2,)) * jnp.array([1 - sw, 1 - sh])
    window = jnp.stack([x0, y0, x0 + sw, y0 + sh])
    new_boxes, new_valid = ops.crop_boxes(boxes, valid, window)
    keep_any = new_valid.any()  # a crop without any object is not taken
    img = jax.image.scale_and_translate(
        image.astype(jnp.float32), (h, w, image.shape[2]), (0, 1),
        jnp.array([1 / sh, 1 / sw]), jnp.array([-y0 * h / sh, -x0 * w / sw]), "linear",
        antialias=False)
    img = jnp.where(keep_any, img, image.astype(jnp.float32))
    boxes = jnp.where(keep_any, new_boxes, boxes)
    valid = jnp.where(keep_any, new_valid, valid)
    do_flip = flip & (jax.random.uniform(k4) < 0.5)
    img = jnp.where(do_flip, img[:, ::-1], img)
    boxes = jnp.where(do_flip, ops.flip_boxes(boxes), boxes)
    return img, jnp.where(valid[:, None], boxes, 0.0), valid


def augment(key, images, boxes, valid, min_scale: float = 0.5, flip: bool = True):
    """Box-aware augmentation of a batch on the device: ``images (B, H, W, C)`` (any dtype; out
    float32 in the same range), ``boxes (B, G, 4)``, ``valid (B, G)`` -> the same shapes.
    ``min_scale=1`` turns the crop off."""
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda k, i, b, v: _augment_one(k, i, b, v, min_scale, flip))(
        keys, images, boxes, valid)
