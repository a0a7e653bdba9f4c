"""A run directory: one writer at a time, every config it has seen, exact resume after a
signal, nothing left behind by a failed start."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.test_train_run import ROOT, params_of, tiny_config
from train.trainer import run


def test_changed_config_is_refused_with_the_keys(tmp_path):
    wd = str(tmp_path / "w")
    run(tiny_config(num_epochs=1), wd)
    c = tiny_config(num_epochs=1)
    c.optimizer.lr, c.schedule.name = 0.5, "cosine"
    with pytest.raises(ValueError) as e:
        run(c, wd)
    msg = str(e.value)
    assert "optimizer.lr (0.1 -> 0.5)" in msg and "schedule.name ('step' -> 'cosine')" in msg
    assert "num_epochs" in msg.split("only ")[1]  # names what may change
    # extending and observing keys are allowed and recorded; config.json is never rewritten
    first = open(os.path.join(wd, "config.json")).read()
    run(tiny_config(num_epochs=2, log_every_s=5.0), wd)
    assert open(os.path.join(wd, "config.json")).read() == first
    hist = [json.loads(x) for x in open(os.path.join(wd, "config_history.jsonl"))]
    assert hist[-1]["changed"] == ["log_every_s", "num_epochs"]
    with pytest.raises(ValueError, match="config.num_epochs = 1 is below the 2 epochs"):
        run(tiny_config(num_epochs=1, log_every_s=5.0), wd)


def test_keys_added_by_a_newer_fsjax_do_not_block_a_resume(tmp_path):
    """A run whose saved config predates a key (here: the detection block) resumes when the
    key holds its default; setting it to something else is still a change."""
    from train.workdir import Workdir

    wd = Workdir(str(tmp_path / "w"))
    os.makedirs(wd.path, exist_ok=True)
    new = json.loads(tiny_config().to_json_best_effort())
    old = {k: v for k, v in new.items() if k != "detection"}
    with open(os.path.join(wd.path, "config.json"), "w") as f:
        json.dump(old, f)
    assert wd.check_config(new, new) == []
    new["detection"]["min_crop"] = 0.9
    with pytest.raises(ValueError, match=r"detection.min_crop \(None -> 0.9\)"):
        wd.check_config(new, json.loads(tiny_config().to_json_best_effort()))
    with pytest.raises(ValueError, match="detection.image_size"):  # no schema: every key counts
        wd.check_config(new)


def test_failed_start_leaves_nothing(tmp_path):
    wd = tmp_path / "w"
    with pytest.raises(FileNotFoundError):
        run(tiny_config(dataset="cifar10", data_dir=str(tmp_path / "nope")), str(wd))
    assert not wd.exists()


_HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from train.workdir import Workdir
Workdir({wd!r}).lock()
print("locked", flush=True)
time.sleep(600)
"""


def test_second_writer_refused_and_dead_lock_is_not_stuck(tmp_path):
    wd = str(tmp_path / "w")
    p = subprocess.Popen([sys.executable, "-c", _HOLD.format(root=ROOT, wd=wd)],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(RuntimeError, match=f"in use by another run .pid {p.pid}"):
            run(tiny_config(num_epochs=1), wd)
    finally:
        p.kill()
        p.wait(timeout=60)
    r = run(tiny_config(num_epochs=1), wd)  # the dead holder's lock is gone with it
    assert r["epochs"] == 1


_SIGNALLED = """
import sys
sys.path.insert(0, {root!r})
from tests.test_train_run import tiny_config
from train.trainer import run
run(tiny_config(num_epochs=4, data_limit=512), {wd!r})
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_then_resume_is_bit_identical(tmp_path, sig):
    ref, wd = str(tmp_path / "ref"), str(tmp_path / "w")
    run(tiny_config(num_epochs=4, data_limit=512), ref)
    p = subprocess.Popen([sys.executable, "-c", _SIGNALLED.format(root=ROOT, wd=wd)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = os.path.join(wd, "metrics.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics)):
        time.sleep(0.2)
    p.send_signal(sig)
    out, _ = p.communicate(timeout=300)
    if p.returncode == 0:  # finished before the signal arrived: nothing to resume
        pytest.skip("the run ended before the signal")
    assert p.returncode == 128 + sig, out[-2000:]
    assert "Re-run the same command to resume" in out
    run(tiny_config(num_epochs=4, data_limit=512), wd)
    for a, b in zip(jax.tree.leaves(params_of(ref, 4)), jax.tree.leaves(params_of(wd, 4)),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_edited_checkpoint_metadata_is_refused(tmp_path):
    from train.eval import restore

    wd = str(tmp_path / "w")
    run(tiny_config(num_epochs=1), wd)
    path = os.path.join(wd, "checkpoints", "1", "meta", "metadata")
    meta = json.load(open(path))
    meta["num_classes"] = 11
    json.dump(meta, open(path, "w"))
    with pytest.raises(RuntimeError, match="metadata was changed after it was written"):
        restore(wd, "latest")
    with pytest.raises(RuntimeError, match="checkpoint step 1 .* metadata was changed"):
        run(tiny_config(num_epochs=2), wd)
