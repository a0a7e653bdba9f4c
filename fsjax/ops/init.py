"""Initialisers that give materialised filters the dense layer's variance."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["fan_in_normal", "identity_kernel", "whitening_kernel"]

# std of a unit normal truncated to [-2, 2]; dividing by it restores unit variance (as in
# jax.nn.initializers.variance_scaling with 'truncated_normal').
_TRUNC_STD = 0.87962566103423978


def fan_in_normal(key, shape, fan_in: int, scale: float = 1.0, dtype=jnp.float32) -> jax.Array:
    """Truncated normal with variance ``scale / fan_in`` (scale 1: LeCun, 2: He).

    For an FS vector pass the filter size ``K = kh*kw*cin`` as ``fan_in``: every materialised
    filter weight is one FS entry, so filters get exactly the dense layer's variance.
    """
    if fan_in <= 0:
        raise ValueError(f"fan_in must be positive; got {fan_in}")
    std = (scale / fan_in) ** 0.5 / _TRUNC_STD
    return (jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32) * std).astype(dtype)


def identity_kernel(shape, dtype=jnp.float32) -> jax.Array:
    """Partial-identity (Dirac) kernel ``(*kernel_size, cin, cout)``: filter ``i < min(cin,
    cout)`` is 1 at the centre tap of input channel ``i`` and 0 elsewhere; the other filters
    are 0. ``conv(x, identity_kernel)`` with 'SAME' padding copies input channel ``i`` to
    output channel ``i`` (PyTorch's ``nn.init.dirac_`` on the first ``cin`` filters).
    """
    *ks, cin, cout = (int(d) for d in shape)
    n = min(cin, cout)
    k = jnp.zeros(tuple(ks) + (cin, cout), dtype)
    centre = tuple(d // 2 for d in ks)
    return k.at[centre + (jnp.arange(n), jnp.arange(n))].set(1)


def whitening_kernel(images: jax.Array, kernel_size=(2, 2), eps: float = 5e-4) -> jax.Array:
    """Filters that whiten the training images' patches (airbench's first layer).

    The ``kh x kw`` patches of ``images`` at stride 1 (no padding) are flattened in (kh, kw, C)
    order; with their second-moment matrix ``S = P^T P / n`` (not centred) and its eigenpairs
    ``(lambda_i, e_i)`` in descending order, filter ``i`` is ``e_i / sqrt(lambda_i + eps)``
    and filter ``d + i`` its negative (``d = kh*kw*C``), so that an activation after the conv
    sees both signs. The conv's outputs 0..d-1 then have second moments
    ``lambda_i / (lambda_i + eps)`` (about 1) and are uncorrelated over the patches.

    Args:
      images: ``(N, H, W, C)`` float (already normalised as the model's input is).
      kernel_size: ``(kh, kw)``.
      eps: added to each eigenvalue.
    Returns:
      ``(kh, kw, C, 2*kh*kw*C)`` float32 HWIO kernel.
    """
    kh, kw = (int(k) for k in kernel_size)
    n, h, w, c = images.shape
    if h < kh or w < kw:
        raise ValueError(f"whitening_kernel: images {h}x{w} are smaller than the kernel {kh}x{kw}")
    x = jnp.asarray(images, jnp.float32)
    cols = [x[:, dy:h - kh + 1 + dy, dx:w - kw + 1 + dx, :] for dy in range(kh)
            for dx in range(kw)]
    p = jnp.stack(cols, axis=-2).reshape(-1, kh * kw * c)          # (patches, kh*kw*C)
    s = jnp.dot(p.T, p, precision=jax.lax.Precision.HIGHEST) / p.shape[0]
    lam, vec = jnp.linalg.eigh(s)                                   # ascending
    lam, vec = lam[::-1], vec[:, ::-1]
    f = vec / jnp.sqrt(lam + eps)                                   # columns = filters
    return jnp.concatenate([f, -f], axis=1).reshape(kh, kw, c, 2 * kh * kw * c)
