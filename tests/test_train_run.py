"""Whole runs at tiny size: resume, multi-device equivalence, eval/export, error paths."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from train import configlib
from train.trainer import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**over):
    c = configlib.base()
    c.dataset, c.data_limit = "synthetic", 256
    c.model = "resnet56"
    c.model_kw.depth, c.model_kw.widths = 8, (4, 8, 8)
    c.conv.kind = "fs"
    c.num_epochs, c.batch_size, c.eval_batch_size = 2, 32, 64
    c.progress = False
    c.steps_per_call = 0  # auto: one step per jitted call on the CPU (fast compiles)
    for k, v in over.items():
        node = c
        *parents, last = k.split(".")
        for p in parents:
            node = node[p]
        node[last] = v
    return c


def params_of(workdir, step):
    from train.ckpt import Checkpoints

    ck = Checkpoints(workdir)
    st = ck.restore_arrays(step)
    ck.close()
    return st


def test_resume_equals_uninterrupted(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    ra = run(tiny_config(**{"conv.kind": "dfs"}), a)
    run(tiny_config(**{"conv.kind": "dfs"}), b, stop_after_epochs=1)
    assert sorted(os.listdir(os.path.join(b, "checkpoints")))[:1] == ["1"]
    rb = run(tiny_config(**{"conv.kind": "dfs"}), b)
    pa, pb = params_of(a, 2), params_of(b, 2)
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
    assert ra["accuracy"] == rb["accuracy"]
    lines = [json.loads(x) for x in open(os.path.join(b, "metrics.jsonl"))]
    assert [r["epoch"] for r in lines] == [1, 2]
    for f in ("results.json", "curves.png", "config.json"):
        assert os.path.exists(os.path.join(b, f))


_DEVICES_SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from tests.test_train_run import tiny_config
from train.trainer import run
r = run(tiny_config(num_epochs=1, batch_size=32, **{{"conv.kind": "fs"}}), {wd!r})
import jax
from train.eval import restore
print("RESULT", json.dumps(dict(devices=jax.device_count(), loss=json.loads(
    open({wd!r} + "/metrics.jsonl").readline())["train_loss"])))
"""


def _run_devices(n, wd):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _DEVICES_SCRIPT.format(root=ROOT, wd=wd)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def test_one_vs_four_devices(tmp_path):
    one = _run_devices(1, str(tmp_path / "one"))
    four = _run_devices(4, str(tmp_path / "four"))
    assert (one["devices"], four["devices"]) == (1, 4)
    np.testing.assert_allclose(one["loss"], four["loss"], rtol=1e-4)


def test_eval_and_export_reload(tmp_path, capsys):
    from fsjax import export
    from train import eval as ev

    wd = str(tmp_path / "run")
    r = run(tiny_config(num_epochs=1), wd)
    assert ev.main(["--workdir", wd, "--which", "latest", "--export", str(tmp_path / "m")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["accuracy"] == pytest.approx(r["accuracy"])
    model, meta = export.load(str(tmp_path / "m"))
    restored, _ = ev.restore(wd, "latest")
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    model.eval()
    restored.eval()
    np.testing.assert_array_equal(model(x), restored(x))
    with np.load(str(tmp_path / "m") + ".npz") as z:
        assert any(k.endswith("/fs") for k in z.files)
        assert not any(k.endswith("/kernel") and "conv" in k for k in z.files)


@pytest.mark.parametrize("over,msg", [
    ({"model": "resnet57"}, "config.model = 'resnet57' is not valid; valid: "),
    ({"dataset": "mnist"}, "config.dataset = 'mnist' is not valid"),
    ({"conv.kind": "fsx"}, "config.conv.kind = 'fsx' is not valid; valid: dense, fs"),
    ({"schedule.name": "poly"}, "config.schedule.name = 'poly' is not valid"),
    ({"conv.compression": 0.5}, "config.conv.compression = 0.5 is not valid; valid: a num"),
    ({"batch_size": 0}, "config.batch_size = 0 is not valid; valid: a positive int"),
    ({"locations.freeze_epoch": 1}, "freeze_epoch only applies to conv.kind='dfs'"),
    ({"quant.bits": 9}, "config.quant.bits = 9 is not valid; valid: 0 .off. or an int in 2..8"),
    ({"schedule.name": "cyclic", "schedule.cycles": 5}, "config.schedule.cycles must be in"),
])
def test_bad_config_stops_before_work(tmp_path, over, msg):
    with pytest.raises(ValueError, match=msg):
        run(tiny_config(**over), str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")


def test_bad_config_key_on_command_line():
    out = subprocess.run([sys.executable, "-m", "train.main", "--config", "configs/default.py",
                          "--config.optimiser.lr=1"], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode != 0
    assert "optimiser" in out.stderr


def test_missing_data_file_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        run(tiny_config(dataset="fashion_mnist", data_dir=str(tmp_path)), str(tmp_path / "w"))
    with pytest.raises(FileNotFoundError, match="CIFAR-10 JPEG data not found"):
        run(tiny_config(dataset="cifar10", data_dir=str(tmp_path / "nope")), str(tmp_path / "w2"))


def test_batch_must_divide_devices(tmp_path, monkeypatch):
    from train import loop

    class FakeMesh:
        class devices:
            size = 3

    with pytest.raises(ValueError, match="must divide by the device count 3"):
        loop.check_batch(32, FakeMesh)


def test_corrupt_checkpoint_is_reported_not_overwritten(tmp_path):
    wd = str(tmp_path / "bad")
    run(tiny_config(num_epochs=1), wd)
    step_dir = os.path.join(wd, "checkpoints", "1", "state")
    for root, _, files in os.walk(step_dir):
        for f in files:
            if not f.startswith("_"):
                open(os.path.join(root, f), "wb").close()
    with pytest.raises(RuntimeError, match="failed to restore"):
        run(tiny_config(num_epochs=2), wd)
    assert os.path.isdir(step_dir)


def test_workdir_config_mismatch(tmp_path):
    wd = str(tmp_path / "m")
    run(tiny_config(num_epochs=1), wd)
    with pytest.raises(ValueError, match=r"different config: conv.kind \('fs' -> 'dense'\)"):
        run(tiny_config(num_epochs=1, **{"conv.kind": "dense"}), wd)


def test_init_from_dense_projects(tmp_path):
    from train.eval import restore
    from train.trainer import _init_from_dense, build_model

    dense_wd = str(tmp_path / "dense")
    run(tiny_config(num_epochs=1, **{"conv.kind": "dense"}), dense_wd)
    dense, _ = restore(dense_wd, "best")
    c = tiny_config(**{"conv.kind": "fs", "conv.compression": 1.0})
    fs_model, _ = build_model(c, 10, 3)
    _init_from_dense(fs_model, dense_wd)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    dense.eval()
    fs_model.eval()
    np.testing.assert_allclose(fs_model(x), dense(x), rtol=1e-5, atol=1e-5)
    r = run(tiny_config(num_epochs=1, init_from=dense_wd), str(tmp_path / "fs"))
    assert np.isfinite(r["accuracy"])
