"""ThiNet channel selection + least squares: fsjax (jitted, Gram-based) vs the authors'
algorithm in NumPy (greedy removal scoring one candidate channel at a time over all m rows, in
float64, as their ``value_sum`` does), both in the same run.

    python -m benchmarks.thinet_select [--small] [--C 128,256,512] [--m 10000,100000]

The NumPy reference costs O(m C^2 (1-keep)) and is timed once per shape (it is slow); fsjax
is the median of several runs after compilation. Both select the same channels (checked).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import print_table, timeit, write_json
from fsjax import ops


def numpy_reference(x: np.ndarray, keep: int):
    """The ICCV'17 greedy selection as the paper states it and as the authors run it: the
    contributions held in float64, each candidate scored by the norm of the running sum plus
    its column over all m rows, then the kept channels' scales by the normal equations."""
    x = np.asarray(x, np.float64)
    c = x.shape[1]
    y = x.sum(1, keepdims=True)
    removed, s = [], np.zeros((x.shape[0], 1))
    for _ in range(c - keep):
        best, best_v = -1, np.inf
        for j in range(c):
            if j not in removed:
                v = np.linalg.norm(s + x[:, j:j + 1])
                if v < best_v:
                    best, best_v = j, v
        removed.append(best)
        s = s + x[:, best:best + 1]
    kept = np.array(sorted(set(range(c)) - set(removed)))
    xs = x[:, kept]
    w = np.linalg.inv(xs.T @ xs) @ (xs.T @ y)
    return kept, w[:, 0]


def fsjax_select(x, keep):
    kept = ops.select_channels(x, keep, "greedy")
    w = ops.least_squares_scale(x, x.sum(1), kept)
    return jax.block_until_ready(w), kept


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--C", default="128,256,512")
    ap.add_argument("--m", default="10000,100000")
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--no-reference", action="store_true", help="skip the slow NumPy runs")
    ap.add_argument("--json-dir", default=None)
    a = ap.parse_args(argv)
    if a.small:
        a.C, a.m = "16", "500"
    rows = []
    for c in map(int, a.C.split(",")):
        for m in map(int, a.m.split(",")):
            rng = np.random.default_rng(0)
            x = (rng.normal(size=(m, c)) * rng.uniform(0.1, 2, size=c)).astype(np.float32)
            keep = int(c * a.keep)
            xj = jnp.asarray(x)
            t_fs = timeit(lambda xj=xj, keep=keep: fsjax_select(xj, keep)[0], runs=5)
            row = dict(C=c, m=m, keep=keep, fsjax_s=t_fs)
            if not a.no_reference:
                t0 = time.perf_counter()
                kept_ref, _ = numpy_reference(x, keep)
                row["numpy_s"] = time.perf_counter() - t0
                row["speedup"] = row["numpy_s"] / t_fs
                row["same_selection"] = bool(np.array_equal(kept_ref,
                                                            fsjax_select(xj, keep)[1]))
            rows.append(row)
            print_table(rows[-1:], list(row))
    print_table(rows, list(rows[0]))
    write_json(a.json_dir, "thinet_select", rows, device=str(jax.devices()[0]))
    return rows


if __name__ == "__main__":
    main()
