"""train.compress: the pipeline end to end at tiny size, resume after a kill between steps,
and its config errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from configs.compress.models import add_compress
from tests.test_train_run import tiny_config
from train.compress import compress, parse_stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("thinet:0.5", "fs:2", "quant:4")


def tiny(stages=STAGES):
    c = add_compress(tiny_config(**{"conv.kind": "dense", "num_epochs": 1}), stages,
                     finetune_epochs=1)
    c.prune.layers = ("stage2.block0.conv1",)
    c.prune.samples_per_class = 4
    c.prune.samples_per_image = 4
    c.compress.latency_batch = 2
    return c


def test_parse_stages_errors():
    assert parse_stages(["thinet:0.5", "wks:4", "finetune", "quant:8"]) == [
        ("thinet", 0.5), ("wks", 4.0), ("finetune", None), ("quant", 8.0)]
    for bad, needle in [(["thinet:1.5"], "stages[0] = 'thinet:1.5' is not valid"),
                        (["fs"], "'fs' is not valid"), (["ks:2.5"], "not valid"),
                        (["prune:0.5"], "valid: thinet"), (["quant:8", "fs:4"], "last step"),
                        ([], "is empty")]:
        with pytest.raises(ValueError, match=None) as e:
            parse_stages(bad)
        assert needle in str(e.value) and "\n" not in str(e.value), (bad, e.value)


_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import tests.conftest
from tests.test_compress import tiny
from train.compress import compress
compress(tiny(), {wd!r})
"""


def test_pipeline_end_to_end_and_resume_after_kill(tmp_path):
    """Killed (SIGKILL) once the ThiNet step is done; re-running skips the finished steps and
    completes: every step has its row, export and measured latency."""
    wd = str(tmp_path / "c")
    p = subprocess.Popen([sys.executable, "-c", _SCRIPT.format(root=ROOT, wd=wd)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = os.path.join(wd, "01-thinet0.5", "stage.json")
    deadline = time.time() + 600
    while time.time() < deadline and not os.path.exists(done) and p.poll() is None:
        time.sleep(0.5)
    assert os.path.exists(done), "the ThiNet step did not finish"
    p.send_signal(signal.SIGKILL)
    p.wait()
    mtime = os.path.getmtime(done)
    rows = compress(tiny(), wd)
    assert os.path.getmtime(done) == mtime  # the finished step was not redone
    assert [r["stage"] for r in rows] == ["source", "thinet 0.5", "fs 2", "quant 4"]
    src, thin, fs, q = rows
    assert thin["macs"] < src["macs"] and thin["stored_params"] < src["stored_params"]
    assert fs["stored_params"] < thin["stored_params"] and fs["macs"] == thin["macs"]
    assert q["effective_params"] < fs["stored_params"]  # 4-bit: the paper's bits/32 count
    assert q["export_file"].endswith(".fsq.npz") and q["export_bytes"] < fs["export_bytes"]
    assert all(r["latency_ms"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    assert os.path.exists(os.path.join(wd, "03-quant4", "train", "results.json"))  # QAT ran
    with open(os.path.join(wd, "compress_results.json")) as f:
        assert len(json.load(f)) == 4
    assert os.path.getsize(os.path.join(wd, "pareto.png")) > 1000
    again = compress(tiny(), wd)  # everything done: nothing recomputed, same rows
    assert again == rows


def test_cli_errors_are_one_line(tmp_path):
    for over, needle in [(["--config.compress.source=/nonexistent"], "not a training run's"),
                         (["--config.compress.stages=('quant:8', 'fs:4')"], "last step")]:
        r = subprocess.run([sys.executable, "-m", "train.compress", "--config",
                            "configs/compress/models.py:resnet56", *over, "--workdir",
                            str(tmp_path / "w")], cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(err) == 1 and needle in err[0], (over, r.stderr)
    assert not os.path.exists(tmp_path / "w")
