"""Inference latency at batch 1 / 64 / 512: dense, FS (filters built per call), FS
materialised once (``fsjax.nn.materialize``), WKSC, and ThiNet-50%-pruned VGG-16 widths.

    python -m benchmarks.inference_latency [--small] [--json-dir DIR]

Jitted forward in eval mode; compilation excluded; median of many runs; ratios vs dense of the
same model and batch, measured in the same process.
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks.common import print_table, timeit, write_json
from fsjax import models, ops
from fsjax.nn import materialize
from fsjax.prune.thinet import target_widths


def variants(model: str, small: bool):
    kw = dict(stem="cifar") if model == "resnet18" else {}
    if small:
        kw = dict(widths=(8,) * 13) if model == "vgg16" else dict(
            stem="cifar", depths=(1, 1, 1, 1), widths=(8, 8, 16, 16))
    fs4 = models.ConvFactory(kind="fs", compression=4.0)
    out = [("dense", models.ConvFactory(), kw, False), ("fs4 (per call)", fs4, kw, False),
           ("fs4 (materialised)", fs4, kw, True),
           ("wks4", models.ConvFactory(kind="wks", group_size=4), kw, False)]
    if model == "vgg16":
        pruned = target_widths("thinet_conv", kw.get("widths"))
        out.append(("thinet 50%", models.ConvFactory(), dict(kw, widths=pruned), False))
    return out


def latency(name, conv, kw, mat, batch, runs, dtype):
    m = models.create(name, conv=dataclasses.replace(conv, dtype=dtype), **kw)
    if mat:
        materialize(m)
    m.eval()
    graphdef, state = nnx.split(m)
    f = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x), compiler_options=ops.compiler_options())
    x = jnp.ones((batch, 32, 32, 3), dtype)
    return timeit(f, state, x, runs=runs)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--models", default="resnet18,vgg16")
    ap.add_argument("--batches", default="1,64,512")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json-dir", default=None)
    a = ap.parse_args(argv)
    if a.small:
        a.batches, a.runs = "2", 3
    rows = []
    for name in a.models.split(","):
        for batch in map(int, a.batches.split(",")):
            base = None
            for label, conv, kw, mat in variants(name, a.small):
                t = latency(name, conv, kw, mat, batch, a.runs, jnp.dtype(a.dtype))
                base = base or t
                rows.append(dict(model=models.arch_name(name, kw), variant=label, batch=batch, ms=t * 1e3,
                                 vs_dense=t / base))
    print_table(rows, ["model", "variant", "batch", "ms", "vs_dense"])
    write_json(a.json_dir, "inference_latency", rows)
    return rows


if __name__ == "__main__":
    main()
