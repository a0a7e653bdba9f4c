"""Streaming input (fsjax.data.stream): sources, crops, order, sharding, resume, corrupt files;
and the trainer on a streamed folder (mid-epoch resume is exact; 2 processes = 1 process)."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fsjax.data import stream

CLASSES = ("ant", "bee", "cat")


def _folder(root, per_class, seed, sizes=(18, 70)):
    rng = np.random.default_rng(seed)
    for k, cls in enumerate(CLASSES):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for i in range(per_class):
            h, w = rng.integers(*sizes, size=2)
            x = rng.integers(0, 60, (h, w, 3)) + np.array([60 * k, 30, 200 - 60 * k])
            Image.fromarray(x.clip(0, 255).astype(np.uint8)).save(
                os.path.join(root, cls, f"{i:04d}.JPEG"), quality=90)


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory):
    """300 training and 60 validation JPEGs of different sizes, 3 classes; the validation
    images in a flat folder with a labels file (ImageNet's layout)."""
    root = tmp_path_factory.mktemp("imagenet_like")
    _folder(str(root / "train"), 100, 0)
    _folder(str(root / "valsrc"), 20, 1)
    os.makedirs(root / "val")
    with open(root / "val_labels.txt", "w") as f:
        for cls in CLASSES:
            for name in sorted(os.listdir(root / "valsrc" / cls)):
                new = f"{cls[0]}_{name}"
                os.replace(root / "valsrc" / cls / name, root / "val" / new)
                f.write(f"{new} {cls}\n")
    return str(root)


def test_folder_sources_index_lazily(imagenet_like):
    d = stream.image_folder(imagenet_like, size=16)
    assert (d.train_size, d.test_size, d.num_classes) == (300, 60, 3)
    assert d.class_names == CLASSES
    assert list(np.bincount(d.train.labels)) == [100] * 3
    assert list(np.bincount(d.test.labels)) == [20] * 3
    assert d.test[0]["image"].size != d.test[59]["image"].size  # decoded at its own size
    for i in (0, 25, 59):  # the labels file's class names map to the training classes
        name = d.test.names[i].decode()
        assert CLASSES[d.test.labels[i]][0] == name[0]


def test_random_resized_box_bounds_and_fallback():
    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = rng.integers(5, 300, size=2)
        top, left, ch, cw = stream.random_resized_box(rng, h, w)
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 < cw
    fracs = [np.prod(stream.random_resized_box(rng, 200, 200)[2:]) / 200 ** 2
             for _ in range(2000)]
    assert 0.07 <= min(fracs) < 0.12 and max(fracs) > 0.95
    # no crop of ratio 3/4..4/3 and area >= 0.9 fits a 1x100 image: centre crop, clamped
    assert stream.random_resized_box(rng, 1, 100, scale=(0.9, 1.0)) == (0, 49, 1, 1)


def test_eval_transform_is_resize_then_centre_crop():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (40, 64, 3)).astype(np.uint8)
    out = stream.eval_transform(dict(image=Image.fromarray(x), label=2, skipped=0), 16, 3)
    # reference: shorter side 40 -> round(16 / 0.875) = 18, so 64 -> 29; centre 16x16
    ref = np.asarray(Image.fromarray(x).resize((29, 18), Image.BILINEAR))[1:17, 6:22]
    np.testing.assert_array_equal(out["image"], ref)
    assert out["label"] == 2


