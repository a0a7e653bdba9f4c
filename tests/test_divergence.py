"""A diverged model is never checkpointed; a failed save is reported before the next epoch."""

import errno
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_train_run import ROOT, params_of, tiny_config
from train import trainer
from train.trainer import run

STEPS = 256 // 32  # steps per epoch of tiny_config


def _poison_stats_at(monkeypatch, global_step: int):
    """The update of ``global_step`` (0-based) makes one BatchNorm statistic infinite."""
    real = trainer.make_train_step

    def make(*a, **k):
        step = real(*a, **k)

        def poisoned(ts, x, y, key):
            new, m = step(ts, x, y, key)
            leaves, tree = jax.tree.flatten(new["stats"])
            leaves[0] = jnp.where(ts["step"] == global_step, jnp.inf, leaves[0])
            return dict(new, stats=jax.tree.unflatten(tree, leaves)), m
        return poisoned

    monkeypatch.setattr(trainer, "make_train_step", make)


def _steps(wd):
    return sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints")) if s.isdigit())


def test_divergence_in_last_update_of_epoch_is_not_saved(tmp_path, monkeypatch):
    wd = str(tmp_path / "w")
    _poison_stats_at(monkeypatch, 2 * STEPS - 1)  # the last update of epoch 2
    with pytest.raises(FloatingPointError) as e:
        run(tiny_config(num_epochs=3), wd)
    msg = str(e.value)
    assert "non-finite values after epoch 2 in batch statistics (1 array)" in msg
    assert "the last good checkpoint, step 1" in msg and "\n" not in msg
    assert _steps(wd) == [1]
    epochs = [json.loads(x)["epoch"] for x in open(os.path.join(wd, "metrics.jsonl"))]
    assert epochs == [1]


def test_divergence_in_evaluation_only(tmp_path, monkeypatch):
    real = trainer.task_eval_step

    def make(*a, **k):
        ev, finish = real(*a, **k)
        return (lambda *b: dict(ev(*b), loss=jnp.float32(jnp.nan))), finish

    monkeypatch.setattr(trainer, "task_eval_step", make)
    wd = str(tmp_path / "w")
    with pytest.raises(FloatingPointError, match=r"in evaluation loss \(nan\)") as e:
        run(tiny_config(num_epochs=2), wd)
    assert "no checkpoint exists yet (nothing was saved)" in str(e.value)
    assert "last good checkpoint" not in str(e.value)
    assert not os.path.exists(wd)  # nothing was saved: the directory it created is gone


def test_divergence_before_first_checkpoint_wording(tmp_path):
    c = tiny_config(num_epochs=1)
    c.optimizer.lr, c.schedule.name = 1e30, "constant"
    with pytest.raises(FloatingPointError) as e:
        run(c, str(tmp_path / "w"))
    assert "no checkpoint exists yet" in str(e.value)
    assert "is kept" not in str(e.value)


def test_cli_divergence_exits_2_with_one_line(tmp_path):
    wd = str(tmp_path / "w")
    args = [sys.executable, "-m", "train.main", "--config", "configs/default.py",
            "--config.dataset=synthetic", "--config.model=resnet8",
            "--config.model_kw.widths=(4,8,8)", "--config.data_limit=64",
            "--config.batch_size=64", "--config.eval_batch_size=64", "--config.num_epochs=3",
            "--config.optimizer.lr=1e6", "--config.schedule.name=constant", "--workdir", wd]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 2, out.stderr[-2000:]
    err = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert len(err) == 1 and "training diverged" in err[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    for s in _steps(wd) if os.path.isdir(os.path.join(wd, "checkpoints")) else []:
        st = params_of(wd, s)
        assert all(np.isfinite(x).all() for x in jax.tree.leaves(st)
                   if np.issubdtype(np.asarray(x).dtype, np.inexact))


def test_nonfinite_checkpoint_is_refused_and_earlier_step_resumes(tmp_path, monkeypatch):
    wd = str(tmp_path / "w")
    run(tiny_config(num_epochs=1), wd)
    # an older version (no check) saved a diverged step 2
    with monkeypatch.context() as m:
        _poison_stats_at(m, 2 * STEPS - 1)
        m.setattr(trainer, "_check_finite", lambda *a: None)
        run(tiny_config(num_epochs=2), wd)
    assert _steps(wd) == [1, 2]
    with pytest.raises(RuntimeError) as e:
        run(tiny_config(num_epochs=3), wd)
    msg = str(e.value)
    assert "checkpoint step 2" in msg and "non-finite values in batch statistics" in msg
    assert "steps that restore: 1" in msg and "--config.resume_step=1" in msg
    assert _steps(wd) == [1, 2]  # untouched
    with pytest.raises(ValueError, match="config.resume_step = 7 is not a checkpoint"):
        run(tiny_config(num_epochs=3, resume_step=7), wd)
    r = run(tiny_config(num_epochs=3, resume_step=1), wd)
    assert np.isfinite(r["accuracy"]) and r["epochs"] == 3
    assert _steps(wd)[-1] == 3
    assert os.listdir(os.path.join(wd, "checkpoints-set-aside")) == ["2"]


def test_enospc_during_async_save(tmp_path, monkeypatch):
    from orbax.checkpoint._src.handlers import json_checkpoint_handler as jh

    ref = str(tmp_path / "ref")
    run(tiny_config(num_epochs=3), ref)
    wd = str(tmp_path / "w")
    real = jh.JsonCheckpointHandler._save_fn

    async def full_disk(self, x, directory):
        if x.get("epoch") == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return await real(self, x, directory)

    with monkeypatch.context() as m:
        m.setattr(jh.JsonCheckpointHandler, "_save_fn", full_disk)
        with pytest.raises(RuntimeError) as e:
            run(tiny_config(num_epochs=3), wd)
    msg = str(e.value)
    assert msg.startswith("saving checkpoint step 2 to ") and "\n" not in msg
    assert "[Errno 28] No space left on device" in msg
    assert "the earlier checkpoints (step 1) are intact" in msg
    # reported before epoch 3 started: no line for it, no unfinished folder left
    epochs = [json.loads(x)["epoch"] for x in open(os.path.join(wd, "metrics.jsonl"))]
    assert epochs == [1, 2]
    assert os.listdir(os.path.join(wd, "checkpoints")) == ["1"]
    run(tiny_config(num_epochs=3), wd)  # resumes from step 1
    for a, b in zip(jax.tree.leaves(params_of(ref, 3)), jax.tree.leaves(params_of(wd, 3)),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_nonfinite_arrays_counts_each_array_once_per_collection():
    """The checker counts arrays (not elements) per collection, skips integer and empty arrays
    and names DFS locations apart from the other parameters."""
    from train import health

    nan, inf = jnp.array([1.0, jnp.nan, jnp.nan]), jnp.full((2, 2), jnp.inf)
    ts = dict(params=dict(a=nan, b=jnp.ones(3), c=dict(locations=inf), e=jnp.zeros((0, 4))),
              stats=dict(mean=jnp.ones(2)), opt=(nan, inf, jnp.ones(1)),
              step=jnp.asarray(3, jnp.int32))
    assert health.nonfinite_arrays(ts) == {"parameters": 1, "DFS locations": 1,
                                           "optimizer state": 2}
    clean = jax.tree.map(jnp.nan_to_num, ts)
    assert health.nonfinite_arrays(clean) == {}
    assert health.nonfinite_arrays(dict(step=jnp.asarray(1))) == {}
