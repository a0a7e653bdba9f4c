"""Quantization math: uniform (min/max) and k-means codebooks, STE fake-quant, bit packing.

Groups: a ``group_ids`` int array (same shape as ``x``, values in [0, G)) gives each element
its quantization group (one range or codebook per group); ``None`` = one group (per tensor).
For FS vectors the per-filter groups are the contiguous chunks between segment starts
(:func:`fs_chunk_groups`); for HWIO kernels, the output channel (:func:`channel_groups`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["check_bits", "fs_chunk_groups", "channel_groups", "uniform_quantize",
           "uniform_dequantize", "fake_quant", "kmeans_quantize", "codebook_dequantize",
           "pack_bits", "unpack_bits", "effective_params"]


def check_bits(bits, where: str = "bits") -> int:
    if not isinstance(bits, (int, np.integer)) or not 2 <= int(bits) <= 8:
        raise ValueError(f"{where} must be an int in 2..8; got {bits!r}")
    return int(bits)


def fs_chunk_groups(length: int, offsets) -> np.ndarray:
    """``(L,)`` group of each FS entry: the (distinct, sorted) filter start at or before it
    (entries before the first start belong to the last one: the circle wraps)."""
    offsets = np.unique(np.asarray(offsets))
    g = np.searchsorted(offsets, np.arange(length), side="right") - 1
    return np.where(g < 0, len(offsets) - 1, g).astype(np.int32)


def channel_groups(shape) -> np.ndarray:
    """Group = index along the last axis (output channel of an HWIO kernel or FC matrix)."""
    return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape)


def _num_groups(group_ids):
    return 1 if group_ids is None else int(np.max(group_ids)) + 1


def _group_minmax(x, group_ids):
    if group_ids is None:
        return jnp.min(x)[None], jnp.max(x)[None]
    g = jnp.asarray(group_ids).reshape(-1)
    n = _num_groups(group_ids)
    flat = x.reshape(-1)
    return (jax.ops.segment_min(flat, g, num_segments=n),
            jax.ops.segment_max(flat, g, num_segments=n))


def _gather(v, group_ids, shape):
    if group_ids is None:
        return jnp.broadcast_to(v[0], shape)
    return v[jnp.asarray(group_ids)].reshape(shape)


def uniform_quantize(x: jax.Array, bits: int, group_ids=None):
    """Uniform affine quantization with one min/max range per group.

    ``step = (max - min) / (2**bits - 1)`` (the official FSNet code at 8 bits: /255).
    Returns ``(codes uint8 same shape as x, lo (G,), step (G,))``; ``|dequant - x| <= step/2``.
    """
    bits = check_bits(bits)
    x = jnp.asarray(x, jnp.float32)
    lo, hi = _group_minmax(x, group_ids)
    step = (hi - lo) / (2 ** bits - 1)
    step = jnp.where(step > 0, step, 1.0)
    codes = jnp.round((x - _gather(lo, group_ids, x.shape)) / _gather(step, group_ids, x.shape))
    return jnp.clip(codes, 0, 2 ** bits - 1).astype(jnp.uint8), lo, step


def uniform_dequantize(codes, lo, step, group_ids=None) -> jax.Array:
    shape = codes.shape
    return _gather(lo, group_ids, shape) + codes.astype(jnp.float32) * _gather(step, group_ids,
                                                                              shape)


def kmeans_quantize(x: jax.Array, bits: int, group_ids=None, iters: int = 20):
    """Non-uniform quantization: a k-means codebook of ``2**bits`` values per tensor.

    Lloyd's iterations from quantile-spaced centres (deterministic). ``group_ids`` must be
    None (one codebook per tensor). Returns ``(codes uint8, codebook (2**bits,))``.
    """
    bits = check_bits(bits)
    if group_ids is not None:
        raise ValueError("k-means quantization uses one codebook per tensor; per_channel must "
                         "be False")
    flat = jnp.asarray(x, jnp.float32).reshape(-1)
    k = 2 ** bits
    centres = jnp.quantile(flat, (jnp.arange(k) + 0.5) / k)

    def assign(c):
        return jnp.argmin(jnp.abs(flat[:, None] - c[None, :]), axis=1)

    def body(_, c):
        a = assign(c)
        sums = jax.ops.segment_sum(flat, a, num_segments=k)
        counts = jax.ops.segment_sum(jnp.ones_like(flat), a, num_segments=k)
        return jnp.where(counts > 0, sums / jnp.maximum(counts, 1), c)

    centres = jax.lax.fori_loop(0, iters, body, centres)
    return assign(centres).astype(jnp.uint8).reshape(jnp.shape(x)), centres


def codebook_dequantize(codes, codebook) -> jax.Array:
    return codebook[codes.astype(jnp.int32)]


def fake_quant(x: jax.Array, bits: int, group_ids=None, method: str = "uniform") -> jax.Array:
    """Quantize-dequantize in the forward pass; straight-through (identity) gradient."""
    if method == "uniform":
        codes, lo, step = uniform_quantize(jax.lax.stop_gradient(x), bits, group_ids)
        q = uniform_dequantize(codes, lo, step, group_ids)
    elif method == "kmeans":
        codes, book = kmeans_quantize(jax.lax.stop_gradient(x), bits, group_ids)
        q = codebook_dequantize(codes, book)
    else:
        raise ValueError(f"quantization method must be 'uniform' or 'kmeans'; got {method!r}")
    return _straight_through(x, q.astype(x.dtype))


@jax.custom_vjp
def _straight_through(x, q):
    """Forward: exactly ``q`` (so fake-quant logits equal dequantized-export logits);
    backward: the identity to ``x``."""
    return q


def _st_fwd(x, q):
    return q, None


def _st_bwd(_, g):
    return g, jnp.zeros_like(g)


_straight_through.defvjp(_st_fwd, _st_bwd)


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack ``bits``-bit codes (any shape, values < 2**bits) little-endian into uint8 bytes
    (``ceil(n*bits/8)`` of them)."""
    bits = check_bits(bits)
    c = np.asarray(codes, np.uint8).reshape(-1)
    if c.size and int(c.max()) >= 2 ** bits:
        raise ValueError(f"code {int(c.max())} does not fit in {bits} bits")
    planes = np.unpackbits(c[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(planes.reshape(-1), bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``n`` codes as uint8."""
    bits = check_bits(bits)
    planes = np.unpackbits(np.asarray(packed, np.uint8), bitorder="little")[: n * bits]
    planes = np.concatenate([planes.reshape(n, bits), np.zeros((n, 8 - bits), np.uint8)], 1)
    return np.packbits(planes, axis=1, bitorder="little").reshape(n)


def effective_params(numel: int, bits: int = 8) -> float:
    """FSNet paper's convention: a quantized tensor counts ``numel*bits/32 + 2`` parameters
    (``numel/4 + 2`` at 8 bits: codes as a quarter of float32s, plus min and step)."""
    return numel * bits / 32 + 2
