"""Batch normalisation math (NHWC: statistics over all axes but the last)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from fsjax.ops.cpu import cpu_form

__all__ = ["batch_stats", "batch_norm", "batch_norm_train", "channel_sums", "fold_batch_norm"]


def batch_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean and biased variance of ``x (..., C)`` in float32 -> ``(C,), (C,)``."""
    axes = tuple(range(x.ndim - 1))
    xf = x.astype(jnp.float32)
    mean = xf.mean(axes)
    var = jnp.maximum((xf * xf).mean(axes) - mean * mean, 0.0)
    return mean, var


def batch_norm(x, mean, var, scale=None, bias=None, epsilon: float = 1e-5):
    """``(x - mean) / sqrt(var + eps) * scale + bias`` with ``(C,)`` statistics, in x's dtype."""
    inv = jax.lax.rsqrt(var + epsilon)
    if scale is not None:
        inv = inv * scale
    y = (x.astype(jnp.float32) - mean) * inv
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


def batch_norm_train(x, scale=None, bias=None, epsilon: float = 1e-5):
    """Training-mode BatchNorm: ``x (..., C)`` normalised by its own per-channel statistics.

    Returns ``(y (..., C) in x's dtype, mean (C,), var (C,))``, the statistics float32 (biased
    variance), as :func:`batch_stats` then :func:`batch_norm`. A program lowered for the CPU
    uses the form ``bn_sums`` (:func:`fsjax.ops.cpu_form`): the same values from a custom
    gradient whose per-channel sums are matrix-vector products (docs/performance.md); others
    differentiate the default formulation."""
    default = lambda t, s, b: _bn_train(t, s, b, epsilon)  # noqa: E731
    return cpu_form("bn_sums", lambda t, s, b: _bn_train_sums(t, s, b, epsilon), default,
                    x, scale, bias)


def _bn_train(x, scale, bias, epsilon):
    mean, var = batch_stats(x)
    return batch_norm(x, mean, var, scale, bias, epsilon), mean, var


def channel_sums(a: jax.Array) -> jax.Array:
    """``a (..., C)`` summed over all axes but the last -> ``(C,)``: a matrix-vector product
    ``ones (p,) @ a (p, M/p * C)`` (XLA:CPU sums channels-last tensors faster so), then XLA's
    own reduction of the ``(M/p, C)`` partial sums (``1/p`` of the data).

    ``p`` is the largest divisor of the ``M`` rows up to ``sqrt(M)``. One product over all
    ``M`` rows adds them one after another: float32 error growing like ``M`` (1.3e-5 relative
    at 2^17 rows, which BatchNorm's gradient amplifies); here each output of the product adds
    ``p`` values, and the error stays near XLA's reduction's."""
    c = a.shape[-1]
    a2 = a.reshape(-1, c)
    rows = a2.shape[0]
    p = 1 if rows <= _SEQUENTIAL_ROWS else \
        next((d for d in range(math.isqrt(rows), 1, -1) if rows % d == 0), 1)
    if p == 1:  # few rows, or a prime count
        return jnp.ones((rows,), a2.dtype) @ a2
    return (jnp.ones((p,), a2.dtype) @ a2.reshape(p, -1)).reshape(-1, c).sum(0)


# rows that channel_sums adds in one matrix-vector product (float32 error about 64 ulp)
_SEQUENTIAL_ROWS = 64


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bn_train_sums(x, scale, bias, epsilon):
    return _bn_train_sums_fwd(x, scale, bias, epsilon)[0]


def _bn_train_sums_fwd(x, scale, bias, epsilon):
    xf = x.astype(jnp.float32)
    m = xf.size // xf.shape[-1]
    mean = channel_sums(xf) / m
    var = channel_sums(jnp.square(xf - mean)) / m  # two passes: no cancellation at small m
    r = jax.lax.rsqrt(var + epsilon)
    y = (xf - mean) * (r if scale is None else r * scale)
    if bias is not None:
        y = y + bias
    return (y.astype(x.dtype), mean, var), (x, mean, r, scale, bias)


def _bn_train_sums_bwd(epsilon, res, cts):
    """With ``xhat = (x - mean) r`` and ``g = dy * scale``: ``dx = r (g - (sum g + xhat
    sum(g xhat)) / m)``, plus the statistics' own cotangents (``d mean / dx = 1/m``,
    ``d var / dx = 2 (x - mean) / m``); ``d scale = sum(dy xhat)``, ``d bias = sum dy``."""
    x, mean, r, scale, bias = res
    dy, dmean, dvar = cts
    dy = dy.astype(jnp.float32)
    xc = x.astype(jnp.float32) - mean
    xhat = xc * r
    m = xhat.size // xhat.shape[-1]
    s_dy, s_dyx = channel_sums(dy), channel_sums(dy * xhat)
    g, s_g, s_gx = (dy, s_dy, s_dyx) if scale is None else \
        (dy * scale, s_dy * scale, s_dyx * scale)
    dx = r * (g - (s_g + xhat * s_gx) / m) + dmean / m + dvar * (2.0 / m) * xc
    return (dx.astype(x.dtype), None if scale is None else s_dyx.astype(scale.dtype),
            None if bias is None else s_dy.astype(bias.dtype))


_bn_train_sums.defvjp(_bn_train_sums_fwd, _bn_train_sums_bwd)


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
