"""N-D convolution (channels-last inputs, ``(*spatial, in, out)`` kernels), exactly as Flax does it.

Every conv module in fsjax (dense, FS, DFS, KS) applies its kernel through :func:`conv`, which
follows ``flax.nnx.Conv.__call__`` / ``flax.linen.Conv.__call__`` step by step: the rank comes
from the kernel (1-D ``NWC``/``WIO``, 2-D ``NHWC``/``HWIO``, 3-D ``NDHWC``/``DHWIO``, ...);
batch dims are flattened (an unbatched input is accepted); 'CIRCULAR' and 'REFLECT' pad the
input, 'CAUSAL' left-pads a 1-D input; strides, input and kernel dilation may be None (= 1).
Given the same kernel, fsjax layers therefore compute bit for bit what Flax's layers compute.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from fsjax.ops.cpu import conv3d_as_2d_on, cpu_form, materialize_on_cpu
from fsjax.ops.depthwise import depthwise_slices, is_depthwise

PaddingLike = str | int | Sequence[int | tuple[int, int]]

LAX_PADDINGS = ("SAME", "VALID", "SAME_LOWER")  # lax accepts these in any letter case
PAD_MODES = ("CIRCULAR", "REFLECT", "CAUSAL")  # Flax's own modes (upper case, as Flax compares)

__all__ = ["conv", "conv3d_as_2d", "pointwise_dot", "is_pointwise", "kernel_size_tuple",
           "broadcast_dims", "canonical_padding", "conv_output_shape", "LAX_PADDINGS",
           "PAD_MODES"]


def kernel_size_tuple(kernel_size, where: str = "kernel_size") -> tuple[int, ...]:
    """Flax's reading: an int ``k`` is the 1-D kernel ``(k,)``; a sequence is taken as it is."""
    ks = (kernel_size,) if isinstance(kernel_size, int) else kernel_size
    try:
        ks = tuple(int(k) for k in ks)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} must be an int (a 1-D kernel, as in Flax) or a sequence of "
                         f"ints; got {kernel_size!r}") from e
    if not ks or min(ks) <= 0:
        raise ValueError(f"{where} must be one or more positive ints; got {kernel_size!r}")
    return ks


def broadcast_dims(value, rank: int, name: str) -> tuple[int, ...]:
    """Flax's ``maybe_broadcast``: None -> 1, an int -> one per spatial dim, a sequence as is
    (it must have ``rank`` positive ints)."""
    if value is None:
        value = 1
    if isinstance(value, int):
        value = (value,) * rank
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be None, an int or {rank} ints; got {value!r}") from e
    if len(out) != rank or min(out) <= 0:
        raise ValueError(f"{name} must be None, a positive int or {rank} positive ints (one per "
                         f"spatial dim); got {value!r}")
    return out


def canonical_padding(padding: PaddingLike, rank: int) -> str | list[tuple[int, int]]:
    """Flax padding -> a string or ``rank`` ``(low, high)`` pairs; ValueError for what neither
    Flax nor ``lax.conv_general_dilated`` runs."""
    if isinstance(padding, str):
        if padding in PAD_MODES or padding.upper() in LAX_PADDINGS:
            if padding == "CAUSAL" and rank != 1:
                raise ValueError(f"padding='CAUSAL' is for 1-D convolutions only; this kernel "
                                 f"has {rank} spatial dims")
            return padding
        raise ValueError(f"padding {padding!r} is not valid; valid: 'SAME', 'VALID', "
                         f"'SAME_LOWER', 'CIRCULAR', 'REFLECT', 'CAUSAL' (1-D), an int, or "
                         f"{rank} ints / (low, high) pairs")
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    try:
        pads = [(int(p), int(p)) if isinstance(p, int) else tuple(int(q) for q in p)
                for p in padding]
    except (TypeError, ValueError):
        pads = []
    if len(pads) != rank or any(len(p) != 2 for p in pads):
        raise ValueError(f"padding {padding!r} is not valid; valid: a string, an int, or {rank} "
                         f"ints / (low, high) pairs (one per spatial dim)")
    return pads  # type: ignore[return-value]


