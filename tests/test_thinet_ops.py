"""ThiNet selection and least squares against slow NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.thinet_criteria import contributions_like
from fsjax import ops


def ref_greedy(x, keep):
    """The authors' approach: score one candidate channel at a time over all rows."""
    c = x.shape[1]
    removed, s = [], np.zeros(x.shape[0])
    while len(removed) < c - keep:
        best, best_v = None, np.inf
        for j in range(c):
            if j in removed:
                continue
            v = float(np.sum((s + x[:, j]) ** 2))
            if v < best_v:
                best, best_v = j, v
        removed.append(best)
        s = s + x[:, best]
    return sorted(set(range(c)) - set(removed))


def ref_stepwise(x, keep):
    y = x.sum(1)
    sel = []
    for _ in range(keep):
        best, best_r = None, np.inf
        for j in range(x.shape[1]):
            if j in sel:
                continue
            cols = x[:, sel + [j]]
            w = np.linalg.lstsq(cols, y, rcond=None)[0]
            r = float(np.sum((y - cols @ w) ** 2))
            if r < best_r:
                best, best_r = j, r
        sel.append(best)
    return sorted(sel)


def ref_stepwise_authors(x, keep):
    """TPAMI'18 as the paper and the authors' release describe it: refit the selected channels
    by least squares, then add the channel whose *one-dimensional* fit of the residual leaves
    the smallest residual."""
    y = x.sum(1)
    sel, r = [], y.copy()
    for _ in range(keep):
        best, best_v = None, np.inf
        for j in range(x.shape[1]):
            if j in sel:
                continue
            xj = x[:, j]
            v = float(np.linalg.norm(r - (xj @ r) / (xj @ xj) * xj))
            if v < best_v:
                best, best_v = j, v
        sel.append(best)
        cols = x[:, sel]
        r = y - cols @ np.linalg.lstsq(cols, y, rcond=None)[0]
    return sorted(sel)


@pytest.mark.parametrize("kind", ["gaussian", "relu", "lowrank", "sparse"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stepwise_matches_authors_algorithm(kind, seed):
    x = contributions_like(kind, 2000, 32, seed)
    got = ops.select_channels(jnp.asarray(x, jnp.float32), 16, "stepwise")
    assert got.tolist() == ref_stepwise_authors(x, 16)


def _data(m=400, c=12, seed=0):
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.1, 2.0, size=c)
    return (rng.normal(size=(m, c)) * scales + 0.3 * rng.normal(size=(m, 1))).astype(np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("keep", [1, 4, 6, 11])
def test_greedy_matches_reference(seed, keep):
    x = _data(seed=seed)
    got = ops.select_channels(jnp.asarray(x, jnp.float32), keep, "greedy")
    assert got.tolist() == ref_greedy(x, keep)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("keep", [1, 3, 6])
def test_stepwise_exact_matches_reference(seed, keep):
    x = _data(seed=seed)
    got = ops.select_channels(jnp.asarray(x, jnp.float32), keep, "stepwise_exact")
    assert got.tolist() == ref_stepwise(x, keep)


def test_least_squares_matches_lstsq():
    x = _data(m=300, c=10, seed=3)
    y = x.sum(1) + np.random.default_rng(4).normal(size=300) * 0.1
    kept = np.array([0, 2, 3, 7, 9])
    w = ops.least_squares_scale(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), kept)
    want = np.linalg.lstsq(x[:, kept], y, rcond=None)[0]
    np.testing.assert_allclose(w, want, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("stride,padding", [(1, "SAME"), (2, "SAME"), (1, "VALID")])
def test_contributions_sum_to_conv_output(stride, padding):
    key = jax.random.key(0)
    x = jax.random.normal(key, (3, 9, 9, 5))
    k = jax.random.normal(jax.random.key(1), (3, 3, 5, 4))
    y = ops.conv(x, k, strides=stride, padding=padding)
    img, ys, xs, oc = ops.thinet.sample_positions(jax.random.key(2), 3, y.shape[1:3], 4, 7)
    xh = ops.contributions(x, k, img, ys, xs, oc, strides=(stride, stride), padding=padding,
                           chunk=5)
    np.testing.assert_allclose(xh.sum(1), y[img, ys, xs, oc], rtol=1e-4, atol=1e-4)


def test_errors():
    with pytest.raises(ValueError, match="keep must be in"):
        ops.select_channels(jnp.zeros((10, 4)), 5)
    with pytest.raises(ValueError, match="greedy, stepwise, stepwise_exact"):
        ops.select_channels(jnp.ones((10, 4)), 2, "lasso")
