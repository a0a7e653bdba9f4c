"""fsjax.ops FS/DFS math against slow NumPy loops and finite differences."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from fsjax import ops


def ref_fs_kernel(fs, shape, offsets):
    kh, kw, cin, cout = shape
    L = len(fs)
    out = np.zeros(shape, fs.dtype)
    for i in range(cout):
        for c in range(cin):
            for ky in range(kh):
                for kx in range(kw):
                    out[ky, kx, c, i] = fs[(offsets[i] + c * kh * kw + ky * kw + kx) % L]
    return out


def ref_dfs_kernel(fs, shape, loc):
    kh, kw, cin, cout = shape
    L = len(fs)
    out = np.zeros(shape, np.float64)
    for i in range(cout):
        s = math.floor(loc[i])
        f = loc[i] - s
        for c in range(cin):
            for ky in range(kh):
                for kx in range(kw):
                    t = c * kh * kw + ky * kw + kx
                    out[ky, kx, c, i] = (1 - f) * fs[(s + t) % L] + f * fs[(s + t + 1) % L]
    return out


SHAPES = [(3, 3, 4, 8), (1, 1, 16, 32), (3, 3, 3, 16), (5, 3, 2, 7), (3, 3, 1, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rho", [1.0, 1.1, 2.0, 4.0, 16.0, 1000.0])
def test_length_and_offsets(shape, rho):
    kh, kw, cin, cout = shape
    K = kh * kw * cin
    L = ops.fs_length(shape, rho)
    assert L == max(K, math.floor(K * cout / rho))
    off = ops.fs_offsets(shape, L)
    assert off.dtype == np.int32 and off.shape == (cout,)
    assert [int(o) for o in off] == [(i * L) // cout for i in range(cout)]
    assert np.all(np.diff(off) >= 0) and off[-1] < L


def test_offsets_exact_for_large_layers():
    # float32 division (the published code) breaks here; exact integers must not.
    shape = (3, 3, 2048, 2048)
    L = ops.fs_length(shape, 1.0)
    off = ops.fs_offsets(shape, L)
    assert np.array_equal(np.diff(off), np.full(2047, 9 * 2048))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rho", [1.0, 3.0, 8.0])
def test_fs_kernel_matches_reference(shape, rho):
    L = ops.fs_length(shape, rho)
    off = ops.fs_offsets(shape, L)
    fs = np.random.default_rng(0).normal(size=L).astype(np.float32)
    got = np.asarray(ops.fs_kernel(jnp.asarray(fs), shape, off))
    np.testing.assert_array_equal(got, ref_fs_kernel(fs, shape, off))


@pytest.mark.parametrize("shape", SHAPES)
def test_compression_one_is_bijection(shape):
    L = ops.fs_length(shape, 1.0)
    assert L == int(np.prod(shape))
    idx = np.asarray(ops.fs_index(shape, L, ops.fs_offsets(shape, L)))
    assert sorted(idx.reshape(-1).tolist()) == list(range(L))


@pytest.mark.parametrize("shape,rho", [((3, 3, 4, 8), 3.0), ((1, 1, 6, 10), 2.5),
                                        ((3, 3, 2, 4), 1.0)])
def test_fs_project_is_least_squares(shape, rho):
    L = ops.fs_length(shape, rho)
    off = ops.fs_offsets(shape, L)
    k = np.random.default_rng(1).normal(size=shape)
    # least squares via the explicit linear map fs -> kernel
    A = np.zeros((int(np.prod(shape)), L))
    for j in range(L):
        e = np.zeros(L)
        e[j] = 1
        A[:, j] = ref_fs_kernel(e, shape, off).reshape(-1)
    want = np.linalg.lstsq(A, k.reshape(-1), rcond=None)[0]
    got = np.asarray(ops.fs_project(jnp.asarray(k, jnp.float32), L, off))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if rho == 1.0:
        np.testing.assert_allclose(ops.fs_kernel(jnp.asarray(got), shape, off), k, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_dfs_kernel_matches_reference(shape):
    L = ops.fs_length(shape, 2.0)
    rng = np.random.default_rng(2)
    fs = rng.normal(size=L)
    loc = rng.uniform(-L, 2 * L, size=shape[3])  # wraps
    got = np.asarray(ops.dfs_kernel(jnp.asarray(fs, jnp.float32), shape,
                                    jnp.asarray(loc, jnp.float32)))
    np.testing.assert_allclose(got, ref_dfs_kernel(fs, shape, loc.astype(np.float32)),
                               rtol=1e-4, atol=1e-4)


def test_dfs_equals_fs_at_integers():
    shape = (3, 3, 4, 8)
    L = ops.fs_length(shape, 4.0)
    off = ops.fs_offsets(shape, L)
    fs = jax.random.normal(jax.random.key(0), (L,))
    np.testing.assert_array_equal(ops.dfs_kernel(fs, shape, jnp.asarray(off, jnp.float32)),
                                  ops.fs_kernel(fs, shape, off))


def test_fs_kernel_gradients():
    shape = (3, 3, 2, 4)
    L = ops.fs_length(shape, 2.0)
    off = ops.fs_offsets(shape, L)
    fs = jax.random.normal(jax.random.key(0), (L,))
    check_grads(lambda f: ops.fs_kernel(f, shape, off), (fs,), order=2, modes=["rev", "fwd"])


@pytest.mark.parametrize("mode", ["wrap", "sigmoid"])
def test_dfs_gradients_match_finite_differences(mode):
    shape = (3, 3, 2, 4)
    L = ops.fs_length(shape, 2.0)
    fs = jax.random.normal(jax.random.key(0), (L,), jnp.float64 if jax.config.x64_enabled
                           else jnp.float32)
    raw = jnp.asarray(ops.dfs_init_raw(ops.fs_offsets(shape, L), L, mode)) + 0.37
    w = jax.random.normal(jax.random.key(1), shape)

    def loss(fs, raw):
        loc = ops.dfs_locations(raw, L, mode)
        return jnp.sum(w * ops.dfs_kernel(fs, shape, loc))

    g_fs, g_raw = jax.grad(loss, argnums=(0, 1))(fs, raw)
    eps = 1e-2
    for i in range(shape[3]):
        e = jnp.zeros_like(raw).at[i].set(eps)
        fd = (loss(fs, raw + e) - loss(fs, raw - e)) / (2 * eps)
        np.testing.assert_allclose(g_raw[i], fd, rtol=2e-2, atol=2e-3)
    for j in [0, 5, L - 1]:
        e = jnp.zeros_like(fs).at[j].set(eps)
        fd = (loss(fs + e, raw) - loss(fs - e, raw)) / (2 * eps)
        np.testing.assert_allclose(g_fs[j], fd, rtol=1e-2, atol=1e-3)
    assert float(jnp.abs(g_raw).sum()) > 0


@pytest.mark.parametrize("bad", [0, -1, 0.5, float("nan"), "4"])
def test_bad_compression(bad):
    with pytest.raises(ValueError, match="compression"):
        ops.fs_length((3, 3, 4, 8), bad)


def test_bad_shapes():
    with pytest.raises(ValueError, match="kernel_shape"):
        ops.fs_length((4, 8), 2.0)
    with pytest.raises(ValueError, match="offsets"):
        ops.fs_kernel(jnp.zeros(72), (3, 3, 4, 8), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="shorter than a filter"):
        ops.fs_kernel(jnp.zeros(10), (3, 3, 4, 8), np.zeros(8, np.int32))
    with pytest.raises(ValueError, match="location mode"):
        ops.dfs_locations(jnp.zeros(3), 10, "tanh")