def conv3d_as_2d(x, kernel, strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                 feature_group_count=1, precision=None, **kw):
    """A 3-D channels-last conv as a sum over the kernel's depth taps of 2-D convs, the
    output depths stacked into the batch: ``y[:, d] = sum_t conv2d(x_pad[:, d*s + t*dil],
    K[t])``. ``x (N, D, H, W, C)``, ``kernel (kd, kh, kw, C // groups, O)`` -> ``(N, D', H',
    W', O)``; same arguments as ``lax.conv_general_dilated`` (NDHWC / DHWIO); input dilation
    must be 1."""
    if tuple(lhs_dilation) != (1, 1, 1):
        raise ValueError(f"conv3d_as_2d: input_dilation must be 1; got {tuple(lhs_dilation)}")
    kd = kernel.shape[0]
    eff = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:3], rhs_dilation, strict=True)]
    pads = (lax.padtype_to_pads(x.shape[1:4], eff, strides, padding)
            if isinstance(padding, str) else [tuple(p) for p in padding])
    x = jnp.pad(x, [(0, 0), pads[0], (0, 0), (0, 0), (0, 0)])
    sd, dd = strides[0], rhs_dilation[0]
    out_d = (x.shape[1] - eff[0]) // sd + 1
    y = None
    for t in range(kd):
        xs = x[:, t * dd: t * dd + (out_d - 1) * sd + 1: sd]
        xs = xs.reshape((-1,) + xs.shape[2:])
        yt = lax.conv_general_dilated(
            xs, kernel[t], strides[1:], list(pads[1:]), rhs_dilation=rhs_dilation[1:],
            dimension_numbers=_dimension_numbers(4), feature_group_count=feature_group_count,
            precision=precision, **kw)
        y = yt if y is None else y + yt
    return y.reshape((-1, out_d) + y.shape[1:])


def _dimension_numbers(ndim: int) -> lax.ConvDimensionNumbers:
    lhs = (0, ndim - 1) + tuple(range(1, ndim - 1))
    rhs = (ndim - 1, ndim - 2) + tuple(range(0, ndim - 2))
    return lax.ConvDimensionNumbers(lhs, rhs, lhs)


