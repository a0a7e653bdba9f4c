"""train.prune end to end at tiny size (synthetic data), including resume per stage."""

import os

from train import configlib
from train.eval import restore
from train.prune import prune


def test_prune_driver(tmp_path):
    c = configlib.base()
    c.dataset, c.data_limit = "synthetic", 256
    c.model = "vgg16"
    c.model_kw.widths = (4,) * 13
    c.conv.kind = "dense"
    c.num_epochs, c.batch_size, c.eval_batch_size = 1, 32, 64
    c.progress = False
    configlib.prune_block(
        c, source="", ratio=0.5, criterion="thinet", layers=("conv1_1", "conv3_2"),
        samples_per_class=2, samples_per_image=10, finetune_epochs=1, finetune_lr=0.01,
        final_epochs=1, final_lr=0.01)
    wd = str(tmp_path / "p")
    rows = prune(c, wd)
    assert [r["stage"] for r in rows] == ["dense", "conv1_1", "conv3_2", "final"]
    assert rows[-1]["params"] < rows[0]["params"] and rows[-1]["macs"] < rows[0]["macs"]
    model, meta = restore(os.path.join(wd, "final"), "latest")
    assert meta["model_kw"]["widths"][0] == 2 and meta["model_kw"]["widths"][5] == 2
    mtime = os.path.getmtime(os.path.join(wd, "stage00-conv1_1", "results.json"))
    prune(c, wd)  # resumes: finished stages are not redone
    assert os.path.getmtime(os.path.join(wd, "stage00-conv1_1", "results.json")) == mtime


def test_prune_driver_keeps_fs_layers(tmp_path):
    """An FS model is pruned and fine-tuned as FS (same compression), not turned dense."""
    c = configlib.base()
    c.dataset, c.data_limit = "synthetic", 128
    c.model = "vgg16"
    c.model_kw.widths = (8,) * 13
    c.conv.kind, c.conv.compression = "fs", 2.0
    c.num_epochs, c.batch_size, c.eval_batch_size = 1, 32, 64
    c.progress = False
    configlib.prune_block(
        c, source="", ratio=0.5, criterion="thinet", layers=("conv2_1",),
        samples_per_class=2, samples_per_image=10, finetune_epochs=1, finetune_lr=0.01,
        final_epochs=1, final_lr=0.01)
    wd = str(tmp_path / "p")
    rows = prune(c, wd)
    assert rows[-1]["params"] < rows[0]["params"]
    model, meta = restore(os.path.join(wd, "final"), "latest")
    assert meta["conv"]["kind"] == "fs" and meta["model_kw"]["widths"][2] == 4
    kinds = {d["name"]: d["kind"] for d in meta["layers"]}
    assert kinds["conv2_1"] == "fs" and kinds["conv2_2"] == "fs"
