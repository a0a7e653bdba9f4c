"""Max and average pooling over the spatial dims of channels-last inputs, as Flax computes them
(``flax.linen.max_pool`` / ``avg_pool``: ``lax.reduce_window``).

On the CPU a 2-D pool with a small window is computed as an elementwise max (or sum) of the
window's strided slices: XLA:CPU's ``reduce-window`` and the ``select-and-scatter`` of its max
gradient took 18% of a DARTS network's training step (docs/performance.md, "Pooling as
slices"); the slices fuse with their neighbours. Values are the same (max: exactly; average:
up to float rounding). The max's gradient is the same except at ties inside a window, where
it is split between the tied inputs instead of going to one of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fsjax.ops.cpu import cpu_form

__all__ = ["max_pool", "avg_pool"]

_MAX_SLICES = 16  # windows with more taps than this use reduce_window on every backend


def _pads(shape, window, strides, padding):
    if isinstance(padding, str):
        return lax.padtype_to_pads(shape, window, strides, padding)
    return [tuple(p) for p in padding]


def _reduce_window(x, init, op, window, strides, pads):
    lead = x.ndim - len(window) - 1
    return lax.reduce_window(x, init, op, (1,) * lead + tuple(window) + (1,),
                             (1,) * lead + tuple(strides) + (1,),
                             [(0, 0)] * lead + list(pads) + [(0, 0)])


def _slices(x, init, op, window, strides, pads):
    """``reduce_window`` over the two dims before the last of ``x (N, H, W, C)`` as ``op`` of
    the window's strided slices of ``x`` padded with ``init``."""
    xp = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=init)
    out = [(xp.shape[1 + d] - window[d]) // strides[d] + 1 for d in range(2)]
    y = None
    for i in range(window[0]):
        for j in range(window[1]):
            t = xp[:, i: i + (out[0] - 1) * strides[0] + 1: strides[0],
                   j: j + (out[1] - 1) * strides[1] + 1: strides[1]]
            y = t if y is None else op(y, t)
    return y


def _pool(x, init, op, window_shape, strides, padding):
    window = tuple(int(w) for w in window_shape)
    strides = tuple(int(s) for s in strides) if strides is not None else (1,) * len(window)
    if len(strides) != len(window):
        raise ValueError(f"strides {strides} must have one entry per window dim {window}")
    if x.ndim < len(window) + 1:
        raise ValueError(f"input of shape {x.shape} has fewer than {len(window) + 1} dims "
                         f"(window dims and features) for window {window}")
    pads = _pads(x.shape[x.ndim - len(window) - 1: -1], window, strides, padding)
    default = lambda t: _reduce_window(t, init, op, window, strides, pads)
    if x.ndim != 4 or len(window) != 2 or np.prod(window) > _MAX_SLICES:
        return default(x)
    return cpu_form("pool_slices", lambda t: _slices(t, init, op, window, strides, pads),
                    default, x)


def max_pool(x: jax.Array, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding="VALID") -> jax.Array:
    """Max over windows: ``x (..., *spatial, C)`` -> ``(..., *spatial_out, C)``; ``padding``
    'SAME', 'VALID' or one ``(low, high)`` pair per window dim (padded with -inf)."""
    init = -jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
    return _pool(x, np.array(init, x.dtype), lax.max, window_shape, strides, padding)


def avg_pool(x: jax.Array, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding="VALID", count_include_pad: bool = True) -> jax.Array:
    """Mean over windows, as :func:`max_pool`; with ``count_include_pad=False`` each window is
    divided by its number of non-padding inputs."""
    y = _pool(x, np.array(0, x.dtype), lax.add, window_shape, strides, padding)
    if count_include_pad:
        return y / np.prod(window_shape)
    window = tuple(int(w) for w in window_shape)
    strides = tuple(int(s) for s in strides) if strides is not None else (1,) * len(window)
    spatial = x.shape[x.ndim - len(window) - 1: -1]
    count = np.ones((), np.float32)
    for size, w, s, (lo, _), o in zip(spatial, window, strides,
                                      _pads(spatial, window, strides, padding), y.shape[-1 - len(window): -1],
                                      strict=True):
        start = np.arange(o) * s - lo  # each window's first input index along this dim
        n = np.minimum(start + w, size) - np.maximum(start, 0)
        count = count[..., None] * n.astype(np.float32)
    return y / jnp.asarray(count[..., None], y.dtype)
