"""Kernel-sharing convolution (KSC) and its weighted form (WKSC).

Input channels are split into ``groups`` contiguous groups of ``g = cin // groups`` channels;
every channel of a group shares one spatial kernel per output filter. Kernels have any rank:
``(*kernel_size, groups, cout)`` shared, ``(*kernel_size, cin, cout)`` dense. With ``alpha`` the
per-input-channel weights (WKSC; KSC is ``alpha = 1``) the equivalent dense kernel is (2-D)::

    W[ky, kx, c, o] = alpha[c] * kernel[ky, kx, c // g, o]          # alpha (cin,)
    W[ky, kx, c, o] = alpha[c, o] * kernel[ky, kx, c // g, o]       # alpha (cin, cout)

With ``feature_group_count = n`` (as in ``lax.conv_general_dilated``) the dense kernel has
``cin // n`` inputs and the groups never straddle feature groups (``n`` divides ``groups``):
the shared kernel is ``(*kernel_size, groups // n, cout)``, the local input ``c`` of output
``o`` is global channel ``(o // (cout // n)) * (cin // n) + c`` (that channel's ``alpha``), and
per-pair ``alpha`` is ``(cin // n, cout)``.

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

from fsjax.ops.conv import conv

__all__ = ["ks_check", "ks_dense_kernel", "ks_project", "ks_reduce", "ks_conv"]


def ks_check(cin: int, groups: int, where: str = "KSConv") -> int:
    """Return ``g = cin // groups``; ValueError unless ``groups`` divides ``cin``."""
    if not isinstance(groups, int) or groups <= 0:
        raise ValueError(f"{where}: groups must be a positive int; got {groups!r}")
    if cin % groups:
        raise ValueError(f"{where}: in_features {cin} is not divisible by groups {groups}")
    return cin // groups


def ks_dense_kernel(kernel: jax.Array, alpha: jax.Array | None, cin: int | None = None,
                    feature_group_count: int = 1):
    """Equivalent dense kernel of a (W)KSC layer.

    Args:
      kernel: ``(*kernel_size, groups // n, cout)`` shared kernels (``n`` the feature groups).
      alpha: ``(cin,)`` per-input weights, ``(cin // n, cout)`` per-pair weights, or None
        (KSC, all ones; then ``cin`` must be given).
    Returns:
      ``(*kernel_size, cin // n, cout)``.
    """
    n = int(feature_group_count)
    local, cout = kernel.shape[-2:]
    if alpha is not None:
        cin = alpha.shape[0] * (n if alpha.ndim == 2 else 1)
    if cin is None:
        raise ValueError("ks_dense_kernel needs cin when alpha is None")
    if cin % n or cout % n:
        raise ValueError(f"ks_dense_kernel: feature_group_count {n} must divide cin {cin} and "
                         f"cout {cout}")
    g = ks_check(cin // n, local, "ks_dense_kernel")
    dense = jnp.repeat(kernel, g, axis=-2)
    if alpha is None:
        return dense
    if alpha.ndim == 1:
        if alpha.shape != (cin,):
            raise ValueError(f"alpha must be (cin,) = ({cin},); got {alpha.shape}")
        # (cin,) -> (cin // n, cout): output o reads the alpha of its own feature group's inputs
        a = jnp.repeat(alpha.reshape(n, cin // n).T, cout // n, axis=1)
        return dense * a.astype(dense.dtype)
    if alpha.shape != (cin // n, cout):
        raise ValueError(f"alpha must be (cin,) or (cin // feature_group_count, cout) = "
                         f"({cin // n}, {cout}); got {alpha.shape}")
    return dense * alpha.astype(dense.dtype)


def ks_reduce(x: jax.Array, groups: int, alpha: jax.Array | None) -> jax.Array:
    """Weighted channel-group sum: ``(..., cin) -> (..., groups)`` with ``alpha (cin,)``."""
    cin = x.shape[-1]
    g = ks_check(cin, groups, "ks_reduce")
    if alpha is not None:
        x = x * alpha.astype(x.dtype)
    return x.reshape(x.shape[:-1] + (groups, g)).sum(-1)


def ks_conv(x: jax.Array, kernel: jax.Array, alpha: jax.Array | None, bias=None, *,
            feature_group_count: int = 1, **conv_kw):
    """(W)KSC forward. ``x (*batch, *spatial, cin)``, ``kernel (*kernel_size, groups // n,
    cout)`` -> ``(*batch, *spatial', cout)``. ``conv_kw`` are :func:`fsjax.ops.conv` options.

    Per-input ``alpha`` (or none): the weighted group sum, then a conv with ``groups`` inputs.
    Per-pair ``alpha``: through the dense kernel."""
    n = int(feature_group_count)
    if alpha is not None and alpha.ndim == 2:
        dense = ks_dense_kernel(kernel, alpha, feature_group_count=n)
        return conv(x, dense, bias, feature_group_count=n, **conv_kw)
    groups = kernel.shape[-2] * n
    return conv(ks_reduce(x, groups, alpha), kernel, bias, feature_group_count=n, **conv_kw)


def ks_project(kernel: jax.Array, groups: int, feature_group_count: int = 1) -> jax.Array:
    """Least-squares KSC kernel (alpha = 1) for a dense kernel: each group's mean.

    ``kernel (*kernel_size, cin // n, cout)`` -> ``(*kernel_size, groups // n, cout)``.
    """
    *ks, local_in, cout = kernel.shape
    n = int(feature_group_count)
    if groups % n:
        raise ValueError(f"ks_project: feature_group_count {n} must divide groups {groups}")
    g = ks_check(local_in, groups // n, "ks_project")
    return kernel.reshape(*ks, groups // n, g, cout).mean(-2)