def conv(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None = None,
    *,
    strides=1,
    padding: PaddingLike = "SAME",
    input_dilation=1,
    kernel_dilation=1,
    feature_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
    conv_general_dilated=None,
    out_sharding=None,
) -> jax.Array:
    """Convolve channels-last ``x`` with a ``(*kernel_size, cin // groups, cout)`` kernel.

    Args:
      x: ``(*batch, *spatial, cin)``; any number of batch dims (0 = unbatched), as in Flax.
      kernel: ``(*kernel_size, cin // feature_group_count, cout)``; its rank n = ndim - 2
        is the number of spatial dims.
      bias: ``(cout,)`` or None; added after the conv (``y + bias``, as Flax does).
      strides, input_dilation, kernel_dilation: None, an int, or n ints.
      padding: see :func:`canonical_padding`.
      conv_general_dilated: the conv function (default ``lax.conv_general_dilated``).
      out_sharding: passed to the conv function when given (Flax NNX's ``out_sharding``).
    Returns:
      ``(*batch, *spatial', cout)``.
    """
    rank = kernel.ndim - 2
    if rank < 1:
        raise ValueError(f"kernel must be (*kernel_size, in, out); got shape {kernel.shape}")
    kernel_size = kernel.shape[:rank]
    if x.ndim < rank + 1:
        raise ValueError(f"a {rank}-D conv needs an input (*batch, {rank} spatial dims, "
                         f"channels); got shape {tuple(x.shape)}")
    cin = x.shape[-1]
    if cin != kernel.shape[-2] * feature_group_count:
        raise ValueError(
            f"input has {cin} channels but the kernel expects {kernel.shape[-2]} x "
            f"feature_group_count {feature_group_count} = {kernel.shape[-2] * feature_group_count}")
    strides = broadcast_dims(strides, rank, "strides")
    input_dilation = broadcast_dims(input_dilation, rank, "input_dilation")
    kernel_dilation = broadcast_dims(kernel_dilation, rank, "kernel_dilation")
    n_batch = x.ndim - (rank + 1)
    batch_shape = x.shape[:n_batch]
    if n_batch != 1:
        x = jnp.reshape(x, (-1,) + x.shape[n_batch:])
    pad = canonical_padding(padding, rank)
    if pad in ("CIRCULAR", "REFLECT"):
        sizes = [(k - 1) * d + 1 for k, d in zip(kernel_size, kernel_dilation, strict=True)]
        pads = [(0, 0)] + [((s - 1) // 2, s // 2) for s in sizes] + [(0, 0)]
        x = jnp.pad(x, pads, mode={"CIRCULAR": "wrap", "REFLECT": "reflect"}[pad])
        pad = "VALID"
    elif pad == "CAUSAL":
        x = jnp.pad(x, [(0, 0), (kernel_dilation[0] * (kernel_size[0] - 1), 0), (0, 0)])
        pad = "VALID"
    kw = {}
    if out_sharding is not None:
        kw["out_sharding"] = out_sharding
    if preferred_element_type is not None:
        kw["preferred_element_type"] = preferred_element_type
    fn = conv_general_dilated or lax.conv_general_dilated
    if rank == 3 and fn is lax.conv_general_dilated and conv3d_as_2d_on():
        fn = conv3d_as_2d
    x = materialize_on_cpu(x)
    xla_conv = lambda x, kernel: fn(
        x, kernel, strides, pad, lhs_dilation=input_dilation, rhs_dilation=kernel_dilation,
        dimension_numbers=_dimension_numbers(x.ndim), feature_group_count=feature_group_count,
        precision=precision, **kw)
    # the CPU forms replace XLA's own conv only, without extra arguments, at one dtype
    plain = fn is lax.conv_general_dilated and not kw and x.dtype == kernel.dtype
    if plain and is_pointwise(kernel.shape, feature_group_count, input_dilation, pad):
        y = cpu_form("pointwise_dot", lambda x, k: pointwise_dot(x, k, strides, precision),
                     xla_conv, x, kernel)
    elif (plain and x.dtype == jnp.float32
            and is_depthwise(x.shape, kernel.shape, feature_group_count, input_dilation)):
        pads = pad if not isinstance(pad, str) else lax.padtype_to_pads(
            x.shape[1:3], [(k - 1) * d + 1 for k, d in zip(kernel_size, kernel_dilation, strict=True)],
            strides, pad)
        y = cpu_form("depthwise_slices", lambda x, k: depthwise_slices(
            x, k, tuple(strides), tuple(kernel_dilation), tuple(map(tuple, pads))), xla_conv, x,
            kernel)
    else:
        y = xla_conv(x, kernel)
    if bias is not None:
        y = y + bias.reshape((1,) * (y.ndim - bias.ndim) + bias.shape)
    if n_batch != 1:
        y = jnp.reshape(y, batch_shape + y.shape[1:])
    return y


def is_pointwise(kernel_shape, feature_group_count, input_dilation, padding) -> bool:
    """Whether a conv is a 1x1 (any rank) ungrouped conv without input dilation or padding:
    a matrix product of the (strided) input's channels, :func:`pointwise_dot`."""
    zero_pad = (isinstance(padding, str) and padding.upper() in LAX_PADDINGS) or (
        not isinstance(padding, str) and all(tuple(p) == (0, 0) for p in padding))
    return (all(k == 1 for k in kernel_shape[:-2]) and feature_group_count == 1
            and all(d == 1 for d in input_dilation) and zero_pad)


def pointwise_dot(x: jax.Array, kernel: jax.Array, strides, precision=None) -> jax.Array:
    """A 1x1 conv as a matrix product: ``x (N, *spatial, cin)``, ``kernel (1, ..., 1, cin,
    cout)``, ``strides`` one per spatial dim -> ``(N, *ceil(spatial / strides), cout)``, the
    values of ``lax.conv_general_dilated`` with 'SAME' or 'VALID' padding (a 1x1 kernel pads
    nothing). XLA:CPU runs its forward + backward 1.5-2.4x faster than the conv's (the conv's
    kernel gradient transposes the input; the product's does not; docs/performance.md)."""
    x = x[(slice(None),) + tuple(slice(None, None, s) for s in strides)]
    w = kernel.reshape(kernel.shape[-2:])
    y = jnp.matmul(x.reshape(-1, x.shape[-1]), w, precision=precision)
    return y.reshape(x.shape[:-1] + (w.shape[1],))


def conv_output_shape(spatial, kernel_size, strides=1, padding: PaddingLike = "SAME",
                      kernel_dilation=1, input_dilation=1) -> tuple[int, ...]:
    """Spatial output size of :func:`conv` for an input of spatial size ``spatial`` (ints)."""
    rank = len(kernel_size)
    strides = broadcast_dims(strides, rank, "strides")
    kd = broadcast_dims(kernel_dilation, rank, "kernel_dilation")
    ld = broadcast_dims(input_dilation, rank, "input_dilation")
    pad = canonical_padding(padding, rank)
    out = []
    for i, (n, k, s, d, e) in enumerate(zip(spatial, kernel_size, strides, kd, ld, strict=True)):
        n = (n - 1) * e + 1 if n > 0 else 0
        size = (k - 1) * d + 1
        if isinstance(pad, str) and (pad in PAD_MODES or pad.upper() in ("SAME", "SAME_LOWER")):
            out.append(-(-n // s))  # the pad modes add size - 1 inputs: same size as SAME
        elif isinstance(pad, str):  # VALID
            out.append(max(0, (n - size) // s + 1))
        else:
            lo, hi = pad[i]
            out.append(max(0, (n + lo + hi - size) // s + 1))
    return tuple(out)
