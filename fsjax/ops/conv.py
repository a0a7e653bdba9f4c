"""2-D convolution (NHWC images, HWIO kernels) with Flax's padding conventions.

Every conv module in fsjax (dense, FS, DFS, KS) applies its kernel through :func:`conv2d`, so
padding modes, strides, dilation and feature groups behave exactly as in ``flax.nnx.Conv`` /
``flax.linen.Conv``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

PaddingLike = str | int | Sequence[int | tuple[int, int]]

__all__ = ["conv2d", "pair", "canonical_padding", "conv_output_hw"]


def pair(value, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(2, 1) -> (2, 1)``; anything else is a ValueError naming ``name``."""
    if isinstance(value, int):
        value = (value, value)
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be an int or a pair of ints; got {value!r}") from e
    if a <= 0 or b <= 0:
        raise ValueError(f"{name} must be positive; got {value!r}")
    return a, b


def canonical_padding(padding: PaddingLike, kernel_size, dilation) -> str | list[tuple[int, int]]:
    """Flax padding -> what ``lax.conv_general_dilated`` takes ('SAME'/'VALID' or pairs).

    'CIRCULAR' returns the string and is handled by :func:`conv2d` (wrap-pad, then VALID).
    """
    if isinstance(padding, str):
        p = padding.upper()
        if p in ("SAME", "VALID", "SAME_LOWER", "CIRCULAR"):
            return p
        raise ValueError(
            f"padding must be 'SAME', 'VALID', 'SAME_LOWER', 'CIRCULAR', an int or pairs; "
            f"got {padding!r} ('CAUSAL' is 1-D only)"
        )
    if isinstance(padding, int):
        return [(padding, padding)] * 2
    pads = list(padding)
    if len(pads) != 2:
        raise ValueError(f"padding needs one entry per spatial dim (2); got {padding!r}")
    return [(int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in pads]


def _circular_pads(kernel_size, dilation):
    pads = []
    for k, d in zip(kernel_size, dilation, strict=True):
        size = (k - 1) * d + 1
        pads.append(((size - 1) // 2, size // 2))
    return pads


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    strides=1,
    padding: PaddingLike = "SAME",
    dilation=1,
    feature_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
) -> jax.Array:
    """Convolve NHWC ``x`` with an HWIO ``kernel``.

    Args:
      x: ``(..., H, W, cin)``; leading batch dims are flattened and restored; an unbatched
        ``(H, W, cin)`` input is accepted as in Flax.
      kernel: ``(kh, kw, cin // feature_group_count, cout)``.
      bias: ``(cout,)`` or None.
    Returns:
      ``(..., H', W', cout)``.
    """
    strides = pair(strides, "strides")
    dilation = pair(dilation, "kernel_dilation")
    kh, kw, kin, _ = kernel.shape
    cin = x.shape[-1]
    if cin != kin * feature_group_count:
        raise ValueError(
            f"input has {cin} channels but the kernel expects {kin} x feature_group_count "
            f"{feature_group_count} = {kin * feature_group_count}"
        )
    batch_shape = x.shape[:-3]
    xb = x.reshape((-1,) + x.shape[-3:])
    pad = canonical_padding(padding, (kh, kw), dilation)
    if pad == "CIRCULAR":
        pads = _circular_pads((kh, kw), dilation)
        xb = jnp.pad(xb, [(0, 0), *pads, (0, 0)], mode="wrap")
        pad = "VALID"
    y = lax.conv_general_dilated(
        xb,
        kernel,
        window_strides=strides,
        padding=pad,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=feature_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y.reshape(batch_shape + y.shape[1:])


def conv_output_hw(hw, kernel_size, strides, padding, dilation) -> tuple[int, int]:
    """Spatial output size of :func:`conv2d` for an ``(H, W)`` input (used by the report)."""
    out = []
    pad = canonical_padding(padding, kernel_size, dilation)
    for i, (n, k, s, d) in enumerate(zip(hw, kernel_size, strides, dilation, strict=True)):
        size = (k - 1) * d + 1
        if pad in ("SAME", "SAME_LOWER", "CIRCULAR"):
            out.append(-(-n // s))
        elif pad == "VALID":
            out.append(max(0, (n - size) // s + 1))
        else:
            lo, hi = pad[i]
            out.append(max(0, (n + lo + hi - size) // s + 1))
    return tuple(out)
