"""Kernel-sharing ops against NumPy loops and the dense conv."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from fsjax import ops


def ref_dense(kernel, alpha, cin):
    kh, kw, groups, cout = kernel.shape
    g = cin // groups
    out = np.zeros((kh, kw, cin, cout))
    for c in range(cin):
        for o in range(cout):
            a = 1.0 if alpha is None else (alpha[c] if alpha.ndim == 1 else alpha[c, o])
            out[:, :, c, o] = a * kernel[:, :, c // g, o]
    return out


@pytest.mark.parametrize("alpha_shape", [None, (8,), (8, 5)])
def test_dense_kernel_and_conv(alpha_shape):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 2, 5)).astype(np.float32)
    alpha = None if alpha_shape is None else rng.normal(size=alpha_shape).astype(np.float32)
    dense = ops.ks_dense_kernel(jnp.asarray(kernel), None if alpha is None else jnp.asarray(alpha),
                                cin=8)
    np.testing.assert_allclose(dense, ref_dense(kernel, alpha, 8), rtol=1e-6)
    x = jnp.asarray(rng.normal(size=(2, 7, 7, 8)), jnp.float32)
    y = ops.ks_conv(x, jnp.asarray(kernel), None if alpha is None else jnp.asarray(alpha),
                    strides=(2, 2), padding="SAME")
    np.testing.assert_allclose(y, ops.conv(x, dense, strides=2), rtol=1e-4, atol=1e-4)


def test_grads():
    k = jax.random.normal(jax.random.key(0), (3, 3, 2, 3))
    a = jax.random.normal(jax.random.key(1), (6,))
    x = jax.random.normal(jax.random.key(2), (1, 5, 5, 6))
    check_grads(lambda k, a: ops.ks_conv(x, k, a), (k, a), order=1, modes=["rev"], atol=1e-2,
                rtol=1e-2)


def test_project_is_group_mean():
    k = jax.random.normal(jax.random.key(0), (3, 3, 8, 4))
    p = ops.ks_project(k, 2)
    np.testing.assert_allclose(p[:, :, 1], k[:, :, 4:].mean(2), rtol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="not divisible by groups 3"):
        ops.ks_check(8, 3)
    with pytest.raises(ValueError, match="alpha must be"):
        ops.ks_dense_kernel(jnp.zeros((3, 3, 2, 4)), jnp.zeros((8, 3)))
