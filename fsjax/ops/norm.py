"""Batch normalisation math (NHWC: statistics over all axes but the last)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["batch_stats", "batch_norm", "fold_batch_norm"]


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
