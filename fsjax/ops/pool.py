"""Max and average pooling over the spatial dims of channels-last inputs: Flax's
``nnx.max_pool`` / ``nnx.avg_pool`` (``lax.reduce_window``), called as such outside the CPU
form (converters such as jax2onnx map those functions, not every ``reduce_window``).

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
from flax import nnx
from jax import lax

from fsjax.ops.cpu import cpu_form

__all__ = ["max_pool", "avg_pool"]

_MAX_SLICES = 16  # windows with more taps than this use reduce_window on every backend


def _args(x, window_shape, strides, padding):
    """``(window, strides, pads)`` as int tuples and ``(low, high)`` pairs; one-line errors."""
    window = tuple(int(w) for w in window_shape)
    strides = tuple(int(s) for s in strides) if strides is not None else (1,) * len(window)
    if len(strides) != len(window):
        raise ValueError(f"strides {strides} must have one entry per window dim {window}")
    if x.ndim < len(window) + 1:
        raise ValueError(f"input of shape {x.shape} has fewer than {len(window) + 1} dims "
                         f"(window dims and features) for window {window}")
    spatial = x.shape[x.ndim - len(window) - 1: -1]
    pads = (lax.padtype_to_pads(spatial, window, strides, padding) if isinstance(padding, str)
            else [tuple(p) for p in padding])
    return window, strides, pads


def _sliced(x, window) -> bool:
    """Whether the CPU form applies: a batched 2-D pool with a small window."""
    return x.ndim == 4 and len(window) == 2 and np.prod(window) <= _MAX_SLICES


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


def _counts(spatial, window, strides, pads) -> np.ndarray:
    """``(*spatial_out, 1)``: how many non-padding inputs each window covers."""
    count = np.ones((), np.float32)
    for size, w, s, (lo, hi) in zip(spatial, window, strides, pads, strict=True):
        start = np.arange((size + lo + hi - w) // s + 1) * s - lo  # each window's first index
        count = count[..., None] * (np.minimum(start + w, size) - np.maximum(start, 0))
    return count[..., None]


def max_pool(x: jax.Array, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding="VALID") -> jax.Array:
    """Max over windows: ``x (..., *spatial, C)`` -> ``(..., *spatial_out, C)``; ``padding``
    'SAME', 'VALID' or one ``(low, high)`` pair per window dim (padded with -inf)."""
    window, strides, pads = _args(x, window_shape, strides, padding)
    padding = padding if isinstance(padding, str) else tuple(map(tuple, padding))
    # by keyword: converters (jax2onnx) replace these functions with keyword-only versions
    flax = lambda t: nnx.max_pool(t, window_shape=window, strides=strides, padding=padding)
    if not _sliced(x, window):
        return flax(x)
    low = -np.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
    return cpu_form("pool_slices", lambda t: _slices(t, np.array(low, x.dtype), lax.max,
                                                     window, strides, pads), flax, x)


def avg_pool(x: jax.Array, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding="VALID", count_include_pad: bool = True) -> jax.Array:
    """Mean over windows, as :func:`max_pool`; with ``count_include_pad=False`` each window is
    divided by its number of non-padding inputs."""
    window, strides, pads = _args(x, window_shape, strides, padding)
    padding = padding if isinstance(padding, str) else tuple(map(tuple, padding))
    # by keyword: converters (jax2onnx) replace these functions with keyword-only versions
    flax = lambda t: nnx.avg_pool(t, window_shape=window, strides=strides, padding=padding,
                                  count_include_pad=count_include_pad)
    if not _sliced(x, window):
        return flax(x)
    n = (np.prod(window) if count_include_pad else
         _counts(x.shape[1:3], window, strides, pads)).astype(np.float32)

    def slices(t):
        return _slices(t, np.array(0, t.dtype), lax.add, window, strides, pads) / n.astype(t.dtype)

    return cpu_form("pool_slices", slices, flax, x)
