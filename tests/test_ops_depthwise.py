"""The CPU form of depthwise convs (``fsjax.ops.depthwise``): same values and gradients as
XLA's grouped conv, against a NumPy loop and finite differences, and only in the CPU
program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fsjax import ops


def _x(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _np_depthwise(x, k, stride, dilation, pads):
    """A direct loop: ``y[n, o, p, c] = sum_ij xpad[n, o*s + i*d, p*s + j*d, c] k[i, j, 0, c]``."""
    x = np.pad(np.asarray(x, np.float64), [(0, 0), *pads, (0, 0)])
    kh, kw = k.shape[:2]
    oh = (x.shape[1] - (kh - 1) * dilation - 1) // stride + 1
    ow = (x.shape[2] - (kw - 1) * dilation - 1) // stride + 1
    y = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for o in range(oh):
        for p in range(ow):
            for i in range(kh):
                for j in range(kw):
                    y[:, o, p] += x[:, o * stride + i * dilation, p * stride + j * dilation] \
                        * np.asarray(k[i, j, 0], np.float64)
    return y


DEPTHWISE = [(1, 1, "SAME"), (2, 1, "SAME"), (2, 2, "VALID"), (1, 2, [(1, 2), (0, 3)]),
             (2, 1, "same_lower")]


@pytest.mark.parametrize("stride,dilation,padding", DEPTHWISE)
def test_depthwise_conv_matches_numpy_and_xla(stride, dilation, padding):
    x, k = _x((3, 9, 8, 5)), _x((3, 3, 1, 5), 1)
    f = lambda x, k: ops.conv(x, k, strides=stride, kernel_dilation=dilation, padding=padding,
                              feature_group_count=5)
    y = jax.jit(f)(x, k)
    eff = [2 * dilation + 1] * 2
    pads = padding if not isinstance(padding, str) else lax.padtype_to_pads(
        x.shape[1:3], eff, (stride, stride), padding.upper())
    np.testing.assert_allclose(y, _np_depthwise(x, k, stride, dilation, pads), atol=1e-5)
    loss = lambda x, k: jnp.sum(jnp.sin(f(x, k)))
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, k)
    with ops.cpu_forms():  # XLA's grouped conv and its own gradient
        ref = jax.jit(jax.grad(lambda x, k: loss(x, k), argnums=(0, 1)))(x, k)
    for a, b in zip(grads, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_depthwise_gradient_finite_differences():
    x, k = _x((2, 6, 6, 3)), _x((3, 3, 1, 3), 1)
    w = _x((2, 3, 3, 3), 2)
    loss = lambda x, k: jnp.sum(ops.conv(x, k, strides=2, padding="SAME",
                                         feature_group_count=3) * w)
    gx, gk = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, k)
    pads = lax.padtype_to_pads((6, 6), (3, 3), (2, 2), "SAME")
    np_loss = lambda x, k: float((_np_depthwise(x, k, 2, 1, pads) * np.asarray(w)).sum())
    xn, kn = np.asarray(x, np.float64), np.asarray(k, np.float64)
    h = 1e-3
    for arr, g, which in ((xn, gx, 0), (kn, gk, 1)):
        for idx in [(0, 1, 2, 0), (1, 5, 5, 2), (0, 0, 0, 1)] if which == 0 else \
                [(0, 0, 0, 0), (2, 1, 0, 2), (1, 1, 0, 1)]:
            up, down = arr.copy(), arr.copy()
            up[idx] += h
            down[idx] -= h
            args = lambda a, which=which: (a, kn) if which == 0 else (xn, a)
            fd = (np_loss(*args(up)) - np_loss(*args(down))) / (2 * h)
            np.testing.assert_allclose(g[idx], fd, rtol=1e-3, atol=1e-4)


def test_depthwise_slices_only_where_they_apply():
    """The CPU program of a depthwise conv has no grouped convolution; a GPU program, a conv
    with channel multiplier 2 and a bfloat16 conv keep XLA's conv."""
    x, k = _x((2, 8, 8, 4)), _x((3, 3, 1, 4), 1)
    f = jax.jit(lambda x, k: ops.conv(x, k, feature_group_count=4))
    for plat, conv in (("cuda", True), ("cpu", False)):
        text = f.trace(x, k).lower(lowering_platforms=(plat,)).as_text()
        assert ("stablehlo.convolution" in text) == conv, plat
    k2 = _x((3, 3, 1, 8), 1)
    assert "convolution" in jax.jit(lambda x, k: ops.conv(x, k, feature_group_count=4)) \
        .lower(x, k2).as_text()
    assert "convolution" in f.lower(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16)).as_text()
