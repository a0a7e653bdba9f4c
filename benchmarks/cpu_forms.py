"""What each of fsjax's CPU-only program forms (``fsjax.ops.CPU_FORMS``) is worth, per op and
per training step: the same function compiled with the form and without it (XLA's own op),
in one process, interleaved, median of ``--rounds``.

    python -m benchmarks.cpu_forms [--rounds 15] [--steps darts3x8,darts5x16,fast3x16,resnet20]
        [--batch 128] [--skip-ops] [--only-form FORM] [--small] [--json-dir DIR]

Op rows: forward, and forward + gradient of ``sum(y * w)`` with respect to every input
(float32), of a 3x3 depthwise conv (``depthwise_slices``), a 1x1 conv (``pointwise_dot``),
DARTS's 3x3 max-pools (``pool_windows``) and the fast network's training BatchNorm + GELU
(``bn_sums``). Step rows: the trainer's jitted training step (``--batch``, augmentation off)
with all forms against none; ``darts<cells>x<channels>`` is the ResNet-8 table's derived
genotype (``benchmarks/records/cifar_table/nas-search.json``), ``fast<cells>x<channels>`` the
fast table's seed-1 search (``benchmarks/records/cifar_fast/nas-search-s1.json``, the network
``configs/cifar10/fast.py:darts,...`` trains at 3 x 16), FS rho=4.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import print_table, train_state, write_json
from fsjax import ops
from fsjax.models.layers import max_pool

RECORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "records")
GENOTYPES = {"darts": os.path.join(RECORDS, "cifar_table", "nas-search.json"),
             "fast": os.path.join(RECORDS, "cifar_fast", "nas-search-s1.json")}


def _compiled(fn, args, forms):
    with ops.cpu_forms(*forms):  # a new function object: jit caches traces per function,
        return jax.jit(lambda *a: fn(*a), compiler_options=ops.compiler_options()).lower(
            *args).compile()  # not per context


def _time(fns: dict, args, rounds: int) -> dict:
    for f in fns.values():
        jax.block_until_ready(f(*args))
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _ops(B: int):
    """(name, form, fn(*args) -> y, args)"""
    rng = np.random.default_rng(0)
    a = lambda *s: jnp.asarray(rng.normal(size=s).astype(np.float32))
    out = []
    for h, c, s, d in ((32, 16, 1, 1), (32, 16, 2, 1), (16, 32, 1, 2), (8, 64, 1, 1)):
        f = lambda x, k, s=s, d=d: ops.conv(x, k, strides=s, kernel_dilation=d,
                                            feature_group_count=x.shape[-1])
        out.append((f"depthwise 3x3 {B}x{h}x{h}x{c} stride {s} dilation {d}",
                    "depthwise_slices", f, (a(B, h, h, c), a(3, 3, 1, c))))
    for h, cin, cout in ((32, 64, 16), (32, 16, 16), (16, 128, 32)):  # DARTS's 1x1 convs
        out.append((f"1x1 conv {B}x{h}x{h}x{cin} -> {cout}", "pointwise_dot", ops.conv,
                    (a(B, h, h, cin), a(1, 1, cin, cout))))
    for h, c, s in ((32, 16, 1), (32, 16, 2), (16, 32, 1)):  # DARTS's max_pool_3x3
        out.append((f"max-pool 3x3 SAME {B}x{h}x{h}x{c} stride {s}", "pool_windows",
                    lambda x, s=s: max_pool(x, (3, 3), (s, s), "SAME"), (a(B, h, h, c),)))
    bn = lambda x, b: jax.nn.gelu(ops.batch_norm_train(x, None, b)[0], approximate=False)
    for h, c in ((16, 64), (8, 256), (4, 256)):  # the fast network's BatchNorms (no scale)
        out.append((f"BatchNorm (training) + GELU {B}x{h}x{h}x{c}", "bn_sums", bn,
                    (a(B, h, h, c), a(c))))
    return out


def op_rows(rounds: int, batch: int, only_form: str | None = None) -> list[dict]:
    rows = []
    for name, form, f, args in _ops(batch):
        if only_form and form != only_form:
            continue
        others = [x for x in ops.CPU_FORMS if x != form]
        w = jax.random.normal(jax.random.key(1), jax.eval_shape(f, *args).shape)
        g = lambda *a, f=f, w=w: jax.grad(lambda *a: jnp.sum(f(*a) * w), range(len(a)))(*a)
        for what, fn in (("forward", f), ("forward + gradient", g)):
            t = _time({"with": _compiled(fn, args, ops.CPU_FORMS),
                       "without": _compiled(fn, args, others)}, args, rounds)
            rows.append(dict(what=f"{name}, {what}", form=form, with_ms=t["with"] * 1e3,
                             without_ms=t["without"] * 1e3, speedup=t["without"] / t["with"]))
            print_table(rows[-1:], list(rows[-1]))
    return rows


def _step(name: str, B: int):
    from configs.variants import apply_variant
    from train import configlib

    c = configlib.base()
    kind = next((k for k in GENOTYPES if name.startswith(k)), None)
    if kind:
        cells, channels = map(int, name[len(kind):].split("x"))
        with open(GENOTYPES[kind]) as f:
            c.model_kw.genotype = json.load(f)["genotype"]["genotype"]
        c.model = "darts_eval"
        c.model_kw.cells, c.model_kw.channels = cells, channels
        c.model_kw.auxiliary, c.model_kw.drop_path = False, 0.0
        apply_variant(c, "fs4")
    else:
        c.model = name
    c.augment.flip, c.augment.crop_padding, c.augment.cutout = False, 0, 0
    _, ts, step = train_state(c)
    x = jax.random.randint(jax.random.key(0), (B, 32, 32, 3), 0, 256).astype(jnp.uint8)
    return step, (ts, x, jnp.arange(B) % 10, jax.random.key(1))


def step_rows(names: list[str], rounds: int, B: int) -> list[dict]:
    rows = []
    for name in names:
        step, args = _step(name, B)
        t = _time({"with": _compiled(step, args, ops.CPU_FORMS),
                   "without": _compiled(step, args, ())}, args, rounds)
        rows.append(dict(what=f"{name} training step b{B}", form="all",
                         with_ms=t["with"] * 1e3, without_ms=t["without"] * 1e3,
                         speedup=t["without"] / t["with"], img_s_with=B / t["with"],
                         img_s_without=B / t["without"]))
        print_table(rows[-1:], list(rows[-1]))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", default="darts3x8,darts5x16,fast3x16,resnet20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--skip-ops", action="store_true")
    ap.add_argument("--only-form", choices=ops.CPU_FORMS, help="op rows of this form only")
    ap.add_argument("--small", action="store_true", help="batch 4, 2 rounds, the 3x8 DARTS step")
    ap.add_argument("--json-dir")
    a = ap.parse_args(argv)
    if a.small:
        a.batch, a.rounds, a.steps = 4, 2, "darts3x8"
    rows = [] if a.skip_ops else op_rows(a.rounds, a.batch, a.only_form)
    rows += step_rows([s for s in a.steps.split(",") if s], max(2, a.rounds // 3), a.batch)
    print()
    print_table(rows, ["what", "form", "with_ms", "without_ms", "speedup"])
    write_json(a.json_dir, "cpu_forms", rows, rounds=a.rounds, batch=a.batch)
    return rows


if __name__ == "__main__":
    main()
