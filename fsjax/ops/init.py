"""Initialisers that give materialised filters the dense layer's variance."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["fan_in_normal"]

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
