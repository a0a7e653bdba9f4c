"""Filter Summary (FSNet) and Differentiable Filter Summary (DFSNet) math, for any rank.

Kernels are ``(*kernel_size, cin, cout)`` (HWIO in 2-D; WIO in 1-D, DHWIO in 3-D) and a filter
holds ``K = prod(kernel_size)*cin`` weights. A layer stores one 1-D Filter Summary ``fs`` of
length ``L``; filter ``i`` is the circularly wrapped segment ``fs[(start_i + t) mod L]``,
``t in [0, K)``, read with the input channel slowest, then the spatial dims in order. In 2-D::

    kernel[ky, kx, c, i] = fs[(start_i + c*kh*kw + ky*kw + kx) mod L]

and in general ``t = c*prod(kernel_size) + ravel_multi_index(spatial position, kernel_size)``.

Index tables are small static numpy arrays (the ``K`` tap positions in HWIO order and the
``cout`` starts), cached per layer shape; the full ``(kh, kw, cin, cout)`` index is formed
in-graph by a fused add/mod, so no multi-megabyte constant is embedded in compiled programs.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "check_kernel_shape",
    "filter_size",
    "fs_length",
    "fs_offsets",
    "fs_taps",
    "fs_index",
    "fs_kernel",
    "fs_project",
    "fs_from_dense",
    "fs_official_starts",
    "fs_official_index",
    "fs_official_kernel",
    "dfs_kernel",
    "dfs_locations",
    "dfs_init_raw",
]


def check_kernel_shape(kernel_shape, where: str = "kernel_shape") -> tuple[int, ...]:
    """Validate ``(*kernel_size, cin, cout)`` (at least one spatial dim) of positive ints and
    return it as a tuple."""
    try:
        shape = tuple(int(s) for s in kernel_shape)
    except TypeError as e:
        raise ValueError(f"{where} must be (*kernel_size, cin, cout); got {kernel_shape!r}") from e
    if len(shape) < 3 or min(shape) <= 0:
        raise ValueError(f"{where} must be 3 or more positive ints (*kernel_size, cin, cout); "
                         f"got {shape}")
    return shape


def filter_size(kernel_shape) -> int:
    """``K = prod(kernel_size) * cin``: the weights of one filter."""
    shape = check_kernel_shape(kernel_shape)
    return int(np.prod(shape[:-1]))


def fs_length(kernel_shape, compression: float) -> int:
    """FS length ``L = max(K, floor(K*cout/compression))``, ``K = prod(kernel_size)*cin``.

    Floor as in the official FSNet code, so published parameter counts are reproduced.
    ``compression`` must be >= 1 (a smaller value would store more weights than the dense
    kernel).
    """
    shape = check_kernel_shape(kernel_shape)
    if not isinstance(compression, (int, float)) or not math.isfinite(compression):
        raise ValueError(f"compression must be a finite number >= 1; got {compression!r}")
    if compression < 1:
        raise ValueError(
            f"compression must be >= 1 (dense weights / stored weights); got {compression}"
        )
    k = filter_size(shape)
    return max(k, int(math.floor(k * shape[-1] / compression)))


def fs_offsets(kernel_shape, length: int) -> np.ndarray:
    """Segment starts ``start_i = floor(i*L/cout)`` in exact integer arithmetic.

    Returns: int32 numpy array of shape ``(cout,)``, non-decreasing, in ``[0, L)``.
    """
    shape = check_kernel_shape(kernel_shape)
    cout, length = shape[-1], int(length)
    if length < filter_size(shape):
        raise ValueError(f"FS length must be >= K = {filter_size(shape)}; got {length}")
    return ((np.arange(cout, dtype=np.int64) * length) // cout).astype(np.int32)


def fs_taps(*dims: int) -> np.ndarray:
    """Position ``t`` of each kernel tap inside a filter segment, shape ``(*kernel_size, cin)``.

    ``fs_taps(*kernel_size, cin)``; ``t[s..., c] = c*prod(kernel_size) + ravel(s)`` (input channel
    slowest, then the spatial dims in order; 2-D: ``c*kh*kw + ky*kw + kx``). Cached; read-only.
    """
    return _taps(tuple(int(d) for d in dims))


@functools.lru_cache(maxsize=512)
def _taps(dims: tuple[int, ...]) -> np.ndarray:
    *ks, cin = dims
    spatial = int(np.prod(ks))
    taps = (np.arange(cin, dtype=np.int64) * spatial
            + np.arange(spatial, dtype=np.int64).reshape(*ks, 1)).astype(np.int32)
    taps.setflags(write=False)
    return taps


def _as_offsets(offsets, cout: int):
    if isinstance(offsets, (tuple, list)):
        offsets = np.asarray(offsets, np.int32)
    if offsets.shape != (cout,):
        raise ValueError(f"offsets must have shape (cout,) = ({cout},); got {offsets.shape}")
    return offsets


def fs_index(kernel_shape, length: int, offsets) -> jax.Array | np.ndarray:
    """Index of every kernel weight in the FS: shape ``(*kernel_size, cin, cout)``, in [0, L).

    With numpy ``offsets`` the result is a numpy array (trace-time constant); with traced
    offsets it is computed in-graph.
    """
    shape = check_kernel_shape(kernel_shape)
    offsets = _as_offsets(offsets, shape[-1])
    xp = np if isinstance(offsets, np.ndarray) else jnp
    taps = fs_taps(*shape[:-1])
    return (xp.asarray(taps)[..., None] + offsets) % int(length)


def fs_official_starts(cout: int, length: int) -> np.ndarray:
    """Filter starts of the official FSNet PyTorch code (``Conv2d_dws``): ``float32(i * step)``
    with ``step = L / (cout - 1)`` in float64, so the last filter starts at ``L`` (read from the
    summary concatenated with itself, it is the first filter again).

    Returns: float32 ``(cout,)``, ``starts[0] = 0``, ``starts[-1] = L``.
    """
    if cout < 2:
        raise ValueError("the official FSNet layout needs cout >= 2 (its step is L/(cout-1))")
    step = int(length) / (cout - 1)
    return np.asarray([i * step for i in range(cout)], np.float64).astype(np.float32)


def _official_index(xp, shape: tuple[int, ...], length: int):
    cout, k = shape[-1], filter_size(shape)
    if length < k:
        raise ValueError(f"the official FSNet layout reads past its doubled summary: L = "
                         f"{length} is shorter than a filter (K = {k}); it needs L >= K")
    starts = xp.asarray(fs_official_starts(cout, length))
    taps = xp.asarray(fs_taps(*shape[:-1]).astype(np.float32))  # exact: < 2**24
    # float32 sum truncated to an integer, as `(ids0 + seg_end).long()` in the official code
    flat = (taps[..., None] + starts).astype(xp.int32)
    return flat % length


def fs_official_index(kernel_shape, length: int) -> np.ndarray:
    """Index table of the official FSNet PyTorch code's layout (``Conv2d_dws``).

    There filter ``i`` starts at ``s_i`` (:func:`fs_official_starts`), each tap's index
    ``float32(t) + s_i`` is a float32 sum truncated to an integer, and the filters are read
    from the summary concatenated with itself, so the last filter starts where the first does
    (index ``L`` is entry 0). Transcribed from that code's published formula, in NumPy float32
    (IEEE round-to-nearest, as PyTorch's CPU and CUDA adds). The layout needs ``L >= K``.

    Args:
      kernel_shape: ``(*kernel_size, cin, cout)``; length: ``L``.
    Returns:
      int32 ``(*kernel_size, cin, cout)`` in ``[0, L)``. Cached; read-only.
    """
    return _official(check_kernel_shape(kernel_shape), int(length))


@functools.lru_cache(maxsize=64)
def _official(shape: tuple[int, ...], length: int) -> np.ndarray:
    idx = _official_index(np, shape, length).astype(np.int32)
    idx.setflags(write=False)
    return idx


def fs_official_kernel(fs: jax.Array, kernel_shape) -> jax.Array:
    """Dense kernel of an FS in the official FSNet layout (:func:`fs_official_index`), with the
    index computed in-graph from ``K + cout`` constants (the same float32 adds, so the same
    integers; no ``K*cout`` table is embedded in compiled programs).

    Args:
      fs: ``(L,)``; kernel_shape: ``(*kernel_size, cin, cout)``.
    Returns:
      ``(*kernel_size, cin, cout)``.
    """
    shape = check_kernel_shape(kernel_shape)
    fs = jnp.asarray(fs)
    if fs.ndim != 1:
        raise ValueError(f"fs must be 1-D (L,); got shape {fs.shape}")
    idx = _official_index(jnp, shape, fs.shape[0])
    return fs.at[idx].get(mode="promise_in_bounds")


def fs_kernel(fs: jax.Array, kernel_shape, offsets) -> jax.Array:
    """Materialise the dense kernel from a Filter Summary.

    Args:
      fs: ``(L,)`` filter summary.
      kernel_shape: ``(*kernel_size, cin, cout)``.
      offsets: ``(cout,)`` integer segment starts (see :func:`fs_offsets`).
    Returns:
      ``(*kernel_size, cin, cout)`` kernel; in 2-D ``kernel[ky,kx,c,i] = fs[(off_i + c*kh*kw +
      ky*kw + kx) mod L]``.
    """
    shape = check_kernel_shape(kernel_shape)
    fs = jnp.asarray(fs)
    if fs.ndim != 1:
        raise ValueError(f"fs must be 1-D (L,); got shape {fs.shape}")
    length = fs.shape[0]
    if length < filter_size(shape):
        raise ValueError(f"fs length {length} is shorter than a filter (K = {filter_size(shape)})")
    offsets = _as_offsets(offsets, shape[-1])
    taps = jnp.asarray(fs_taps(*shape[:-1]))
    idx = (taps[..., None] + jnp.asarray(offsets, jnp.int32)) % length
    return fs.at[idx].get(mode="promise_in_bounds")


def _table(shape, length, offsets, index) -> np.ndarray:
    if (offsets is None) == (index is None):
        raise ValueError("give exactly one of offsets (the (cout,) starts) or index (a full "
                         "index table, e.g. fs_official_index)")
    if index is None:
        return np.asarray(fs_index(shape, length, np.asarray(offsets)))
    index = np.asarray(index)
    if index.shape != shape or index.min() < 0 or index.max() >= length:
        raise ValueError(f"index must have the kernel's shape {shape} with entries in "
                         f"[0, {length}); got shape {index.shape}")
    return index


def fs_project(kernel: jax.Array, length: int, offsets=None, *, index=None) -> jax.Array:
    """Least-squares Filter Summary for a dense kernel.

    Minimises ``||fs_kernel(fs) - kernel||^2``: each FS entry is the mean of the dense weights
    that map to it (entries no weight maps to are 0).

    Args:
      kernel: ``(*kernel_size, cin, cout)`` dense kernel.
      length: FS length ``L``.
      offsets: ``(cout,)`` segment starts, or ``index``: the layer's full index table
        (``(*kernel_size, cin, cout)`` in [0, L); e.g. :func:`fs_official_index`).
    Returns:
      ``(L,)`` filter summary.
    """
    shape = check_kernel_shape(kernel.shape, "kernel.shape")
    idx = _table(shape, int(length), offsets, index)
    flat = jnp.reshape(kernel, (-1,))
    sums = jax.ops.segment_sum(flat, idx.reshape(-1), num_segments=int(length))
    counts = np.bincount(idx.reshape(-1), minlength=int(length))
    return sums / jnp.asarray(np.maximum(counts, 1), dtype=kernel.dtype)


def fs_from_dense(kernel: jax.Array, length: int, offsets=None, *, index=None) -> jax.Array:
    """Filter Summary whose entries are the dense weights that first read them.

    Entry ``j`` takes ``kernel.reshape(-1)[p]`` for the smallest flat (C-order) position ``p``
    with ``fs_index(...)[p] == j`` (0 where no weight reads it). Used to map a dense kernel
    initialiser onto a summary: i.i.d. draws keep their distribution, and where no two weights
    share an entry (compression 1) ``fs_kernel(fs_from_dense(k)) == k`` exactly.

    Args:
      kernel: ``(*kernel_size, cin, cout)``; length: ``L``; offsets: ``(cout,)`` starts, or
        ``index``: the full index table (as :func:`fs_project`).
    Returns:
      ``(L,)``.
    """
    shape = check_kernel_shape(kernel.shape, "kernel.shape")
    idx = _table(shape, int(length), offsets, index).reshape(-1)
    entries, first = np.unique(idx, return_index=True)
    out = jnp.zeros((int(length),), kernel.dtype)
    return out.at[entries].set(jnp.reshape(kernel, (-1,))[first])


def dfs_kernel(fs: jax.Array, kernel_shape, locations: jax.Array) -> jax.Array:
    """Differentiable FS kernel: linear interpolation between neighbouring integer segments.

    Filter ``i`` is ``(1-f)*seg(s) + f*seg(s+1)`` with ``s = floor(loc_i)``, ``f = loc_i - s``
    and ``seg(s)[t] = fs[(s+t) mod L]``. Locations outside [0, L) wrap around the circle.
    Differentiable w.r.t. ``fs`` and ``locations``; equals :func:`fs_kernel` at integers.

    Args:
      fs: ``(L,)``; kernel_shape: ``(*kernel_size, cin, cout)``; locations: ``(cout,)`` real.
    Returns:
      ``(*kernel_size, cin, cout)`` kernel.
    """
    shape = check_kernel_shape(kernel_shape)
    cout = shape[-1]
    fs, locations = jnp.asarray(fs), jnp.asarray(locations)
    if locations.shape != (cout,):
        raise ValueError(f"locations must have shape ({cout},); got {locations.shape}")
    length = fs.shape[0]
    base = jnp.floor(locations)
    frac = (locations - base).astype(fs.dtype)
    start = jnp.mod(base.astype(jnp.int32), length)
    taps = jnp.asarray(fs_taps(*shape[:-1]))[..., None]
    lo = fs.at[(taps + start) % length].get(mode="promise_in_bounds")
    hi = fs.at[(taps + start + 1) % length].get(mode="promise_in_bounds")
    return lo + frac * (hi - lo)


def dfs_locations(raw: jax.Array, length: int, mode: str = "wrap") -> jax.Array:
    """Map the unconstrained location parameter ``raw`` (cout,) to locations in [0, L).

    ``'wrap'``: ``loc = raw mod L``. The segments live on a circle, so wrapping matches the
    topology exactly and the gradient is 1 everywhere (no saturation).
    ``'sigmoid'``: ``loc = sigmoid(raw) * L`` (the draft in the official code); gradients
    vanish as a location nears 0 or L.
    """
    if mode == "wrap":
        return jnp.mod(raw, length)
    if mode == "sigmoid":
        return jax.nn.sigmoid(raw) * length
    raise ValueError(f"location mode must be 'wrap' or 'sigmoid'; got {mode!r}")


def dfs_init_raw(offsets, length: int, mode: str = "wrap") -> np.ndarray:
    """Raw location parameters that start exactly (wrap) or nearly (sigmoid) at ``offsets``.

    For 'sigmoid', ``logit(start/L)`` with start/L clipped to [1e-4, 1-1e-4] (start 0 has no
    finite logit), i.e. within 1e-4*L of the FSNet layout.
    """
    offsets = np.asarray(offsets, np.float64)
    if mode == "wrap":
        return offsets.astype(np.float32)
    if mode == "sigmoid":
        p = np.clip(offsets / length, 1e-4, 1 - 1e-4)
        return np.log(p / (1 - p)).astype(np.float32)
    raise ValueError(f"location mode must be 'wrap' or 'sigmoid'; got {mode!r}")
