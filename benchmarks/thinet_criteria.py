"""ThiNet selection criteria side by side: greedy (ICCV'17), stepwise as the authors wrote it
(TPAMI'18) and fsjax's exact stepwise - relative reconstruction error after the final least
squares refit, and how often the two stepwise variants pick the same channels.

    python -m benchmarks.thinet_criteria [--m 5000] [--C 64] [--seeds 10]

Result (2026-11-25): docs/thinet.md.
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

from benchmarks.common import print_table, write_json
from fsjax import ops
from fsjax.ops.thinet import METHODS

KINDS = ("gaussian", "relu", "lowrank", "sparse")


def contributions_like(kind: str, m: int, c: int, seed: int) -> np.ndarray:
    """``(m, c)`` float64 data of four kinds: correlated Gaussian, ReLU-like non-negative, low
    rank plus noise, heavy-tailed sparse."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.normal(size=(m, c)) * rng.uniform(0.1, 2.0, size=c) + 0.3 * rng.normal(
            size=(m, 1))
    if kind == "relu":
        return np.maximum(rng.normal(size=(m, c)) + 0.2 * rng.normal(size=(m, 1)), 0) * \
            rng.uniform(0.2, 2, size=c)
    if kind == "lowrank":
        return rng.normal(size=(m, 4)) @ rng.normal(size=(4, c)) + 0.3 * rng.normal(size=(m, c))
    if kind == "sparse":
        return rng.standard_t(2, size=(m, c)) * (rng.uniform(size=(m, c)) < 0.3)
    raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")


def relative_error(x: np.ndarray, kept) -> float:
    y = x.sum(1)
    cols = x[:, kept]
    r = y - cols @ np.linalg.lstsq(cols, y, rcond=None)[0]
    return float(np.linalg.norm(r) / np.linalg.norm(y))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=5000)
    ap.add_argument("--C", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--json-dir", default=None)
    a = ap.parse_args(argv)
    rows = []
    for kind in KINDS:
        errs, same = {k: [] for k in METHODS}, 0
        for seed in range(a.seeds):
            x = contributions_like(kind, a.m, a.C, seed)
            sel = {k: ops.select_channels(jnp.asarray(x, jnp.float32), a.C // 2, k)
                   for k in METHODS}
            for k in METHODS:
                errs[k].append(relative_error(x, sel[k]))
            same += sel["stepwise"].tolist() == sel["stepwise_exact"].tolist()
        rows.append(dict(data=kind, **{k: float(np.mean(v)) for k, v in errs.items()},
                         same_stepwise=f"{same}/{a.seeds}"))
    print_table(rows, list(rows[0]))
    write_json(a.json_dir, "thinet_criteria", rows)
    return rows


if __name__ == "__main__":
    main()
