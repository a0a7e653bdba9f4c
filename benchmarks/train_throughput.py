"""Training-step throughput (images/s) per model x conv kind x dtype x batch, and a whole
epoch where the data set fits on the device.

    python -m benchmarks.train_throughput [--small] [--json-dir DIR]
        [--models resnet18,resnet56,vgg16,mobilenet_v1] [--kinds dense,fs4,fs16,dfs4,wks4]
        [--dtypes float32,bfloat16] [--batches 128,512] [--epoch]

Compilation excluded; median of timed steps; ratios vs dense measured in the same run. With
``--epoch`` a CIFAR-10-sized on-device epoch (50,000 synthetic images) of ResNet-18 is timed
through the trainer's Runner (the issue 3 acceptance figure on a GPU).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import print_table, timeit, train_state, write_json
from configs.variants import apply_variant
from fsjax import models, ops
from train import configlib
from train.loop import Runner, make_mesh
from train.model_fn import make_eval_step

MODEL_KW = {"resnet18": dict(stem="cifar"), "mobilenet_v1": dict(stem_stride=1)}
SMALL_KW = {"resnet18": dict(stem="cifar", depths=(1, 1, 1, 1), widths=(8, 8, 16, 16)),
            "resnet56": dict(depth=8, widths=(4, 8, 8)), "vgg16": dict(widths=(8,) * 13),
            "mobilenet_v1": dict(width=0.125)}


def setup(model, variant, dtype, small=False):
    c = configlib.base()
    c.model = model
    for k, v in (SMALL_KW if small else MODEL_KW).get(model, {}).items():
        c.model_kw[k] = v
    apply_variant(c, variant)
    fn, ts, step = train_state(c, dtype)
    return c, fn, ts, step


def bench_step(model, variant, dtype, batch, runs, small):
    _, _, ts, step = setup(model, variant, dtype, small)
    f = jax.jit(step, donate_argnums=(0,), compiler_options=ops.compiler_options())
    x = jax.random.randint(jax.random.key(0), (batch, 32, 32, 3), 0, 256).astype(jnp.uint8)
    y = jnp.arange(batch) % 10
    key = jax.random.key(1)
    state = {"ts": ts}

    def run_once():
        state["ts"], m = f(state["ts"], x, y, key)
        return m["loss"]

    t = timeit(run_once, runs=runs)
    return batch / t


def bench_epoch(variant, dtype, batch, n, small):
    c, fn, ts, step = setup("resnet18", variant, dtype, small)
    mesh = make_mesh()
    r = Runner(step, make_eval_step(fn, (0.5,) * 3, (0.25,) * 3, jnp.dtype(dtype)), mesh,
               batch, batch, True)
    xs = np.random.default_rng(0).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    ys = np.random.default_rng(1).integers(0, 10, size=n).astype(np.int32)
    data = r.put_replicated(xs, ys)
    ts = jax.device_put(ts, r.repl)
    times = []
    for epoch in range(3):
        t0 = time.perf_counter()
        ts, _ = r.train_epoch(ts, data, n, 0, epoch)
        jax.block_until_ready(ts)
        times.append(time.perf_counter() - t0)
    steps = n // batch
    return dict(first_epoch_s=times[0], epoch_s=float(np.median(times[1:])),
                images_per_s=steps * batch / float(np.median(times[1:])))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--models", default="resnet18,resnet56,vgg16,mobilenet_v1")
    ap.add_argument("--kinds", default="dense,fs4,fs16,dfs4,wks4")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--batches", default="128,512")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--epoch", action="store_true")
    ap.add_argument("--epoch-images", type=int, default=50_000)
    ap.add_argument("--json-dir", default=None)
    a = ap.parse_args(argv)
    if a.small:
        a.models, a.kinds, a.dtypes, a.batches, a.runs = "resnet56", "dense,fs4", "float32", \
            "8", 3
    rows = []
    for model in a.models.split(","):
        for dtype in a.dtypes.split(","):
            for batch in map(int, a.batches.split(",")):
                base = None
                for kind in a.kinds.split(","):
                    ips = bench_step(model, kind, dtype, batch, a.runs, a.small)
                    base = base or ips
                    kw = (SMALL_KW if a.small else MODEL_KW).get(model, {})
                    rows.append(dict(model=models.arch_name(model, kw), conv=kind, dtype=dtype, batch=batch,
                                     images_per_s=ips, vs_dense=ips / base))
                    print_table(rows[-1:], list(rows[-1]))
    print_table(rows, ["model", "conv", "dtype", "batch", "images_per_s", "vs_dense"])
    epochs = []
    if a.epoch:
        for kind in a.kinds.split(","):
            e = bench_epoch(kind, a.dtypes.split(",")[-1], int(a.batches.split(",")[-1]),
                            a.epoch_images if not a.small else 64, a.small)
            kw = (SMALL_KW if a.small else MODEL_KW)["resnet18"]
            epochs.append(dict(model=models.arch_name("resnet18", kw), conv=kind, **e))
        print_table(epochs, list(epochs[0]))
    write_json(a.json_dir, "train_throughput", rows, epochs=epochs)
    return rows


if __name__ == "__main__":
    main()
