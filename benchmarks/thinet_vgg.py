"""The ThiNet paper's VGG-16 table, every row: parameters and FLOPs as the paper counts them,
and the f./b. (forward / backward) time of one batch, next to the paper's figures.

    python -m benchmarks.thinet_vgg [--batch 32] [--rounds 5] [--json-dir DIR] [--small]

ImageNet architectures (224x224 input, ``fsjax.prune.thinet.published_architecture``),
float32, training mode (dropout on, as Caffe's ``time`` runs the train net). f. = the jitted
forward (logits and loss); b. = the backward alone (the VJP of the loss applied to residuals
saved by a previous forward), both excluding compilation, each the median of ``--rounds``
rounds that interleave the rows. The paper measured batch 32 on one M40 GPU (Caffe); the
train-from-scratch row has ThiNet-Conv's architecture and so its times.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks.common import print_table, write_json
from fsjax import export, ops
from fsjax.models.vgg import VGG16_WIDTHS
from fsjax.nn import dropout_key
from fsjax.prune import thinet

# the paper's table (ThiNet, ICCV'17, Table 4 / the authors' model README): params (M),
# FLOPs (B), f./b. ms (batch 32, one M40 GPU)
PAPER = {
    "original": ("vgg16", 138.34, 30.94, 189.92, 407.56),
    "ThiNet-Conv": ("vgg16_thinet_conv", 131.44, 9.58, 76.71, 152.05),
    "Train from scratch": ("vgg16_thinet_conv", 131.44, 9.58, 76.71, 152.05),
    "ThiNet-GAP": ("vgg16_thinet_gap", 8.32, 9.34, 71.73, 145.51),
    "ThiNet-Tiny": ("vgg16_thinet_tiny", 1.32, 2.01, 29.51, 55.83),
}


def _small(meta):
    """1/16 of every width, for the smoke test (same heads, same 224x224 input)."""
    kw = dict(meta["model_kw"])
    widths = kw.get("widths") or VGG16_WIDTHS
    kw["widths"] = [max(1, w // 16) for w in widths]
    kw["fc_width"] = 64
    return dict(meta, model_kw=kw)


def _fns(meta, batch, size):
    model = export.build(meta)
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jax.random.normal(jax.random.key(0), (batch, size, size, 3), jnp.float32)
    labels = jnp.arange(batch) % meta["num_classes"]
    key = jax.random.key(1)

    def loss(p):
        with dropout_key(key):
            logits = nnx.merge(graphdef, p, rest)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    jit = functools.partial(jax.jit, compiler_options=ops.compiler_options())
    fwd = jit(loss)
    saved = jit(lambda p: jax.vjp(loss, p)[1])  # the pullback, holding the residuals
    bwd = jit(lambda pullback: pullback(jnp.ones((), jnp.float32)))

    def backward():
        """Time the backward alone; the residuals are made (untimed) and freed each call,
        so only one architecture's are in memory at a time."""
        pullback = jax.block_until_ready(saved(params))
        t0 = time.perf_counter()
        jax.block_until_ready(bwd(pullback))
        return time.perf_counter() - t0

    return (lambda: fwd(params)), backward


def _time(fn) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json-dir", default=None)
    ap.add_argument("--small", action="store_true")
    a = ap.parse_args(argv)
    batch, rounds = (2, 2) if a.small else (a.batch, a.rounds)
    archs = {}
    for arch, *_ in PAPER.values():
        if arch not in archs:
            meta = thinet.published_architecture(arch)
            archs[arch] = dict(meta=_small(meta) if a.small else meta)
    for d in archs.values():
        model = export.build(d["meta"])
        d["params"], d["flops"] = thinet.paper_counts(model, (224, 224, 3))
        del model
        fwd, bwd = _fns(d["meta"], batch, 224)
        jax.block_until_ready(fwd())  # compile
        bwd()
        d["fns"], d["f"], d["b"] = (fwd, bwd), [], []
    for _ in range(rounds):  # interleaved: each round times every architecture once
        for d in archs.values():
            d["f"].append(_time(d["fns"][0]))
            d["b"].append(d["fns"][1]())
    rows = []
    for row, (arch, p_m, f_b, pf, pb) in PAPER.items():
        d = archs[arch]
        rows.append(dict(
            row=row, arch=arch, params_M=round(d["params"] / 1e6, 2),
            FLOPs_B=round(d["flops"] / 1e9, 2), paper_params_M=p_m, paper_FLOPs_B=f_b,
            f_ms=1e3 * statistics.median(d["f"]), b_ms=1e3 * statistics.median(d["b"]),
            f_spread_ms=1e3 * (max(d["f"]) - min(d["f"])),
            b_spread_ms=1e3 * (max(d["b"]) - min(d["b"])), paper_f_ms=pf, paper_b_ms=pb))
    print(f"batch {batch}, 224x224, float32, {jax.devices()[0].platform}, median of {rounds} "
          f"interleaved rounds" + (" (--small: 1/16 widths)" if a.small else ""))
    print_table(rows, ["row", "params_M", "paper_params_M", "FLOPs_B", "paper_FLOPs_B", "f_ms",
                       "b_ms", "paper_f_ms", "paper_b_ms"])
    write_json(a.json_dir, "thinet_vgg", rows, batch=batch, rounds=rounds, small=a.small)
    return rows


if __name__ == "__main__":
    main()
