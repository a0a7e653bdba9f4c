"""Depthwise 2-D convolution (one filter per input channel, channel multiplier 1) as
multiply-adds of strided slices: the CPU form of :func:`fsjax.ops.conv` for such convs.

XLA:CPU runs a grouped convolution with ``feature_group_count == channels`` 15-30x slower
than its arithmetic needs, forward and input gradient (docs/performance.md, "Depthwise convs
as slices"); its weight gradient as one grouped conv is fast enough but the one XLA derives
from the slice form (nine reductions) is not. So the form has its own gradient: the input
gradient is the transpose of the slices (pads and adds), the kernel gradient one
per-channel dot product of each tap's input slice with the output gradient (summed as a
vector-matrix product, which XLA:CPU runs without transposing).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fsjax.ops.norm import channel_sums

__all__ = ["depthwise_slices", "is_depthwise"]

_MAX_TAPS = 49  # up to 7x7 kernels


def is_depthwise(x_shape, kernel_shape, feature_group_count: int, input_dilation) -> bool:
    """Whether a 2-D NHWC conv of ``x_shape`` with an HWIO ``kernel_shape`` is depthwise with
    channel multiplier 1 (and no input dilation), the case :func:`depthwise_slices` computes."""
    c = x_shape[-1]
    return (len(kernel_shape) == 4 and len(x_shape) == 4 and c > 1 and feature_group_count == c
            and tuple(kernel_shape[2:]) == (1, c) and tuple(input_dilation) == (1, 1)
            and kernel_shape[0] * kernel_shape[1] <= _MAX_TAPS)


def _taps(xp, kernel_size, strides, dilation, out):
    """Per kernel tap ``(i, j)``: the input slice it multiplies, ``(N, *out, C)``."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i * dh: i * dh + (out[0] - 1) * sh + 1: sh,
                           j * dw: j * dw + (out[1] - 1) * sw + 1: sw]


def _geometry(x, kernel, strides, dilation, pads):
    xp = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    out = [(xp.shape[1 + d] - (kernel.shape[d] - 1) * dilation[d] - 1) // strides[d] + 1
           for d in range(2)]
    return xp, out


def _forward(x, kernel, strides, dilation, pads):
    xp, out = _geometry(x, kernel, strides, dilation, pads)
    y = None
    for i, j, t in _taps(xp, kernel.shape[:2], strides, dilation, out):
        t = t * kernel[i, j, 0]
        y = t if y is None else y + t
    return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def depthwise_slices(x, kernel, strides, dilation, pads):
    """Depthwise conv: ``x (N, H, W, C)``, ``kernel (kh, kw, 1, C)``, ``strides`` and
    ``dilation`` 2 ints, ``pads`` 2 ``(low, high)`` pairs -> ``(N, H', W', C)``, the same as
    ``lax.conv_general_dilated(..., feature_group_count=C)`` (NHWC/HWIO) up to float
    rounding."""
    return _forward(x, kernel, strides, dilation, pads)


def _fwd(x, kernel, strides, dilation, pads):
    return _forward(x, kernel, strides, dilation, pads), (x, kernel)


def _bwd(strides, dilation, pads, res, g):
    x, kernel = res
    _, vjp_x = jax.vjp(lambda t: _forward(t, kernel, strides, dilation, pads), x)
    xp, out = _geometry(x, kernel, strides, dilation, pads)
    # per channel, the sum of each tap's input slice times g: a vector-matrix product (a
    # per-channel reduction would first transpose each product to channels-major on XLA:CPU)
    dk = [channel_sums(t * g) for _, _, t in _taps(xp, kernel.shape[:2], strides, dilation, out)]
    return vjp_x(g)[0], jnp.stack(dk).reshape(kernel.shape)


depthwise_slices.defvjp(_fwd, _bwd)
