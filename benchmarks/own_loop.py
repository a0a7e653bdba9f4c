"""A training step written in your own NNX loop (as ``examples/nnx_fs_dfs``) against the
trainer's step, interleaved in one process.

    python -m benchmarks.own_loop [--model resnet20] [--conv fs] [--batch 128] [--rounds 15]

Rows (the same model, batch, SGD momentum 0.9 + weight decay 5e-4, cross-entropy, float32,
BatchNorm in training mode, uint8 NHWC input normalised inside the step, no augmentation):

- ``trainer``: ``train.model_fn.make_train_step`` under ``jax.jit`` with
  ``fsjax.ops.compiler_options()`` (what ``python -m train.main`` runs);
- ``fsjax.nn.jit``: the user's step (``nnx.Optimizer``, ``nnx.value_and_grad``,
  ``optimizer.update``) compiled with ``fsjax.nn.jit``;
- ``nnx.jit``: the same step under plain ``flax.nnx.jit`` (XLA's default CPU options).

Each round times ``--steps`` calls of each in turn; the table gives the median per step and its
ratio to the trainer's (>= 0.9x is the target for ``fsjax.nn.jit``). Compilation excluded.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.common import print_table, train_state, write_json
from fsjax import models, ops
from fsjax import nn as fnn
from fsjax.data.augment import normalize
from train.configlib import base

MEAN, STD = (0.5,) * 3, (0.25,) * 3


def user_step(jit):
    """The step of examples/nnx_fs_dfs, on uint8 images."""

    def step(model, optimizer, images, labels):
        def loss_fn(m):
            logits = m(normalize(images, MEAN, STD))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    return jit(step)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.own_loop", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--conv", default="fs")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--json-dir", default=None)
    a = ap.parse_args(argv)
    kw = {}
    if a.small:
        a.model, a.batch, a.rounds, a.steps = "resnet8", 8, 2, 1
        kw = dict(widths=(4, 8, 8))
    c = base()
    c.model, c.conv.kind = a.model, a.conv
    for k, v in kw.items():
        c.model_kw[k] = v
    c.augment.crop_padding, c.augment.flip = 0, False
    c.optimizer.weight_decay, c.optimizer.momentum = 5e-4, 0.9
    _, ts, step = train_state(c)
    trainer = jax.jit(step, donate_argnums=(0,), compiler_options=ops.compiler_options())
    x = np.random.default_rng(0).integers(0, 256, (a.batch, 32, 32, 3), np.uint8)
    y = np.random.default_rng(1).integers(0, 10, a.batch).astype(np.int32)
    key = jax.random.key(0)
    state = {"ts": ts}

    def run_trainer():
        state["ts"], m = trainer(state["ts"], x, y, key)
        return m["loss"]

    runs = {"trainer": run_trainer}
    for name, jit in (("fsjax.nn.jit", fnn.jit), ("nnx.jit", nnx.jit)):
        model = models.create(a.model, conv=a.conv, **kw)
        opt = nnx.Optimizer(model, optax.chain(optax.add_decayed_weights(5e-4),
                                               optax.sgd(0.1, momentum=0.9)), wrt=nnx.Param)
        f = user_step(jit)
        runs[name] = lambda f=f, model=model, opt=opt: f(model, opt, jnp.asarray(x),
                                                          jnp.asarray(y))
    times = {k: [] for k in runs}
    for f in runs.values():  # compile and warm up
        jax.block_until_ready(f())
        jax.block_until_ready(f())
    for _ in range(a.rounds):
        for k, f in runs.items():
            t0 = time.perf_counter()
            for _ in range(a.steps):
                out = f()
            jax.block_until_ready(out)
            times[k].append((time.perf_counter() - t0) / a.steps)
    ref = statistics.median(times["trainer"])
    rows = [dict(step=k, model=a.model, conv=a.conv, batch=a.batch,
                 ms=1e3 * statistics.median(v), speed_vs_trainer=ref / statistics.median(v))
            for k, v in times.items()]
    print_table(rows, ["step", "model", "conv", "batch", "ms", "speed_vs_trainer"])
    write_json(a.json_dir, "own_loop", rows)
    return rows


if __name__ == "__main__":
    main()
