"""CIFAR-10 stored as JPEGs in the ``split/class/*.jpg`` layout, from a folder or from the
``train.tar.gz`` / ``test.tar.gz`` pair. Decoded once into a ``.npz`` cache (written to a
temporary file, then renamed), keyed by the sources' sizes and modification times.

The JPEG copy is lossy: accuracies on it run below those on the original CIFAR-10.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
ENV = "FSJAX_CIFAR10"
HOW_TO_GET = (f"pass config.data_dir or set ${ENV} to a folder that holds train/ and test/ "
              "(split/class/*.jpg) or train.tar.gz and test.tar.gz")


def find_root(data_dir: str = "") -> str:
    """The CIFAR-10 JPEG folder: ``data_dir`` if given (only it), else ``$FSJAX_CIFAR10``, else
    ``../shared/data/cifar10-jpeg`` beside the current directory (the development copy)."""
    if data_dir or os.environ.get(ENV):  # a folder the user named: only it, never a fallback
        candidates = [data_dir or os.environ[ENV]]
    else:
        candidates = [os.path.join("..", "shared", "data", "cifar10-jpeg")]
    for c in candidates:
        if c and (os.path.isdir(os.path.join(c, "train")) or
                  os.path.exists(os.path.join(c, "train.tar.gz"))):
            return os.path.abspath(c)
    tried = ", ".join(repr(c) for c in candidates if c)
    named = " (config.data_dir)" if data_dir else (f" (${ENV})" if os.environ.get(ENV) else "")
    raise FileNotFoundError(f"CIFAR-10 JPEG data not found in {tried}{named}: {HOW_TO_GET}")


def _decode(blob: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as im:
            arr = np.asarray(im.convert("RGB"), np.uint8)
    except Exception as e:  # PIL raises many types for broken files
        raise ValueError(f"CIFAR-10 image {where} is corrupt ({e}); re-fetch the data set: "
                         f"{HOW_TO_GET}") from None
    if arr.shape != (32, 32, 3):
        raise ValueError(f"CIFAR-10 image {where} has shape {arr.shape}, expected (32, 32, 3)")
    return arr


def _label(path: str, where: str) -> int:
    parts = path.replace("\\", "/").split("/")
    if len(parts) < 2 or parts[-2] not in CLASSES:
        raise ValueError(f"{where}: {path} is not in a class folder ({', '.join(CLASSES)})")
    return CLASSES.index(parts[-2])


def _read_folder(d: str):
    items = []
    for cls in CLASSES:
        cdir = os.path.join(d, cls)
        if not os.path.isdir(cdir):
            raise FileNotFoundError(f"class folder {cdir} is missing: {HOW_TO_GET}")
        for f in sorted(os.listdir(cdir)):
            if f.lower().endswith((".jpg", ".jpeg", ".png")):
                p = os.path.join(cdir, f)
                with open(p, "rb") as fh:
                    items.append((f"{cls}/{f}", fh.read(), p))
    return items


def _read_tar(path: str):
    items = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg", ".png")):
                    items.append((m.name, tar.extractfile(m).read(), f"{path}:{m.name}"))
    except (OSError, tarfile.TarError, EOFError) as e:
        raise ValueError(f"CIFAR-10 archive {path} is corrupt ({e}): {HOW_TO_GET}") from None
    return items


def _source(root: str, split: str) -> str:
    folder = os.path.join(root, split)
    if os.path.isdir(folder):
        return folder
    tar = os.path.join(root, f"{split}.tar.gz")
    if os.path.exists(tar):
        return tar
    raise FileNotFoundError(f"CIFAR-10 {split} split not found in {root} (no {split}/ folder "
                            f"and no {split}.tar.gz): {HOW_TO_GET}")


def _fingerprint(src: str) -> str:
    """Identifies the content, not the location: copies of the same data share one cache.
    A folder: every file's relative path and size; an archive: its size and its first and last
    MiB."""
    h = hashlib.sha1()
    if os.path.isdir(src):
        for root, _, files in sorted(os.walk(src)):
            for f in sorted(files):
                p = os.path.join(root, f)
                h.update(f"{os.path.relpath(p, src)}|{os.path.getsize(p)}\n".encode())
    else:
        size = os.path.getsize(src)
        with open(src, "rb") as f:
            h.update(f"{size}|".encode() + f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read())
    return h.hexdigest()[:16]


def _cache_path(src: str, cache_dir: str) -> str:
    return os.path.join(cache_dir, f"cifar10-{os.path.basename(src)}-{_fingerprint(src)}.npz")


def default_cache_dir() -> str:
    return os.environ.get("FSJAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "fsjax"))


def load(split: str, data_dir: str = "", cache_dir: str | None = None):
    """``(images uint8 (N, 32, 32, 3), labels int32 (N,))`` for 'train' or 'test'."""
    if split not in ("train", "test"):
        raise ValueError(f"CIFAR-10 split must be 'train' or 'test'; got {split!r}")
    src = _source(find_root(data_dir), split)
    cache_dir = cache_dir or default_cache_dir()
    cache = _cache_path(src, cache_dir)
    if os.path.exists(cache):
        try:
            with np.load(cache) as z:
                return z["images"], z["labels"]
        except (OSError, ValueError, KeyError):
            os.remove(cache)  # a broken cache is rebuilt from the source, never trusted
    items = _read_folder(src) if os.path.isdir(src) else _read_tar(src)
    if not items:
        raise ValueError(f"no images found in {src}: {HOW_TO_GET}")
    items.sort(key=lambda t: t[0])
    images = np.stack([_decode(blob, where) for _, blob, where in items])
    labels = np.asarray([_label(name, src) for name, _, _ in items], np.int32)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{cache}.{os.getpid()}.tmp.npz"
    np.savez(tmp, images=images, labels=labels)
    os.replace(tmp, cache)
    return images, labels
