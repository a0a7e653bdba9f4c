"""Per-layer cost of FS / DFS / KS / WKS convs vs the dense conv, as ratios in one process.

    python -m benchmarks.layers [--small] [--json-dir DIR]

For every shape: forward, and a training step (forward + backward + SGD update of the stored
parameters) per conv kind, median of many runs after compilation; ratio = kind / dense.
The first shape (32x16x16x256, 3x3 256->256) is issue 2's acceptance step (FS <= 1.15x dense).
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.common import print_table, timeit, write_json
from fsjax import nn as fnn
from fsjax import ops

# (name, batch, H, W, cin, cout, k, stride)
SHAPES = [
    ("accept-256", 32, 16, 16, 256, 256, 3, 1),
    ("cifar-r18-l1", 128, 32, 32, 64, 64, 3, 1),
    ("cifar-r18-l4", 128, 4, 4, 512, 512, 3, 1),
    ("imnet-r50-3x3", 32, 28, 28, 128, 128, 3, 1),
    ("imnet-r50-1x1", 32, 14, 14, 1024, 256, 1, 1),
]
SMALL = [("accept-256-small", 4, 8, 8, 64, 64, 3, 1), ("tiny-1x1", 4, 8, 8, 32, 16, 1, 1)]

KINDS = {
    "dense": lambda ci, co, k, s, r: fnn.Conv(ci, co, k, strides=s, rngs=r),
    "fs4": lambda ci, co, k, s, r: fnn.FSConv(ci, co, k, strides=s, compression=4.0, rngs=r),
    "dfs4": lambda ci, co, k, s, r: fnn.DFSConv(ci, co, k, strides=s, compression=4.0, rngs=r),
    "ks4": lambda ci, co, k, s, r: fnn.KSConv(ci, co, k, strides=s, groups=ci // 4, rngs=r),
    "wks4": lambda ci, co, k, s, r: fnn.KSConv(ci, co, k, strides=s, groups=ci // 4,
                                               weighted=True, rngs=r),
}


def bench_layer(layer, x, runs):
    graphdef, params = nnx.split(layer, nnx.Param)

    jit = functools.partial(jax.jit, compiler_options=ops.compiler_options())

    @jit
    def fwd(params, x):
        return nnx.merge(graphdef, params)(x)

    @jit
    def step(params, x):
        def loss(p):
            return jnp.mean(nnx.merge(graphdef, p)(x) ** 2)
        g = jax.grad(loss)(params)
        return jax.tree.map(lambda p, g: p - 0.01 * g, params, g)

    return timeit(fwd, params, x, runs=runs), timeit(step, params, x, runs=runs)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="tiny shapes (smoke test)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json-dir", default=None)
    a = ap.parse_args(argv)
    shapes = SMALL if a.small else SHAPES
    rows = []
    for name, n, h, w, ci, co, k, s in shapes:
        x = jax.random.normal(jax.random.key(0), (n, h, w, ci))
        base = None
        for kind, make in KINDS.items():
            fwd, step = bench_layer(make(ci, co, k, s, nnx.Rngs(0)), x, a.runs)
            if base is None:
                base = (fwd, step)
            rows.append(dict(shape=name, kind=kind, fwd_ms=fwd * 1e3, step_ms=step * 1e3,
                             fwd_ratio=fwd / base[0], step_ratio=step / base[1]))
    print_table(rows, ["shape", "kind", "fwd_ms", "step_ms", "fwd_ratio", "step_ratio"])
    write_json(a.json_dir, "layers", rows)
    return rows


if __name__ == "__main__":
    main()