def _reference(d, seed, gb, epochs, pi=0, pc=1):
    """The batches by a plain loop: epoch e visits permutation(seed, e); this process takes
    its columns of each global batch; each image its own generator (seed, epoch, record)."""
    n, lb = d.train_size, gb // pc
    out = []
    for e in range(epochs):
        perm = np.random.default_rng([seed, e, 0x5EED]).permutation(n)
        for s in range(n // gb):
            rows = perm[s * gb + pi * lb: s * gb + (pi + 1) * lb]
            items = [stream.train_transform(d.train[r], np.random.default_rng([seed, e, r]),
                                            d.size, 3) for r in rows]
            out.append((np.stack([i["image"] for i in items]),
                        np.asarray([i["label"] for i in items])))
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_equals_reference_loop(imagenet_like, workers):
    d = stream.image_folder(imagenet_like, size=16)
    got = list(d.train_batches(seed=3, global_batch=32, epochs=2, workers=workers))
    ref = _reference(d, 3, 32, 2)
    assert len(got) == len(ref) == 2 * (300 // 32)
    for b, (x, y) in zip(got, ref, strict=True):
        np.testing.assert_array_equal(b["image"], x)
        np.testing.assert_array_equal(b["label"], y)
        assert b["image"].dtype == np.uint8 and b["image"].shape == (32, 16, 16, 3)


def test_processes_see_disjoint_shards_covering_each_epoch(imagenet_like):
    d = stream.image_folder(imagenet_like, size=8)
    gb, epochs = 40, 2
    seen = {}
    for pi in range(2):
        s = stream.EpochSampler(d.train_size, 5, gb, pi, 2, epochs)
        for k in range(len(s)):
            e, r = s.position(k)
            seen.setdefault(e, []).append(r)
    for e in range(epochs):
        rows = seen[e]
        assert len(rows) == len(set(rows)) == (300 // gb) * gb  # once each, remainder dropped
        perm = np.random.default_rng([5, e, 0x5EED]).permutation(300)
        assert set(rows) == set(perm[: len(rows)])
    assert seen[0] != seen[1]  # a new order each epoch
    # the processes' batches side by side are the global batch of one process
    one = _reference(d, 5, gb, 1)
    two = [_reference(d, 5, gb, 1, pi, 2) for pi in range(2)]
    for s in range(len(one)):
        np.testing.assert_array_equal(np.concatenate([two[0][s][1], two[1][s][1]]), one[s][1])


def test_resume_at_a_step_gives_the_same_batches(imagenet_like):
    d = stream.image_folder(imagenet_like, size=12)
    full = list(d.train_batches(seed=0, global_batch=24, epochs=2, workers=0))
    tail = list(d.train_batches(seed=0, global_batch=24, epochs=2, start_step=17, workers=2))
    assert len(tail) == len(full) - 17
    for a, b in zip(full[17:], tail, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


@pytest.mark.parametrize("workers", [0, 2])
def test_eval_batches_cover_the_test_set_once(imagenet_like, workers):
    d = stream.image_folder(imagenet_like, size=16)
    got = list(d.eval_batches(16, workers=workers))
    assert len(got) == 4
    masks = np.concatenate([b["mask"] for b in got])
    labels = np.concatenate([b["label"] for b in got])[masks]
    assert masks.sum() == 60 and not masks[60:].any()
    np.testing.assert_array_equal(labels, d.test.labels)
    ref = stream.eval_transform(d.test[59], 16, 3)["image"]
    np.testing.assert_array_equal(got[3]["image"][11], ref)


def test_corrupt_jpeg_is_named_or_skipped_and_counted(tmp_path):
    root = tmp_path / "data"
    _folder(str(root / "train"), 6, 0)
    _folder(str(root / "val"), 2, 1)
    bad = root / "train" / "bee" / "0002.JPEG"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    d = stream.image_folder(str(root), size=8)
    with pytest.raises(ValueError, match=r"cannot decode image .*bee/0002\.JPEG"):
        list(d.train_batches(0, 6, 1, workers=0))
    with pytest.raises(Exception, match=r"bee/0002\.JPEG"):  # from a worker process too
        list(d.train_batches(0, 6, 1, workers=1))
    d = stream.image_folder(str(root), size=8, corrupt="skip")
    batches = list(d.train_batches(0, 6, 1, workers=0))
    assert sum(int(b["skipped"].sum()) for b in batches) == 1
    assert len(batches) == 3
    r = d.train[8]  # bee/0002 is index 6 + 2: replaced by the next file, bee/0003
    assert r["skipped"] == 1 and r["label"] == 1


def _idx(path, arr):
    hdr = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(hdr + arr.astype(np.uint8).tobytes())


def test_tfds_array_record_source(tmp_path):
    from fsjax.data import fashion_mnist

    src = tmp_path / "idx"
    src.mkdir()
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 255, (n, 28, 28)) for s, n in (("train", 64), ("test", 20))}
    labels = {s: rng.integers(0, 10, len(x)) for s, x in images.items()}
    for split, (fi, fl) in fashion_mnist.FILES.items():
        _idx(str(src / fi), images[split])
        _idx(str(src / fl), labels[split])
    b = fashion_mnist.builder(str(tmp_path / "tfds"), str(src))
    b.download_and_prepare()
    d = stream.tfds_stream(b.name, str(tmp_path / "tfds"), size=28, channels=1,
                           crop_fraction=1.0)
    assert (d.train_size, d.test_size, d.num_classes) == (64, 20, 10)
    got = list(d.eval_batches(20, workers=0))[0]
    # TFDS stores the examples in its own (hashed) order: match them by content
    order = [int(np.flatnonzero((images["test"] == x[..., 0]).all((1, 2)))[0])
             for x in got["image"]]  # no resize, no crop at crop_fraction 1
    assert sorted(order) == list(range(20))
    np.testing.assert_array_equal(got["label"], labels["test"][order])
    batches = list(d.train_batches(0, 16, 1, workers=2))
    seen = np.concatenate([x["label"] for x in batches])
    perm = np.random.default_rng([0, 0, 0x5EED]).permutation(64)
    np.testing.assert_array_equal(seen, [d.train[i]["label"] for i in perm])


# ------------------------------------------------------------------------ the trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(data_dir, **kw):
    from configs import default

    c = default.get_config()
    c.dataset, c.data_dir, c.model = "folder", data_dir, "resnet8"
    c.model_kw.widths = (4, 8, 8)
    c.stream.image_size = 16
    c.batch_size, c.eval_batch_size, c.num_epochs = 24, 32, 2
    c.progress, c.quiet, c.tensorboard = False, True, False
    for k, v in kw.items():
        setattr(c, k, v) if "." not in k else setattr(c[k.split(".")[0]], k.split(".")[1], v)
    return c


def test_trainer_resumes_mid_epoch_exactly(imagenet_like, tmp_path, monkeypatch, capsys):
    from train import trainer

    full = str(tmp_path / "full")
    trainer.run(_config(imagenet_like, checkpoint_every_steps=4), full)
    real = trainer._save

    def save_then_die(r, phase, ts, pos, rec=None):
        real(r, phase, ts, pos, rec)
        if rec is None and (pos.epoch, pos.step) == (1, 8):  # killed right after the
            r.ckpts.wait()                                  # checkpoint at step 8 of epoch 2
            raise KeyboardInterrupt

    cut = str(tmp_path / "cut")
    monkeypatch.setattr(trainer, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(_config(imagenet_like, checkpoint_every_steps=4), cut)
    monkeypatch.setattr(trainer, "_save", real)
    assert os.listdir(os.path.join(cut, "checkpoints-partial")) == [str(12 + 8)]
    capsys.readouterr()
    trainer.run(_config(imagenet_like, checkpoint_every_steps=4, quiet=False), cut)
    out = capsys.readouterr()
    assert "at step 8 of epoch 2" in out.out + out.err
    a, b = ([json.loads(x) for x in open(os.path.join(w, "metrics.jsonl"))] for w in (full, cut))
    assert len(a) == len(b) == 2
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    from tests.test_train_run import params_of

    for x, y in zip(*(_leaves(params_of(w, 2)) for w in (full, cut)), strict=True):
        np.testing.assert_array_equal(x, y)
    from train.eval import evaluate, restore  # train.eval reads the streamed test set too

    assert evaluate(*restore(full, "latest"), batch=32)["accuracy"] == a[-1]["test_accuracy"]


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def test_streamed_two_processes_equal_one_process(imagenet_like, tmp_path):
    from tests.test_multiprocess import _env, _finish, _port

    args = ["--config", "configs/default.py", "--config.dataset=folder",
            f"--config.data_dir={imagenet_like}", "--config.model=resnet8",
            "--config.model_kw.widths=(4,8,8)", "--config.stream.image_size=16",
            "--config.batch_size=32", "--config.eval_batch_size=32", "--config.num_epochs=1",
            "--config.progress=False", "--config.stream.workers=1"]
    one = str(tmp_path / "one")
    out = subprocess.run([sys.executable, "-m", "train.main", *args, "--workdir", one],
                         cwd=ROOT, env=_env(4), capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    two, port = str(tmp_path / "two"), _port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "train.main", *args, "--workdir", two,
         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
        cwd=ROOT, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    codes, outs = _finish(procs)
    assert codes == [0, 0], "\n".join(o[-2000:] for o in outs)
    a, b = ([json.loads(x) for x in open(os.path.join(w, "metrics.jsonl"))] for w in (one, two))
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(b[0][key], a[0][key], rtol=1e-5, err_msg=key)


def test_imagenet_config_streams_a_folder(imagenet_like):
    from configs.imagenet import models
    from train import configlib

    c = models.get_config("resnet50,fs3.7,folder")
    c.data_dir = imagenet_like
    configlib.validate(c)
    d = configlib.load_data(c)
    assert isinstance(d, stream.StreamData) and d.image_shape == (224, 224, 3)
    b = next(d.train_batches(0, 4, 1, workers=0))
    assert b["image"].shape == (4, 224, 224, 3)
    assert models.get_config("vgg16,dense").dataset == "tfds:imagenet2012"
    with pytest.raises(ValueError, match="data source 'hdf5'; valid: tfds"):
        models.get_config("resnet50,dense,hdf5")


@pytest.mark.parametrize("change, message", [
    (dict(data_dir=""), "config.dataset = 'folder' needs config.data_dir"),
    (dict(data_limit=100), "config.data_limit / eval_limit need an in-memory data set"),
    (dict(data_dir="/nonexistent"), "image folder /nonexistent/train does not exist"),
])
def test_streaming_config_errors(imagenet_like, change, message):
    from train import configlib

    c = _config(imagenet_like)
    for k, v in change.items():
        setattr(c, k, v)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        configlib.load_data(c)


@pytest.mark.parametrize("key, value, valid", [
    ("enabled", "yes", "auto, on, off"), ("corrupt", "ignore", "error, skip"),
    ("workers", -1, "an int >= 0"), ("crop_fraction", 0.0, "a number in"),
])
def test_stream_options_are_validated(key, value, valid):
    from train import configlib

    c = configlib.base()
    setattr(c.stream, key, value)
    with pytest.raises(ValueError, match=rf"config.stream.{key} = .* valid: {valid}"):
        configlib.validate(c)


def test_nas_search_refuses_a_stream(imagenet_like, tmp_path):
    from train import trainer

    c = _config(imagenet_like)
    c.nas.search = True
    with pytest.raises(ValueError, match="config.nas.search needs an in-memory data set"):
        trainer.run(c, str(tmp_path / "w"))


def test_sample_images_for_pruning(imagenet_like):
    d = stream.image_folder(imagenet_like, size=16)
    x, y = stream.sample_images(d, 4, seed=1)
    assert x.shape == (12, 16, 16, 3) and list(np.bincount(y)) == [4, 4, 4]
    x2, _ = stream.sample_images(d, 4, seed=1)
    np.testing.assert_array_equal(x, x2)  # the evaluation crop: no randomness


def test_thinet_prunes_a_streamed_model(imagenet_like, tmp_path):
    """train.prune on a streamed folder: activations from centre crops of training images."""
    from train import configlib
    from train.prune import prune

    c = _config(imagenet_like)
    c.model, c.model_kw.widths, c.conv.kind = "vgg16", (4,) * 13, "dense"
    c.stream.image_size, c.num_epochs = 32, 1
    configlib.prune_block(
        c, source="", ratio=0.5, criterion="thinet", layers=("conv1_1",), samples_per_class=2,
        samples_per_image=10, finetune_epochs=1, finetune_lr=0.01, final_epochs=1,
        final_lr=0.01)
    rows = prune(c, str(tmp_path / "p"))
    assert [r["stage"] for r in rows] == ["dense", "conv1_1", "final"]
    assert rows[-1]["params"] < rows[0]["params"]
