"""Batch normalisation math (NHWC: statistics over all axes but the last).

On the CPU the per-channel sums - the statistics and, in the backward pass, the gradients of
the broadcast statistics, scale and bias - are vector-matrix products with a ones vector:
XLA:CPU computes a reduction over the leading axes as a tree of ``reduce-window`` ops, 1.7-4x
slower at CIFAR ResNet sizes (docs/performance.md, "BatchNorm sums as dots"). Other backends
reduce as before (only their form is lowered for them). Both forms compute the same values up
to float rounding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from fsjax.ops.cpu import cpu_form

__all__ = ["batch_stats", "batch_norm", "fold_batch_norm"]


def _split(m: int) -> int:
    """The largest power of two that divides ``m`` and is at most ``sqrt(m)``."""
    k = 1
    while m % (2 * k) == 0 and (2 * k) ** 2 <= m:
        k *= 2
    return k


def _dot_sum(x2: jax.Array) -> jax.Array:
    """``(M, C) -> (C,)``: column sums as vector-matrix products, in two levels.

    XLA:CPU's dot accumulates a column in order, so one product over M rows would carry a
    rounding error of order ``M * eps`` (4.6e-6 relative at M = 65,536 in float32, against
    6e-8 for XLA's reduction). Summing ``k`` blocks of ``M / k`` rows first (``k`` up to
    ``sqrt(M)``, a power of two dividing M) brings it to order ``(k + M / k) * eps``."""
    m, c = x2.shape
    k = _split(m)
    dot = lambda a, b: jnp.dot(a, b, precision=lax.Precision.HIGHEST)
    if k < 8:
        return dot(jnp.ones((m,), x2.dtype), x2)
    part = dot(jnp.ones((k,), x2.dtype), x2.reshape(k, (m // k) * c))  # (M/k * C,)
    return dot(jnp.ones((m // k,), x2.dtype), part.reshape(m // k, c))


@jax.custom_vjp
def _sum_rows(x2):
    """``(M, C) -> (C,)`` column sums whose gradient is a broadcast."""
    return _dot_sum(x2)


def _sum_rows_fwd(x2):
    return _dot_sum(x2), x2.shape[0]


def _sum_rows_bwd(m, g):
    return (jnp.broadcast_to(g, (m, g.shape[0])),)


_sum_rows.defvjp(_sum_rows_fwd, _sum_rows_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _rows(v, m):
    """``(C,) -> (m, C)`` broadcast whose gradient is a :func:`_dot_sum`."""
    return jnp.broadcast_to(v, (m, v.shape[0]))


def _rows_fwd(v, m):
    return _rows(v, m), None


def _rows_bwd(m, _, g):
    return (_dot_sum(g),)


_rows.defvjp(_rows_fwd, _rows_bwd)


def _stats(xf):
    n = xf.size // xf.shape[-1]
    return xf.sum(tuple(range(xf.ndim - 1))) / n, (xf * xf).sum(tuple(range(xf.ndim - 1))) / n


def _stats_cpu(xf):
    x2 = xf.reshape(-1, xf.shape[-1])
    return _sum_rows(x2) / x2.shape[0], _sum_rows(x2 * x2) / x2.shape[0]


def batch_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance of ``x (..., C)`` in float32 -> ``(C,), (C,)``."""
    mean, sq = cpu_form("bn_dots", _stats_cpu, _stats, x.astype(jnp.float32))
    return mean, jnp.maximum(sq - mean * mean, 0.0)


def _normalize(x, mean, inv, bias):
    y = (x.astype(jnp.float32) - mean) * inv
    return y if bias is None else y + bias


def _normalize_cpu(x, mean, inv, bias):
    shape, c = x.shape, x.shape[-1]
    x2 = x.astype(jnp.float32).reshape(-1, c)
    m = x2.shape[0]
    y = (x2 - _rows(jnp.broadcast_to(mean, (c,)), m)) * _rows(jnp.broadcast_to(inv, (c,)), m)
    if bias is not None:
        y = y + _rows(jnp.broadcast_to(bias, (c,)), m)
    return y.reshape(shape)


def batch_norm(x, mean, var, scale=None, bias=None, epsilon: float = 1e-5):
    """``(x - mean) / sqrt(var + eps) * scale + bias`` with ``(C,)`` statistics, in x's dtype."""
    inv = lax.rsqrt(var + epsilon)
    if scale is not None:
        inv = inv * scale
    if bias is None:
        y = cpu_form("bn_dots", lambda *a: _normalize_cpu(*a, None),
                     lambda *a: _normalize(*a, None), x, mean, inv)
    else:
        y = cpu_form("bn_dots", _normalize_cpu, _normalize, x, mean, inv, bias)
    return y.astype(x.dtype)


def fold_batch_norm(kernel, bias, mean, var, scale=None, beta=None, epsilon: float = 1e-5):
    """Fold an eval-mode BatchNorm into the layer before it (a conv or a matmul whose output
    channel is the kernel's last axis).

    ``bn(x @ k + b) = x @ (k * s) + (b - mean) * s + beta`` with ``s = scale / sqrt(var + eps)``:
    exact in real arithmetic, equal up to float rounding.

    Args:
      kernel: ``(..., C)`` (HWIO conv kernel, KSC shared kernel or FC matrix).
      bias: ``(C,)`` or None (no bias).
      mean, var, scale, beta: the BatchNorm's ``(C,)`` statistics and affine parameters.
    Returns:
      ``(kernel (..., C), bias (C,))``, both float32.
    """
    s = jax.lax.rsqrt(jnp.asarray(var, jnp.float32) + epsilon)
    if scale is not None:
        s = s * scale
    b = jnp.zeros_like(s) if bias is None else jnp.asarray(bias, jnp.float32)
    b = (b - mean) * s
    if beta is not None:
        b = b + beta
    return jnp.asarray(kernel, jnp.float32) * s, b
