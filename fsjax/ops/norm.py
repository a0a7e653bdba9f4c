"""Batch normalisation math (NHWC: statistics over all axes but the last)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["batch_stats", "batch_norm"]


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
