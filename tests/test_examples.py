"""Each example of examples/ runs on tiny data (the flax-examples convention), and shows what
it is for: DFS locations learned then frozen into FS, a Linen model compressed exactly at
rho=1, and an int8 ONNX file that predicts what fsjax predicts."""

import json

import pytest

from examples.compress_export import train as export_train
from examples.compress_export.configs import default as export_config
from examples.linen_compress import train as linen_train
from examples.linen_compress.configs import default as linen_config
from examples.nnx_fs_dfs import train as nnx_train
from examples.nnx_fs_dfs.configs import default as nnx_config


def _tiny(config, **kw):
    config.dataset, config.data_limit = "synthetic", 256
    config.update(kw)
    return config


def test_nnx_example_learns_dfs_locations_then_freezes_them(tmp_path):
    c = _tiny(nnx_config.get_config(), num_epochs=2, batch_size=64, freeze_locations_epoch=1)
    r = nnx_train.train_and_evaluate(c, str(tmp_path))
    assert r["mean_location_shift"] > 0  # the locations moved in epoch 1 ...
    assert r["dfs_frozen_to"] == "FSConv"  # ... and were rounded into an FS layer
    assert r["history"][-1]["train_loss"] < r["history"][0]["train_loss"]
    assert r["stored_params"] < r["dense_params"] / 2


def test_linen_example_is_exact_at_rho_1(tmp_path):
    c = _tiny(linen_config.get_config(), compression=1.0, finetune_epochs=1, batch_size=64)
    r = linen_train.train_and_evaluate(c, str(tmp_path))
    assert r["converted"] == ["Conv_1", "Conv_2"]  # the 3->32 stem is below min_params
    assert r["projected_accuracy"] == r["dense_accuracy"]


def test_compress_export_example_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    c = _tiny(export_config.get_config(), dense_epochs=1, finetune_epochs=1, batch_size=64,
              calibration_images=64)
    r = export_train.train_and_evaluate(c, str(tmp_path))
    steps = [row["step"] for row in r["rows"]]
    assert steps == ["trained", "fs rho=4 (projected)", "fine-tuned", "8-bit weights",
                     "int8 ONNX in onnxruntime"]
    assert r["rows"][1]["stored_params"] < r["rows"][0]["stored_params"] / 2
    assert r["rows"][-1]["same_top1_as_fsjax"] >= 0.9  # int8 activations, same predictions


def test_example_command_line_writes_results(tmp_path):
    """An example's command as its docstring gives it (absl + an ml_collections config file,
    as in flax's examples), with config overrides."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "examples.nnx_fs_dfs.main", f"--workdir={tmp_path}",
           "--config=examples/nnx_fs_dfs/configs/default.py", "--config.dataset=synthetic",
           "--config.data_limit=128", "--config.num_epochs=1", "--config.batch_size=64"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "test accuracy" in out.stdout
    assert json.loads((tmp_path / "results.json").read_text())["dfs_frozen_to"] == "FSConv"
