"""Deployed inference on this CPU: fsjax (jitted, the model as trained), fsjax running the
inference form the files hold (``fsjax_inf``: FS materialised, BatchNorm folded, no training
barrier), onnxruntime float32 and onnxruntime int8 (QDQ), at batch 1 and 64, with file sizes.

    python -m benchmarks.deploy_latency [--small] [--threads 2] [--json-dir DIR]

Models: CIFAR ResNet-20 dense, FS rho=4 (materialised in the ONNX file), WKSC g=4 and a
ThiNet-50% ResNet-20 (every block's inner conv at half width). Weights are random (latency
does not depend on them); int8 activation ranges come from 256 random normalised images.
Compilation and session creation excluded; rounds interleaved across the three runtimes;
median of the rounds. Needs the deploy extra (``pip install -e .[deploy]``).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import print_table, write_json
from fsjax import deploy, export, models, ops, quant


def variants(small: bool):
    kw = dict(depth=8, widths=(8, 8, 16)) if small else {}
    n = (kw.get("depth", 20) - 2) // 6  # blocks per stage
    half = tuple((w // 2,) for w in kw.get("widths", (16, 32, 64)) for _ in range(n))
    out = [("dense", "dense", kw), ("fs rho=4", "fs", kw),
           ("wksc g=4", models.ConvFactory(kind="wks", group_size=4), kw),
           ("thinet 50%", "dense", dict(kw, mid_widths=half))]
    return out[::2] if small else out  # --small (the smoke test): dense and WKSC


def _time(fn, runs):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _inference_forward(graphdef, state, x):
    with ops.inference_trace():  # traced without the training-only CPU barrier
        return nnx.merge(graphdef, state)(x)


def _runners(fwd, state, ifwd, istate, xj, s32, s8, x):
    return {"fsjax": lambda: jax.block_until_ready(fwd(state, xj)),
            "fsjax_inf": lambda: jax.block_until_ready(ifwd(istate, xj)),
            "ort": lambda: s32.run(None, {"images": x}),
            "ort_int8": lambda: s8.run(None, {"images": x})}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--json-dir", default=None)
    a = ap.parse_args(argv)
    deploy.require()
    batches = (1,) if a.small else (1, 64)
    rounds = a.rounds or (1 if a.small else 15)
    rs = np.random.RandomState(0)
    cal = rs.randn(16 if a.small else 256, 32, 32, 3).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, conv, kw in variants(a.small):
            m = models.create("resnet20", conv=conv, **kw)
            m.eval()
            fx = os.path.join(d, "m")
            npz, _ = export.save(fx, m, dict(model="resnet20", model_kw=kw, num_classes=10))
            f32, i8 = os.path.join(d, "m.onnx"), os.path.join(d, "m.int8.onnx")
            deploy.export_onnx(m, (32, 32, 3), f32)
            qm = nnx.clone(m)
            quant.quantize_model(qm, quant.QuantConfig(bits=8, per_channel=True))
            deploy.export_onnx(qm, (32, 32, 3), i8, int8=True, calibration=cal)
            s32 = deploy.onnx_session(f32, a.threads)
            s8 = deploy.onnx_session(i8, a.threads)
            graphdef, state = nnx.split(m)
            fwd = jax.jit(lambda s, x, g=graphdef: nnx.merge(g, s)(x),
                          compiler_options=ops.compiler_options())
            im, _ = deploy.inference_model(m)  # what the files hold, run by fsjax
            igraph, istate = nnx.split(im)
            ifwd = jax.jit(functools.partial(_inference_forward, igraph),
                           compiler_options=ops.compiler_options())
            row = dict(model=name, fsjax_npz_kb=os.path.getsize(npz) / 1024,
                       onnx_kb=os.path.getsize(f32) / 1024, onnx_int8_kb=os.path.getsize(i8) / 1024)
            for b in batches:
                x = rs.randn(b, 32, 32, 3).astype(np.float32)
                xj = jnp.asarray(x)
                runs = _runners(fwd, state, ifwd, istate, xj, s32, s8, x)
                for f in runs.values():  # warm up: compile, first-run allocations
                    _time(f, 3)
                times = {k: [] for k in runs}
                per = 2 if a.small else (20 if b == 1 else 3)
                for _ in range(rounds):
                    for k, f in runs.items():
                        times[k].append(statistics.median(_time(f, per)))
                for k in runs:
                    row[f"{k}_b{b}_ms"] = 1e3 * statistics.median(times[k])
                row[f"int8_speedup_b{b}"] = row[f"ort_b{b}_ms"] / row[f"ort_int8_b{b}_ms"]
            rows.append(row)
    cols = ["model", *[f"{k}_b{b}_ms" for b in batches
                       for k in ("fsjax", "fsjax_inf", "ort", "ort_int8")],
            "fsjax_npz_kb", "onnx_kb", "onnx_int8_kb"]
    print_table(rows, cols)
    write_json(a.json_dir, "deploy_latency", rows, threads=a.threads, rounds=rounds)
    return rows


if __name__ == "__main__":
    main()
