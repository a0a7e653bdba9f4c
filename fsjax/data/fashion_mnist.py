"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist``, through a TFDS builder.

The Debian files are re-compressed, so TFDS's own ``fashion_mnist`` builder rejects their
checksums and tries to download. This builder reads the IDX files directly, works without
TensorFlow (uint8 ``Tensor`` features, ``array_record`` files) and prepares into TFDS's
temporary ``incomplete`` directory, which TFDS renames only when complete.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import logging
import os
import sys

import numpy as np

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
HOW_TO_GET = ("install it with `sudo apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu), "
              "or set config.data_dir / FSJAX_FASHION_MNIST to a folder holding the four "
              "*-ubyte.gz IDX files")


def source_dir(data_dir: str = "") -> str:
    return data_dir or os.environ.get("FSJAX_FASHION_MNIST", "") or DEBIAN_DIR


def read_idx(path: str) -> np.ndarray:
    """Read a (gzipped) IDX file; a missing or corrupt file raises naming it and the fix."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Fashion-MNIST file {path} is missing: {HOW_TO_GET}")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
        magic = int.from_bytes(raw[:4], "big")
        ndim = magic & 0xFF
        if magic >> 8 != 0x08 or not 1 <= ndim <= 4:
            raise ValueError("bad IDX magic number")
        dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
        return data.reshape(dims)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"Fashion-MNIST file {path} is corrupt ({e}); reinstall it: "
                         f"{HOW_TO_GET}") from None


def read_split(split: str, data_dir: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 28, 28, 1), labels int32 (N,))`` straight from the IDX files."""
    d = source_dir(data_dir)
    img_file, lbl_file = FILES[split]
    images = read_idx(os.path.join(d, img_file))[..., None]
    labels = read_idx(os.path.join(d, lbl_file)).astype(np.int32)
    if len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels "
                         f"in {d}")
    return images, labels


@functools.lru_cache(maxsize=1)
def _builder_class():
    """Defined once (TFDS registers builder classes by name); imported lazily because
    tensorflow-datasets is heavy to import."""
    import tensorflow_datasets as tfds

    class FashionMnistDebian(tfds.core.GeneratorBasedBuilder):
        """Fashion-MNIST read from local IDX files (no download, no TensorFlow)."""

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Local IDX files (Debian dataset-fashion-mnist)."}

        def _info(self):
            return self.dataset_info_from_configs(
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s) for s in FILES}

        SOURCE = ""

        def _generate_examples(self, split):
            images, labels = read_split(split, self.SOURCE)
            for i in range(len(labels)):
                yield i, {"image": images[i], "label": int(labels[i])}

    return FashionMnistDebian


def builder(tfds_data_dir: str, source: str = ""):
    """The TFDS builder over ``source`` (default: the Debian folder)."""
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    cls = _builder_class()
    cls.SOURCE = source
    return cls(data_dir=tfds_data_dir, file_format="array_record")


@contextlib.contextmanager
def _quiet_tfds():
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def load(split: str, tfds_data_dir: str, source: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Prepare (once) and read a split through the TFDS builder into numpy arrays."""
    b = builder(tfds_data_dir, source)
    with _quiet_tfds():
        prepared = b.is_prepared()
    if not prepared:
        # TFDS announces "Downloading and preparing"; nothing is downloaded here
        print(f"preparing Fashion-MNIST once from {source_dir(source)} into {tfds_data_dir} "
              f"(local files, no download)", file=sys.stderr, flush=True)
        with contextlib.redirect_stdout(io.StringIO()), _quiet_tfds():
            b.download_and_prepare()
    ds = b.as_data_source(split=split)
    n = len(ds)
    records = ds.__getitems__(list(range(n))) if hasattr(ds, "__getitems__") else [
        ds[i] for i in range(n)]
    images = np.stack([r["image"] for r in records]).astype(np.uint8)
    labels = np.asarray([r["label"] for r in records], np.int32)
    return images, labels
