"""Kernel-sharing convolution (KSC) and its weighted form (WKSC).

Input channels are split into ``groups`` contiguous groups of ``g = cin // groups`` channels;
every channel of a group shares one ``kh x kw`` kernel per output filter. With ``alpha`` the
per-input-channel weights (WKSC; KSC is ``alpha = 1``) the equivalent dense kernel is::

    W[ky, kx, c, o] = alpha[c] * kernel[ky, kx, c // g, o]          # alpha (cin,)
    W[ky, kx, c, o] = alpha[c, o] * kernel[ky, kx, c // g, o]       # alpha (cin, cout)

Per-input ``alpha`` (the default) lets the conv be computed cheaply because convolution is
linear: first ``z[..., j] = sum_{c in group j} alpha[c] * x[..., c]``, then a conv of ``z`` with
the ``(kh, kw, groups, cout)`` kernel, so MACs and weights both drop by about ``g``.
Per-(input, output) ``alpha`` is offered as an option because the source thesis is available
only as an abstract; it cannot be factored that way, so it is computed through the dense kernel
(weights drop by ``g``, MACs do not).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fsjax.ops.conv import conv2d

__all__ = ["ks_check", "ks_dense_kernel", "ks_project", "ks_reduce", "ks_conv"]


def ks_check(cin: int, groups: int, where: str = "KSConv") -> int:
    """Return ``g = cin // groups``; ValueError unless ``groups`` divides ``cin``."""
    if not isinstance(groups, int) or groups <= 0:
        raise ValueError(f"{where}: groups must be a positive int; got {groups!r}")
    if cin % groups:
        raise ValueError(f"{where}: in_features {cin} is not divisible by groups {groups}")
    return cin // groups


def ks_dense_kernel(kernel: jax.Array, alpha: jax.Array | None, cin: int | None = None):
    """Equivalent dense kernel of a (W)KSC layer.

    Args:
      kernel: ``(kh, kw, groups, cout)`` shared kernels.
      alpha: ``(cin,)`` per-input weights, ``(cin, cout)`` per-pair weights, or None (KSC,
        all ones; then ``cin`` must be given).
    Returns:
      ``(kh, kw, cin, cout)``.
    """
    kh, kw, groups, cout = kernel.shape
    if alpha is not None:
        cin = alpha.shape[0]
    if cin is None:
        raise ValueError("ks_dense_kernel needs cin when alpha is None")
    g = ks_check(cin, groups, "ks_dense_kernel")
    dense = jnp.repeat(kernel, g, axis=2)
    if alpha is None:
        return dense
    if alpha.ndim == 1:
        return dense * alpha[:, None].astype(dense.dtype)
    if alpha.shape != (cin, cout):
        raise ValueError(f"alpha must be (cin,) or (cin, cout) = ({cin}, {cout}); got {alpha.shape}")
    return dense * alpha.astype(dense.dtype)


def ks_reduce(x: jax.Array, groups: int, alpha: jax.Array | None) -> jax.Array:
    """Weighted channel-group sum: ``(..., cin) -> (..., groups)`` with ``alpha (cin,)``."""
    cin = x.shape[-1]
    g = ks_check(cin, groups, "ks_reduce")
    if alpha is not None:
        x = x * alpha.astype(x.dtype)
    return x.reshape(x.shape[:-1] + (groups, g)).sum(-1)


def ks_conv(x: jax.Array, kernel: jax.Array, alpha: jax.Array | None, bias=None, **conv_kw):
    """(W)KSC forward. ``x (..., H, W, cin)``, ``kernel (kh, kw, groups, cout)`` ->
    ``(..., H', W', cout)``. ``conv_kw`` are :func:`fsjax.ops.conv2d` options (no groups)."""
    groups = kernel.shape[2]
    if alpha is not None and alpha.ndim == 2:
        return conv2d(x, ks_dense_kernel(kernel, alpha), bias, **conv_kw)
    return conv2d(ks_reduce(x, groups, alpha), kernel, bias, **conv_kw)


def ks_project(kernel: jax.Array, groups: int) -> jax.Array:
    """Least-squares KSC kernel (alpha = 1) for a dense kernel: each group's mean.

    ``kernel (kh, kw, cin, cout)`` -> ``(kh, kw, groups, cout)``.
    """
    kh, kw, cin, cout = kernel.shape
    g = ks_check(cin, groups, "ks_project")
    return kernel.reshape(kh, kw, groups, g, cout).mean(3)
