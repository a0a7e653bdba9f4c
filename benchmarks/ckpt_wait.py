"""What waiting for each checkpoint at the epoch boundary costs (issue 18).

The trainer starts Orbax's asynchronous save and then waits for it before the next epoch, so
that a failed save is reported at once. This times save + wait of the real training state
(parameters, batch statistics, SGD momentum) of zoo models, the finiteness check that runs
before it, and a (small) epoch for scale.

    python -m benchmarks.ckpt_wait [--models resnet20,resnet56,resnet18] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import jax

from benchmarks.common import print_table, write_json
from fsjax import models
from train import configlib, health
from train.ckpt import Checkpoints
from train.trainer import build_model, host_state, setup_state


def state_of(name: str, kw: dict):
    c = configlib.base()
    c.model, c.conv.kind = name, "dense"
    for k, v in kw.items():
        c.model_kw[k] = v
    m, _ = build_model(c, 10, 3)
    return setup_state(m, c, 100)[3]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet20,resnet56,resnet18")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json-dir", default=None)
    a = ap.parse_args(argv)
    rows = []
    for name in a.models.split(","):
        kw = dict(stem="cifar") if name == "resnet18" else {}
        ts = state_of(name, kw)
        nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(ts))
        health.nonfinite_arrays(ts)  # compile
        t_check = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            health.nonfinite_arrays(ts)
            t_check.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as d:
            ck = Checkpoints(d, keep=2, keep_best=False)
            t_save, t_wait = [], []
            for step in range(1, a.runs + 2):
                host = host_state(jax.device_get(ts))
                t0 = time.perf_counter()
                ck.save(step, host, {"epoch": step}, {"accuracy": 0.0})
                t1 = time.perf_counter()
                ck.wait()
                t2 = time.perf_counter()
                if step > 1:  # the first save creates the directories
                    t_save.append(t1 - t0)
                    t_wait.append(t2 - t1)
            ck.close()
        rows.append(dict(model=models.arch_name(name, kw), state_mb=nbytes / 2**20,
                         finite_check_ms=1e3 * statistics.median(t_check),
                         save_call_ms=1e3 * statistics.median(t_save),
                         wait_ms=1e3 * statistics.median(t_wait)))
    print_table(rows, list(rows[0]))
    write_json(a.json_dir, "ckpt_wait", rows)
    return rows


if __name__ == "__main__":
    main()
