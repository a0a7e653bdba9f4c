"""Filter Summary (FSNet) and Differentiable Filter Summary (DFSNet) math.

Kernels are HWIO: ``kernel_shape = (kh, kw, cin, cout)`` and a filter holds ``K = kh*kw*cin``
weights. A layer stores one 1-D Filter Summary ``fs`` of length ``L``; filter ``i`` is the
circularly wrapped segment ``fs[(start_i + t) mod L]``, ``t in [0, K)``, read in
(cin, kh, kw) order (input channel slowest)::

    kernel[ky, kx, c, i] = fs[(start_i + c*kh*kw + ky*kw + kx) mod L]

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
    "fs_length",
    "fs_offsets",
    "fs_taps",
    "fs_index",
    "fs_kernel",
    "fs_project",
    "dfs_kernel",
    "dfs_locations",
    "dfs_init_raw",
]


def check_kernel_shape(kernel_shape, where: str = "kernel_shape") -> tuple[int, int, int, int]:
    """Validate an HWIO shape ``(kh, kw, cin, cout)`` of positive ints and return it as a tuple."""
    try:
        shape = tuple(int(s) for s in kernel_shape)
    except TypeError as e:
        raise ValueError(f"{where} must be (kh, kw, cin, cout); got {kernel_shape!r}") from e
    if len(shape) != 4 or min(shape) <= 0:
        raise ValueError(f"{where} must be 4 positive ints (kh, kw, cin, cout); got {shape}")
    return shape  # type: ignore[return-value]


def fs_length(kernel_shape, compression: float) -> int:
    """FS length ``L = max(K, floor(K*cout/compression))``, ``K = kh*kw*cin``.

    Floor as in the official FSNet code, so published parameter counts are reproduced.
    ``compression`` must be >= 1 (a smaller value would store more weights than the dense
    kernel).
    """
    kh, kw, cin, cout = check_kernel_shape(kernel_shape)
    if not isinstance(compression, (int, float)) or not math.isfinite(compression):
        raise ValueError(f"compression must be a finite number >= 1; got {compression!r}")
    if compression < 1:
        raise ValueError(
            f"compression must be >= 1 (dense weights / stored weights); got {compression}"
        )
    k = kh * kw * cin
    return max(k, int(math.floor(k * cout / compression)))


def fs_offsets(kernel_shape, length: int) -> np.ndarray:
    """Segment starts ``start_i = floor(i*L/cout)`` in exact integer arithmetic.

    Returns: int32 numpy array of shape ``(cout,)``, non-decreasing, in ``[0, L)``.
    """
    kh, kw, cin, cout = check_kernel_shape(kernel_shape)
    length = int(length)
    if length < kh * kw * cin:
        raise ValueError(f"FS length must be >= K = {kh * kw * cin}; got {length}")
    return ((np.arange(cout, dtype=np.int64) * length) // cout).astype(np.int32)


@functools.lru_cache(maxsize=512)
def fs_taps(kh: int, kw: int, cin: int) -> np.ndarray:
    """Position ``t`` of each kernel tap inside a filter segment, shape ``(kh, kw, cin)``.

    ``t[ky, kx, c] = c*kh*kw + ky*kw + kx`` (input channel slowest). Cached; read-only.
    """
    ky, kx, c = np.meshgrid(np.arange(kh), np.arange(kw), np.arange(cin), indexing="ij")
    taps = (c * kh * kw + ky * kw + kx).astype(np.int32)
    taps.setflags(write=False)
    return taps


def _as_offsets(offsets, cout: int):
    if isinstance(offsets, (tuple, list)):
        offsets = np.asarray(offsets, np.int32)
    if offsets.shape != (cout,):
        raise ValueError(f"offsets must have shape (cout,) = ({cout},); got {offsets.shape}")
    return offsets


def fs_index(kernel_shape, length: int, offsets) -> jax.Array | np.ndarray:
    """Index of every kernel weight in the FS: shape ``(kh, kw, cin, cout)``, values in [0, L).

    With numpy ``offsets`` the result is a numpy array (trace-time constant); with traced
    offsets it is computed in-graph.
    """
    kh, kw, cin, cout = check_kernel_shape(kernel_shape)
    offsets = _as_offsets(offsets, cout)
    xp = np if isinstance(offsets, np.ndarray) else jnp
    taps = fs_taps(kh, kw, cin)
    return (xp.asarray(taps)[..., None] + offsets) % int(length)


def fs_kernel(fs: jax.Array, kernel_shape, offsets) -> jax.Array:
    """Materialise the dense HWIO kernel from a Filter Summary.

    Args:
      fs: ``(L,)`` filter summary.
      kernel_shape: ``(kh, kw, cin, cout)``.
      offsets: ``(cout,)`` integer segment starts (see :func:`fs_offsets`).
    Returns:
      ``(kh, kw, cin, cout)`` kernel with ``kernel[ky,kx,c,i] = fs[(off_i + c*kh*kw + ky*kw + kx)
      mod L]``.
    """
    kh, kw, cin, cout = check_kernel_shape(kernel_shape)
    fs = jnp.asarray(fs)
    if fs.ndim != 1:
        raise ValueError(f"fs must be 1-D (L,); got shape {fs.shape}")
    length = fs.shape[0]
    if length < kh * kw * cin:
        raise ValueError(f"fs length {length} is shorter than a filter (K = {kh * kw * cin})")
    offsets = _as_offsets(offsets, cout)
    taps = jnp.asarray(fs_taps(kh, kw, cin))
    idx = (taps[..., None] + jnp.asarray(offsets, jnp.int32)) % length
    return fs.at[idx].get(mode="promise_in_bounds")


def fs_project(kernel: jax.Array, length: int, offsets) -> jax.Array:
    """Least-squares Filter Summary for a dense kernel.

    Minimises ``||fs_kernel(fs) - kernel||^2``: each FS entry is the mean of the dense weights
    that map to it (entries no weight maps to are 0).

    Args:
      kernel: ``(kh, kw, cin, cout)`` dense kernel.
      length: FS length ``L``.
      offsets: ``(cout,)`` segment starts.
    Returns:
      ``(L,)`` filter summary.
    """
    shape = check_kernel_shape(kernel.shape, "kernel.shape")
    idx = np.asarray(fs_index(shape, length, np.asarray(offsets)))
    flat = jnp.reshape(kernel, (-1,))
    sums = jax.ops.segment_sum(flat, idx.reshape(-1), num_segments=int(length))
    counts = np.bincount(idx.reshape(-1), minlength=int(length))
    return sums / jnp.asarray(np.maximum(counts, 1), dtype=kernel.dtype)


def dfs_kernel(fs: jax.Array, kernel_shape, locations: jax.Array) -> jax.Array:
    """Differentiable FS kernel: linear interpolation between neighbouring integer segments.

    Filter ``i`` is ``(1-f)*seg(s) + f*seg(s+1)`` with ``s = floor(loc_i)``, ``f = loc_i - s``
    and ``seg(s)[t] = fs[(s+t) mod L]``. Locations outside [0, L) wrap around the circle.
    Differentiable w.r.t. ``fs`` and ``locations``; equals :func:`fs_kernel` at integers.

    Args:
      fs: ``(L,)``; kernel_shape: ``(kh, kw, cin, cout)``; locations: ``(cout,)`` real.
    Returns:
      ``(kh, kw, cin, cout)`` kernel.
    """
    kh, kw, cin, cout = check_kernel_shape(kernel_shape)
    fs, locations = jnp.asarray(fs), jnp.asarray(locations)
    if locations.shape != (cout,):
        raise ValueError(f"locations must have shape ({cout},); got {locations.shape}")
    length = fs.shape[0]
    base = jnp.floor(locations)
    frac = (locations - base).astype(fs.dtype)
    start = jnp.mod(base.astype(jnp.int32), length)
    taps = jnp.asarray(fs_taps(kh, kw, cin))[..., None]
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
