"""1-D and 3-D FS / DFS / KS math against slow NumPy loops and finite differences.

The FS layout for any rank: a filter is ``K = prod(kernel_size) * cin`` consecutive summary
entries, input channel slowest, then the spatial dims in order."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from fsjax import ops

SHAPES = [(5, 3, 4), (3, 2, 3, 2, 5), (1, 6, 7), (2, 2, 2, 3, 4)]  # (*kernel_size, cin, cout)


def _taps(shape):
    """(spatial index tuple, c, t) for every tap of a filter, t as in the documented layout."""
    *ks, cin, _ = shape
    for c in range(cin):
        for t_sp, pos in enumerate(itertools.product(*[range(k) for k in ks])):
            yield pos, c, c * math.prod(ks) + t_sp


def ref_fs_kernel(fs, shape, offsets):
    out = np.zeros(shape, np.float64)
    for i in range(shape[-1]):
        for pos, c, t in _taps(shape):
            out[pos + (c, i)] = fs[(offsets[i] + t) % len(fs)]
    return out


def ref_dfs_kernel(fs, shape, loc):
    out = np.zeros(shape, np.float64)
    for i in range(shape[-1]):
        s = math.floor(loc[i])
        f = loc[i] - s
        for pos, c, t in _taps(shape):
            out[pos + (c, i)] = (1 - f) * fs[(s + t) % len(fs)] + f * fs[(s + t + 1) % len(fs)]
    return out


def ref_conv_valid(x, k, strides):
    """Naive N-D VALID cross-correlation: x (N, *spatial, cin), k (*ks, cin, cout)."""
    ks, n = k.shape[:-2], x.shape[0]
    out_sp = [(s - kk) // st + 1 for s, kk, st in zip(x.shape[1:-1], ks, strides, strict=True)]
    y = np.zeros((n, *out_sp, k.shape[-1]))
    for b in range(n):
        for o in itertools.product(*[range(s) for s in out_sp]):
            sl = tuple(slice(oo * st, oo * st + kk) for oo, st, kk in zip(o, strides, ks, strict=True))
            y[(b, *o)] = np.tensordot(x[(b, *sl)], k, axes=len(ks) + 1)
    return y


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rho", [1.0, 2.5, 8.0])
def test_fs_and_dfs_kernels(shape, rho):
    L = ops.fs_length(shape, rho)
    assert L == max(math.prod(shape[:-1]), math.floor(math.prod(shape) / rho))
    off = ops.fs_offsets(shape, L)
    fs = np.random.default_rng(0).normal(size=L).astype(np.float32)
    np.testing.assert_array_equal(ops.fs_kernel(jnp.asarray(fs), shape, off),
                                  ref_fs_kernel(fs, shape, off).astype(np.float32))
    loc = np.random.default_rng(1).uniform(-L, 2 * L, shape[-1]).astype(np.float32)
    np.testing.assert_allclose(ops.dfs_kernel(jnp.asarray(fs), shape, jnp.asarray(loc)),
                               ref_dfs_kernel(fs, shape, loc), rtol=1e-5, atol=1e-5)
    # least-squares projection is the mean of the weights mapped to each entry
    k = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    idx = np.asarray(ops.fs_index(shape, L, off)).reshape(-1)
    want = np.bincount(idx, k.reshape(-1), L) / np.maximum(np.bincount(idx, minlength=L), 1)
    np.testing.assert_allclose(ops.fs_project(jnp.asarray(k), L, off), want, rtol=1e-5, atol=1e-6)


def test_2d_layout_is_the_rank_2_case():
    # the 2-D formula fs[(off + c*kh*kw + ky*kw + kx) mod L] is the general one at rank 2
    two = (3, 4, 2, 5)
    L = ops.fs_length(two, 2.0)
    t = ops.fs_taps(*two[:-1])
    ky, kx, c = np.meshgrid(range(3), range(4), range(2), indexing="ij")
    assert np.array_equal(t, c * 12 + ky * 4 + kx) and L == 60


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_fs_conv_and_grads(shape):
    rank = len(shape) - 2
    L = ops.fs_length(shape, 3.0)
    off = ops.fs_offsets(shape, L)
    fs = jax.random.normal(jax.random.key(0), (L,))
    x = jax.random.normal(jax.random.key(1), (2,) + (6,) * rank + (shape[-2],))
    strides = (2,) + (1,) * (rank - 1)
    y = ops.conv(x, ops.fs_kernel(fs, shape, off), strides=strides, padding="VALID")
    want = ref_conv_valid(np.asarray(x, np.float64), ref_fs_kernel(np.asarray(fs), shape, off),
                          strides)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    loc = jnp.asarray(off, jnp.float32) + 0.3
    check_grads(lambda f, lo: ops.conv(x, ops.dfs_kernel(f, shape, lo), padding="SAME"),
                (fs, loc), order=1, modes=["rev"], atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize("alpha_mode", [None, "input", "pair"])
@pytest.mark.parametrize("fgc", [1, 2])
def test_ks_any_rank(shape, alpha_mode, fgc):
    *ks, _, cout = shape
    cin, groups = 8, 4  # g = 2 channels per group
    kernel = jax.random.normal(jax.random.key(0), (*ks, groups // fgc, 2 * cout))
    alpha = {None: None, "input": jax.random.normal(jax.random.key(1), (cin,)),
             "pair": jax.random.normal(jax.random.key(1), (cin // fgc, 2 * cout))}[alpha_mode]
    dense = ops.ks_dense_kernel(kernel, alpha, cin, fgc)
    # reference: global input channel of (local c, output o), its group's kernel, its alpha
    k_np, want = np.asarray(kernel), np.zeros((*ks, cin // fgc, 2 * cout))
    per_out = 2 * cout // fgc
    for c, o in itertools.product(range(cin // fgc), range(2 * cout)):
        gc = (o // per_out) * (cin // fgc) + c
        a = 1.0 if alpha is None else float(alpha[gc] if alpha.ndim == 1 else alpha[c, o])
        want[..., c, o] = a * k_np[..., c // 2, o]
    np.testing.assert_allclose(dense, want, rtol=1e-6)
    x = jax.random.normal(jax.random.key(2), (2,) + (5,) * len(ks) + (cin,))
    y = ops.ks_conv(x, kernel, alpha, feature_group_count=fgc, padding="SAME")
    np.testing.assert_allclose(y, ops.conv(x, dense, feature_group_count=fgc, padding="SAME"),
                               rtol=1e-4, atol=1e-4)
    if alpha is not None:
        check_grads(lambda k, a: ops.ks_conv(x, k, a, feature_group_count=fgc), (kernel, alpha),
                    order=1, modes=["rev"], atol=2e-2, rtol=2e-2)
    p = ops.ks_project(dense, groups, fgc)
    assert p.shape == kernel.shape
    if alpha is None:
        np.testing.assert_allclose(p, kernel, rtol=1e-6)


def test_from_dense_init_keeps_values():
    shape = (3, 2, 3, 4)
    for rho in (1.0, 3.0):
        L = ops.fs_length(shape, rho)
        off = ops.fs_offsets(shape, L)
        k = jax.random.normal(jax.random.key(0), shape)
        fs = ops.fs_from_dense(k, L, off)
        idx = np.asarray(ops.fs_index(shape, L, off)).reshape(-1)
        first = {}
        for p, j in enumerate(idx):
            first.setdefault(int(j), p)
        np.testing.assert_array_equal(fs, [np.asarray(k).reshape(-1)[first[j]] for j in range(L)])
        if rho == 1.0:
            np.testing.assert_array_equal(ops.fs_kernel(fs, shape, off), k)


def _official_ref(shape, rho):
    """The published formula, step by step (as in the official Conv2d_dws, with float32 for
    torch.Tensor): OIHW filters read from the doubled summary."""
    kh, kw, cin, cout = shape
    total = cout * kh * kw * cin
    R = int(total / rho)
    step = R / (cout - 1)
    K = kh * kw * cin
    ids0 = np.arange(K, dtype=np.float32)
    ids = np.concatenate([ids0 + np.float32(c * step) for c in range(cout)]).astype(np.int64)
    doubled_pos = ids.reshape(cout, cin, kh, kw) % R  # entry of fs read by weight [o, c, y, x]
    return R, doubled_pos.transpose(2, 3, 1, 0)


@pytest.mark.parametrize("shape,rho", [((3, 3, 16, 32), 4.0), ((3, 3, 512, 512), 1.0),
                                       ((3, 3, 512, 512), 4.0), ((1, 1, 64, 256), 2.0)])
def test_official_layout_matches_published_formula(shape, rho):
    R, want = _official_ref(shape, rho)
    assert R == ops.fs_length(shape, rho)
    got = ops.fs_official_index(shape, R)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(got[..., -1], got[..., 0])  # the last filter starts where the first does
    # the layers' in-graph index (float32 adds under jit) gives the same integers
    kernel = jax.jit(lambda f: ops.fs_official_kernel(f, shape))(jnp.arange(R, dtype=jnp.float32))
    np.testing.assert_array_equal(np.asarray(kernel).astype(np.int64), want)
