"""What a run tells a person: the built architecture's name, a header, periodic lines off a
terminal, the final table, honest subsets."""

import json
import os
import subprocess
import sys

import numpy as np

from fsjax.data import stratified_subset
from fsjax.models import arch_name
from tests.test_train_run import ROOT, tiny_config
from train.trainer import run


def test_arch_name_resolves_options():
    assert arch_name("resnet56", {"depth": 8}) == "resnet8"
    assert arch_name("resnet56", {"depth": 56, "widths": (16, 32, 64)}) == "resnet56"
    assert arch_name("resnet56", {"depth": 8, "widths": (4, 8, 8)}) == "resnet8(widths=4/8/8)"
    assert arch_name("resnet164", {"depth": 56}) == "resnet56-bottleneck"
    assert arch_name("resnet18", {"stem": "cifar", "in_channels": 3}) == "resnet18"
    # MobileNetV1's own default stem_stride is 1 (CIFAR); only a non-default value is named
    assert arch_name("mobilenet_v1", {"stem_stride": 1}) == "mobilenet_v1"
    assert arch_name("mobilenet_v1", {"stem_stride": 2}) == "mobilenet_v1(stem_stride=2)"


def test_depth_override_label_and_quiet_progress(tmp_path, capsys):
    wd = str(tmp_path / "w")
    c = tiny_config(num_epochs=2, steps_per_call=2, log_every_s=0.0)
    r = run(c, wd, config_name="configs/x.py:resnet56,fs4")
    out, err = capsys.readouterr()
    saved = json.load(open(os.path.join(wd, "results.json")))
    assert saved["model"] == r["model"] == "resnet8(widths=4/8/8)"
    assert saved["config_model"] == "resnet56" and saved["config"] == "configs/x.py:resnet56,fs4"
    # progress=False: no bar, but the header, periodic lines, epoch lines and the table
    assert "model: resnet8(widths=4/8/8) (fs rho=4)" in err
    assert "parameters:" in err and "workdir:" in err
    assert "epoch 1/2 step 2/8 loss" in err and "img/s" in err
    assert "epoch 2/2 loss" in err
    assert "resnet8(widths=4/8/8) (fs rho=4)" in out and "test accuracy (final)" in out
    meta_arch = json.load(open(os.path.join(wd, "results.json")))["model"]
    assert "resnet56" not in meta_arch
    # a finished run re-run reports the recorded throughput, not nan
    r2 = run(c, wd)
    assert np.isfinite(r2["images_per_s"])
    capsys.readouterr()
    c.quiet = True
    run(c, wd)
    out, err = capsys.readouterr()
    assert "test accuracy" not in out and "model:" not in err and "resumed" not in err


def test_cli_workdir_defaults_to_config_name(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    args = [sys.executable, "-m", "train.main", "--config",
            os.path.join(ROOT, "configs/cifar10/models.py") + ":resnet56,dense",
            "--config.dataset=synthetic", "--config.model_kw.depth=8",
            "--config.model_kw.widths=(4,8,8)", "--config.data_limit=64",
            "--config.batch_size=32", "--config.eval_batch_size=64", "--config.num_epochs=1",
            "--config.progress=False"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run(args, capture_output=True, text=True, cwd=root, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert os.path.isfile(root / "runs" / "models-resnet56,dense" / "results.json")
    assert "config: configs/cifar10/models.py:resnet56,dense" in out.stderr
    assert "resnet8(widths=4/8/8) (dense)" in out.stdout


def test_stratified_subset_keeps_class_proportions():
    labels = np.repeat(np.arange(10), 500)  # sorted by class, like the CIFAR JPEG copy
    idx = stratified_subset(labels, 2560, seed=0)
    assert len(idx) == 2560 and len(set(idx)) == 2560 and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.min() >= 255 and counts.max() <= 257
    np.testing.assert_array_equal(idx, stratified_subset(labels, 2560, seed=0))
    assert not np.array_equal(idx, stratified_subset(labels, 2560, seed=1))
    uneven = np.array([0] * 90 + [1] * 10)
    assert np.bincount(uneven[stratified_subset(uneven, 10)]).tolist() == [9, 1]
