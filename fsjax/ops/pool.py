"""Pooling math: non-overlapping max pooling as a reshape and a max; overlapping max pooling
as a max of strided slices with its own gradient."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["max_pool_blocks", "max_pool_windows"]


def max_pool_blocks(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """Max over non-overlapping ``window = (wh, ww)`` blocks of ``x (N, H, W, C)`` ->
    ``(N, H // wh, W // ww, C)``: 2-D max pooling with stride = window and no padding (rows and
    columns past the last whole block are dropped, as 'VALID' pooling drops them).

    The same values as ``lax.reduce_window`` max. The gradient goes to the maximum of each
    block; where a block holds several equal maxima it is split evenly between them (XLA's
    select-and-scatter gives all of it to one). On XLA:CPU this form's forward + backward is
    4-5x faster than ``reduce_window`` + select-and-scatter (docs/performance.md).
    """
    wh, ww = window
    n, h, w, c = x.shape
    if not (wh >= 1 and ww >= 1 and h >= wh and w >= ww):
        raise ValueError(f"max_pool_blocks: window {window} must be positive and fit in the "
                         f"{h}x{w} input")
    x = x[:, : h - h % wh, : w - w % ww]
    return x.reshape(n, h // wh, wh, w // ww, ww, c).max(axis=(2, 4))


def max_pool_windows(x: jax.Array, window: tuple[int, int], strides: tuple[int, int],
                     padding: str | tuple = "SAME") -> jax.Array:
    """2-D max pooling of ``x (N, H, W, C)`` with any window, strides and padding (``'SAME'``,
    ``'VALID'`` or ``((top, bottom), (left, right))``; padded cells are -inf, as in
    ``lax.reduce_window``) -> ``(N, OH, OW, C)``: the max of the window's ``wh * ww`` strided
    slices of the padded input.

    The same values as ``nnx.max_pool`` / ``lax.reduce_window`` max. The gradient goes to each
    window's maximum, split evenly between equal maxima (as :func:`max_pool_blocks`; XLA's
    select-and-scatter gives all of it to one). On XLA:CPU its forward + backward of a 3x3
    stride-1 pool (DARTS's ``max_pool_3x3``) is several times faster than reduce-window +
    select-and-scatter (docs/performance.md).
    """
    h, w = x.shape[1:3]
    window, strides = tuple(window), tuple(strides)
    if min(window) < 1 or min(strides) < 1:
        raise ValueError(f"max_pool_windows: window {window} and strides {strides} must be "
                         f"positive")
    pads = (lax.padtype_to_pads((h, w), window, strides, padding) if isinstance(padding, str)
            else padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if any(size + sum(p) < k for size, k, p in zip((h, w), window, pads, strict=True)):
        raise ValueError(f"max_pool_windows: window {window} does not fit in the {h}x{w} input "
                         f"padded by {pads}")
    return _max_windows(x, window, strides, pads)


def _slices(xp, window, strides, out_hw):
    """((i, j), view) per window offset: ``xp[:, i::sh, j::sw]`` cut to ``out_hw``."""
    (sh, sw), (oh, ow) = strides, out_hw
    n, _, _, c = xp.shape
    for i in range(window[0]):
        for j in range(window[1]):
            yield (i, j), lax.slice(xp, (0, i, j, 0), (n, i + sh * (oh - 1) + 1,
                                                       j + sw * (ow - 1) + 1, c), (1, sh, sw, 1))


def _padded(x, pads):
    return jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)


def _out_hw(xp, window, strides):
    return tuple((xp.shape[1 + a] - window[a]) // strides[a] + 1 for a in (0, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_windows(x, window, strides, pads):
    xp = _padded(x, pads)
    views = [v for _, v in _slices(xp, window, strides, _out_hw(xp, window, strides))]
    return functools.reduce(jnp.maximum, views)


def _max_windows_fwd(x, window, strides, pads):
    y = _max_windows(x, window, strides, pads)
    return y, (x, y)


def _max_windows_bwd(window, strides, pads, res, g):
    x, y = res
    xp = _padded(x, pads)
    (n, hp, wp, c), (sh, sw), (oh, ow) = xp.shape, strides, y.shape[1:3]
    hits = [(ij, v == y) for ij, v in _slices(xp, window, strides, (oh, ow))]
    share = g / sum(m.astype(g.dtype) for _, m in hits)
    # each slice's cotangent, scattered back by the slice's transpose: as plain pads into the
    # stride phases xp[:, a::sh, b::sw] (offset (i, j) reads phase (i % sh, j % sw) from row
    # i // sh, column j // sw), then the phases interleaved (a pad with interior padding per
    # offset runs several times slower on XLA:CPU)
    ph, pw = -(-hp // sh), -(-wp // sw)
    phases = {}
    for (i, j), m in hits:
        di, dj = i // sh, j // sw
        v = lax.pad(jnp.where(m, share, 0), jnp.zeros((), g.dtype),
                    ((0, 0, 0), (di, ph - di - oh, 0), (dj, pw - dj - ow, 0), (0, 0, 0)))
        key = (i % sh, j % sw)
        phases[key] = phases[key] + v if key in phases else v
    zero = jnp.zeros((n, ph, pw, c), g.dtype)
    grid = jnp.stack([jnp.stack([phases.get((a, b), zero) for b in range(sw)], 3)
                      for a in range(sh)], 2)  # (n, ph, sh, pw, sw, c)
    dxp = grid.reshape(n, ph * sh, pw * sw, c)
    (top, _), (left, _) = pads
    return (dxp[:, top:top + x.shape[1], left:left + x.shape[2]],)


_max_windows.defvjp(_max_windows_fwd, _max_windows_bwd)
